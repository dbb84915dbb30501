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


def time_interleaved(
    fns: dict[str, Callable[[], Any]], *, iters: int = 20, warmup: int = 2
) -> dict[str, float]:
    """Median wall ms of each ``fns[name]()``, timed round-robin: one call of every contender per
    round, ``iters`` rounds, so a machine that slows down or speeds up during the run (shared CPUs)
    shifts every contender alike and the ratios between them stay fair.
    """
    for fn in fns.values():
        for _ in range(warmup):
            jax.block_until_ready(fn())
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}
