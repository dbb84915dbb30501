"""Max-pool 2x2 backward forms on this backend: one-hot tiles (the CPU rule), the offset loop
(the rule elsewhere) and autodiff's select_and_scatter. ``python -m benchmarks.maxpool_variants``.

Measured on an H200 (two runs, ms): tiles 0.134/0.141, offsets 0.065/0.091, autodiff
0.072/0.104 (an interleaved-slices form, 0.124/0.142, was dropped).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from benchmarks.run import markdown_table
from benchmarks.timing import time_fn
from fconv.ops import max_pool
from fconv.ops.pooling import (
    PoolGeometry,
    _max_pool_bwd_offsets,
    _max_pool_bwd_tiles,
)


def run(iters: int = 20) -> list[dict]:
    key = jax.random.key(0)
    x = jax.random.normal(key, (64, 32, 32, 32), jnp.float32)
    geo = PoolGeometry((32, 32), (2, 2), (2, 2), ((0, 0), (0, 0)))
    y = max_pool(x, 2)
    g = jnp.ones_like(y)
    _, pullback = jax.vjp(lambda x: max_pool(x, 2, vjp="autodiff"), x)
    forms = {
        "tiles": jax.jit(lambda x, y, g: _max_pool_bwd_tiles(x, g, geo)),
        "offsets": jax.jit(lambda x, y, g: _max_pool_bwd_offsets(x, y, g, geo)),
    }
    row = {f"{k}_ms": time_fn(f, x, y, g, iters=iters) for k, f in forms.items()}
    row["autodiff_ms"] = time_fn(jax.jit(lambda pb, g: pb(g)), pullback, g, iters=iters)
    return [row]


if __name__ == "__main__":
    rows = run()
    print(f"# max-pool 2x2 backward forms on {jax.devices()}\n")
    print(markdown_table(rows, list(rows[0])))
