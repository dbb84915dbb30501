"""Strided input gradient: polyphase vs subpixel vs interior lax.pad vs lhs_dilation, same run.

``python -m benchmarks.strided`` prints ms of the input gradient (``conv_input_grad``) and of a
stride-2 transposed convolution's forward pass for each mode, and the ratio to the default.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from benchmarks.run import markdown_table
from benchmarks.timing import timed_ms
from fconv.ops import conv_input_grad
from fconv.ops.conv import set_strided_input_grad

MODES = ("polyphase", "subpixel", "interior_pad", "lhs_dilation")


def run(iters: int = 20, batch: int = 64) -> list[dict]:
    key = jax.random.key(0)
    rows = []
    for name, x_shape, w_shape, kw in [
        ("3x3 s2 SAME 32->64", (batch, 32, 32, 32), (64, 32, 3, 3), dict(stride=2, padding="SAME")),
        ("4x4 s2 pad 1 16->32", (batch, 16, 64, 64), (32, 16, 4, 4), dict(stride=2, padding=1)),
        ("1x1 s2 64->128", (batch, 64, 32, 32), (128, 64, 1, 1), dict(stride=2)),
    ]:
        w = jax.random.normal(key, w_shape, jnp.float32)
        out = jax.eval_shape(
            functools.partial(
                jax.lax.conv_general_dilated,
                window_strides=(2, 2),
                padding=[(1, 1)] * 2
                if kw.get("padding") == 1
                else ("SAME" if kw.get("padding") == "SAME" else "VALID"),
            ),
            jnp.zeros(x_shape),
            w,
        ).shape
        g = jax.random.normal(key, out, jnp.float32)
        row = dict(case=name)
        calls = {}
        for mode in MODES:
            # The mode is read at trace time: trace (warm up) each call while its mode is set.
            set_strided_input_grad(mode)
            f = jax.jit(lambda g, w, kw=kw, xs=x_shape: conv_input_grad(g, w, xs, **kw))
            jax.block_until_ready(f(g, w))
            calls[mode] = functools.partial(f, g, w)
        row.update(timed_ms(calls, iters=iters))
        set_strided_input_grad("auto")
        for mode in MODES[1:]:
            row[f"{mode}_over_polyphase"] = row[f"{mode}_ms"] / row["polyphase_ms"]
        rows.append(row)
    return rows


if __name__ == "__main__":
    rows = run()
    print(f"# strided input gradient on {jax.devices()}\n")
    print(
        markdown_table(
            rows,
            [
                "case",
                *(f"{m}_ms" for m in MODES),
                *(f"{m}_over_polyphase" for m in MODES[1:]),
            ],
        )
    )
