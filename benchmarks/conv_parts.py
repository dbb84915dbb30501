"""Convolution backward, part by part: input gradient and weight gradient, custom vs autodiff.

``python -m benchmarks.conv_parts`` prints ms for ``conv_input_grad`` and ``conv_weight_grad``
(fconv's hand-written maps) and for the same maps taken from ``jax.vjp`` of plain lax.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from benchmarks.run import markdown_table
from benchmarks.timing import timed_ms
from fconv.ops import conv, conv_input_grad, conv_weight_grad


def run(iters: int = 20, batch: int = 64) -> list[dict]:
    key = jax.random.key(0)
    x = jax.random.normal(key, (batch, 32, 32, 32), jnp.float32)
    rows = []
    for name, w_shape, kw in [
        ("3x3 SAME", (64, 32, 3, 3), dict(padding="SAME")),
        ("3x3 s2 SAME", (64, 32, 3, 3), dict(padding="SAME", stride=2)),
        ("depthwise 3x3", (32, 1, 3, 3), dict(padding="SAME", groups=32)),
    ]:
        w = jax.random.normal(key, w_shape, jnp.float32)
        g = jnp.ones(conv(x, w, **kw).shape, jnp.float32)
        row = dict(case=name)
        calls = {}
        for vjp in ("custom", "autodiff"):
            dx = jax.jit(lambda g, w, kw=kw, vjp=vjp: conv_input_grad(g, w, x.shape, vjp=vjp, **kw))
            dw = jax.jit(
                lambda x, g, kw=kw, vjp=vjp, s=w.shape: conv_weight_grad(x, g, s, vjp=vjp, **kw)
            )
            calls[f"{vjp}_dx"] = functools.partial(dx, g, w)
            calls[f"{vjp}_dw"] = functools.partial(dw, x, g)
        row.update(timed_ms(calls, iters=iters))
        row["dx_speedup"] = row["autodiff_dx_ms"] / row["custom_dx_ms"]
        row["dw_speedup"] = row["autodiff_dw_ms"] / row["custom_dw_ms"]
        rows.append(row)
    return rows


if __name__ == "__main__":
    rows = run()
    print(f"# convolution backward parts on {jax.devices()}\n")
    cols = ["case", "custom_dx_ms", "autodiff_dx_ms", "dx_speedup"]
    print(markdown_table(rows, cols + ["custom_dw_ms", "autodiff_dw_ms", "dw_speedup"]))
