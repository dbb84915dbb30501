"""Single-op benchmarks: fconv's hand-written VJPs against the autodiff twins, same run."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks.timing import timed_ms
from fconv.ops import avg_pool, conv, conv_transpose, max_pool


def _conv_flops(x_shape, w_shape, out_shape, groups=1) -> float:
    """Multiply-adds x 2 of a forward convolution."""
    n, o, *m = out_shape
    k = 1
    for v in w_shape[2:]:
        k *= v
    out = 1
    for v in m:
        out *= v
    return 2.0 * n * o * out * (w_shape[1]) * k


def cases(quick: bool = False) -> list[dict[str, Any]]:
    """The benchmark cases of issue 6: 64x32x32x32 NCHW float32 (batch 16 with --quick)."""
    b = 16 if quick else 64
    key = jax.random.key(0)
    x = jax.random.normal(key, (b, 32, 32, 32), jnp.float32)
    w = jax.random.normal(key, (64, 32, 3, 3), jnp.float32) * 0.1
    wd = jax.random.normal(key, (32, 1, 3, 3), jnp.float32) * 0.1
    wt = jax.random.normal(key, (32, 16, 4, 4), jnp.float32) * 0.1
    return [
        dict(
            name="conv 3x3 SAME 32->64",
            op=functools.partial(conv, padding="SAME"),
            args=(x, w),
            kind="conv",
        ),
        dict(
            name="conv 3x3 stride 2",
            op=functools.partial(conv, padding="SAME", stride=2),
            args=(x, w),
            kind="conv",
        ),
        dict(
            name="depthwise 3x3 (groups 32)",
            op=functools.partial(conv, padding="SAME", groups=32),
            args=(x, wd),
            kind="conv",
        ),
        dict(
            name="conv_transpose 4x4 stride 2",
            op=functools.partial(conv_transpose, stride=2, padding=1),
            args=(x, wt),
            kind="transpose",
        ),
        dict(name="max_pool 2x2", op=functools.partial(max_pool, window=2), args=(x,), kind="pool"),
        dict(
            name="max_pool 3x3 stride 2",
            op=functools.partial(max_pool, window=3, stride=2),
            args=(x,),
            kind="pool",
        ),
        dict(name="avg_pool 2x2", op=functools.partial(avg_pool, window=2), args=(x,), kind="pool"),
    ]


def _timers(op: Callable, args: tuple, vjp: str, layout: str = "channels_first"):
    f = functools.partial(op, vjp=vjp)
    if layout == "channels_last":
        args = tuple(
            jnp.moveaxis(a, 1, -1) if i == 0 else jnp.transpose(a, (2, 3, 1, 0))
            for i, a in enumerate(args)
        )
        f = functools.partial(op, vjp=vjp, layout="channels_last")
    fwd = jax.jit(f)
    y = fwd(*args)
    # A random cotangent passed as an argument: a constant one (jnp.ones baked into the program)
    # lets XLA fold work away and flattered the custom strided conv by 1.2x.
    g = jax.random.normal(jax.random.key(1), y.shape, y.dtype)
    # Forward and backward together, returning both (as a training step needs them): the
    # forward cannot be dead-code-eliminated on either side.
    vjp_step = jax.jit(lambda g, *a: (lambda y, pb: (y, pb(g)))(*jax.vjp(f, *a)))
    fwd_bwd = functools.partial(vjp_step, g)
    _, pullback = jax.vjp(f, *args)  # a pytree (jax.tree_util.Partial): jit-able
    bwd = jax.jit(lambda pb, g: pb(g))
    return fwd, fwd_bwd, bwd, pullback, g, args


def run(quick: bool = False, iters: int = 20) -> list[dict[str, Any]]:
    """Times forward, forward+backward and backward alone, custom vs autodiff."""
    rows = []
    for case in cases(quick):
        row = dict(name=case["name"])
        calls: dict[str, Callable] = {}
        for vjp in ("custom", "autodiff"):
            fwd, fwd_bwd, bwd, pullback, g, args = _timers(case["op"], case["args"], vjp)
            calls[f"{vjp}_fwd"] = functools.partial(fwd, *args)
            calls[f"{vjp}_fwd_bwd"] = functools.partial(fwd_bwd, *args)
            calls[f"{vjp}_bwd"] = functools.partial(bwd, pullback, g)
        # Custom and autodiff alternate call by call (round-robin), so machine drift cancels.
        row.update(timed_ms(calls, iters=iters))
        row["fwd_bwd_speedup"] = row["autodiff_fwd_bwd_ms"] / row["custom_fwd_bwd_ms"]
        row["bwd_speedup"] = row["autodiff_bwd_ms"] / row["custom_bwd_ms"]
        if case["kind"] in ("conv", "transpose"):
            x, w = case["args"]
            y_shape = jax.eval_shape(case["op"], x, w).shape
            if case["kind"] == "conv":
                flops = _conv_flops(x.shape, w.shape, y_shape)
            else:  # a transposed conv costs what the conv it transposes costs
                flops = _conv_flops(y_shape, w.shape, x.shape)
            row["custom_fwd_bwd_gflops"] = 3 * flops / row["custom_fwd_bwd_ms"] / 1e6
        rows.append(row)
    return rows


def run_layouts(quick: bool = False, iters: int = 10) -> list[dict[str, Any]]:
    """Forward+backward (custom VJP) in NCHW vs channels-last for every op case."""
    rows = []
    for case in cases(quick):
        row = dict(name=case["name"])
        calls = {}
        for layout in ("channels_first", "channels_last"):
            _, fwd_bwd, _, _, _, args = _timers(case["op"], case["args"], "custom", layout)
            calls[layout] = functools.partial(fwd_bwd, *args)
        row.update(timed_ms(calls, iters=iters))
        row["nchw_over_nhwc"] = row["channels_first_ms"] / row["channels_last_ms"]
        rows.append(row)
    return rows
