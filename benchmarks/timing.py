"""Timing and memory helpers: median of repeated runs after warm-up, block_until_ready."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax


def time_fn(fn: Callable[..., Any], *args: Any, iters: int = 20, warmup: int = 2) -> float:
    """Median wall time in milliseconds of ``fn(*args)`` (already jitted), after warm-up; one
    contender of ``time_interleaved`` (so ``default_inner()`` calls per sample).
    """
    return time_interleaved({"fn": lambda: fn(*args)}, iters=iters, warmup=warmup)["fn"]


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


def default_inner() -> int:
    """Calls per timed sample: 1 on the CPU, where every call runs for milliseconds, and 10 on
    accelerators, where a small op runs for tens of microseconds and one call blocked on its own
    would time the host's dispatch and sync rather than the device.
    """
    return 1 if jax.default_backend() == "cpu" else 10


def time_interleaved(
    fns: dict[str, Callable[[], Any]],
    *,
    iters: int = 20,
    warmup: int = 2,
    inner: int | None = None,
) -> dict[str, float]:
    """Median wall ms of each ``fns[name]()``, timed round-robin: one sample of every contender
    per round, ``iters`` rounds, so a machine that slows down or speeds up during the run (shared
    CPUs) shifts every contender alike and the ratios between them stay fair. Round ``r`` starts
    at contender ``r mod k`` (of ``k``), so every contender takes every place in the round equally
    often and none always runs right after the same other program (whose cache and allocator
    state it would inherit).

    A sample is ``inner`` back-to-back calls (default ``default_inner()``) with one
    ``block_until_ready`` on the last result, divided by ``inner``: on an accelerator the calls
    queue asynchronously, so the sample measures the device's time per call.
    """
    inner = default_inner() if inner is None else inner
    if inner < 1:
        raise ValueError(f"time_interleaved: `inner` must be >= 1, got {inner}.")
    for fn in fns.values():
        for _ in range(warmup):
            jax.block_until_ready(fn())
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns.items())
    for r in range(iters if order else 0):
        for name, fn in order[r % len(order) :] + order[: r % len(order)]:
            t0 = time.perf_counter()
            for _ in range(inner - 1):
                fn()
            jax.block_until_ready(fn())
            times[name].append((time.perf_counter() - t0) * 1e3 / inner)
    return {name: statistics.median(t) for name, t in times.items()}


def timed_ms(fns: dict[str, Callable[[], Any]], **kwargs: Any) -> dict[str, float]:
    """``time_interleaved(fns, **kwargs)`` as result-row entries: ``{f"{name}_ms": ms}``."""
    return {f"{name}_ms": ms for name, ms in time_interleaved(fns, **kwargs).items()}
