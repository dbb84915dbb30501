"""Timing and memory helpers: median of repeated runs after warm-up, block_until_ready."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax


def time_fn(fn: Callable[..., Any], *args: Any, iters: int = 20, warmup: int = 2) -> float:
    """Median wall time in milliseconds of ``fn(*args)`` (already jitted), after warm-up."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def compile_stats(fn: Callable[..., Any], *args: Any) -> tuple[float, int | None]:
    """(compile seconds, temp bytes from memory_analysis) of a jitted ``fn`` for ``args``."""
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    seconds = time.perf_counter() - t0
    try:
        temp = compiled.memory_analysis().temp_size_in_bytes
    except Exception:  # noqa: BLE001 - some backends do not report memory
        temp = None
    return seconds, temp
