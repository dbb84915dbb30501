"""Max-pool backward forms on this backend, timed round-robin: one-hot tiles (the CPU rule for
tiling windows), the offset loop (the rule off CPU), the polyphase placement (the CPU rule for
strided overlapping windows) and autodiff's select_and_scatter. ``python -m
benchmarks.maxpool_variants`` prints ms per backward and each form's speed-up over autodiff,
then the window forms that ``_window_slices`` offers the CPU (max-pool forward, avg-pool
backward) against the ``reduce_window`` forms used elsewhere.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from benchmarks.run import markdown_table
from benchmarks.timing import timed_ms
from fconv.ops import max_pool
from fconv.ops._window_slices import reduce_window_slices, window_sum_transpose_slices
from fconv.ops.pooling import (
    PoolGeometry,
    _max_pool_bwd_offsets,
    _max_pool_bwd_phases,
    _max_pool_bwd_tiles,
    _reduce_window,
    _window_sum_transpose_lax,
)

FORMS = ("tiles", "offsets", "phases")


def _cases():
    """Yields ``(name, window, stride, geometry)`` of the 2x2 and 3x3/s2 pools of a 32x32 map."""
    for name, window, stride in [("2x2", 2, 2), ("3x3 stride 2", 3, 2)]:
        geo = PoolGeometry((32, 32), (window,) * 2, (stride,) * 2, ((0, 0), (0, 0)))
        yield name, window, stride, geo


def run(iters: int = 20, batch: int = 64) -> list[dict]:
    """One row per pooling case: ms of every applicable backward form and of autodiff's."""
    x = jax.random.normal(jax.random.key(0), (batch, 32, 32, 32), jnp.float32)
    rows = []
    for name, window, stride, geo in _cases():
        pool = functools.partial(max_pool, window=window, stride=stride)
        y = pool(x)
        g = jnp.ones_like(y)
        forms = {
            "tiles": lambda x, y, g, geo=geo: _max_pool_bwd_tiles(x, g, geo),
            "offsets": lambda x, y, g, geo=geo: _max_pool_bwd_offsets(x, y, g, geo),
            "phases": lambda x, y, g, geo=geo: _max_pool_bwd_phases(x, y, g, geo),
        }
        if not geo.non_overlapping:
            del forms["tiles"]
        calls = {k: functools.partial(jax.jit(f), x, y, g) for k, f in forms.items()}
        _, pullback = jax.vjp(lambda x, pool=pool: pool(x, vjp="autodiff"), x)
        calls["autodiff"] = functools.partial(jax.jit(lambda pb, g: pb(g)), pullback, g)
        row: dict = dict(case=name)
        row.update(timed_ms(calls, iters=iters))
        for key in forms:
            row[f"{key}_speedup"] = row["autodiff_ms"] / row[f"{key}_ms"]
        rows.append(row)
    return rows


def run_window_forms(iters: int = 20, batch: int = 64) -> list[dict]:
    """Strided-slice forms vs reduce_window: max-pool forward and avg-pool backward (the
    window-sum transpose), ms per call, round-robin.
    """
    x = jax.random.normal(jax.random.key(0), (batch, 32, 32, 32), jnp.float32)
    rows = []
    for name, _, _, geo in _cases():
        t = jnp.ones((batch, 32, *geo.out_spatial), jnp.float32)
        maxing = dict(init=-jnp.inf, op=jax.lax.max, geo=geo)
        fns = {
            "max_fwd_reduce_window": (functools.partial(_reduce_window, **maxing), x),
            "max_fwd_slices": (functools.partial(reduce_window_slices, **maxing), x),
            "avg_bwd_reduce_window": (functools.partial(_window_sum_transpose_lax, geo=geo), t),
            "avg_bwd_slices": (functools.partial(window_sum_transpose_slices, geo=geo), t),
        }
        calls = {k: functools.partial(jax.jit(f), a) for k, (f, a) in fns.items()}
        row: dict = dict(case=name)
        row.update(timed_ms(calls, iters=iters))
        rows.append(row)
    return rows


if __name__ == "__main__":
    rows = run()
    print(f"# max-pool backward forms on {jax.devices()} (speed-up = autodiff / form)\n")
    cols = ["case", *(f"{f}_ms" for f in FORMS), "autodiff_ms", *(f"{f}_speedup" for f in FORMS)]
    print(markdown_table(rows, cols))
    rows = run_window_forms()
    print("\n# window forms: strided slices vs reduce_window (ms)\n")
    print(markdown_table(rows, list(rows[0])))
