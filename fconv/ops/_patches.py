"""Patches of a convolution ("im2col") and their transpose ("col2im"), scatter-free.

Shared by ``fconv.ops.conv`` (its small-patch matrix-product path on CPU),
``fconv.ops.local_conv`` (unshared, tiled and serialised convolution) and
``fconv.ops.pooling_family`` (Lp pooling's per-offset window slices). The geometry argument is
a ``ConvGeometry`` (anything with ``kernel_spatial``, ``dilation``, ``stride``, ``padding``,
``in_spatial`` and ``out_spatial``). Arrays are ``(N, C, *spatial)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from fconv.ops._placement import place_back

__all__ = ["col2im", "extract_patches", "window_offset_slices"]


def _offsets(geo: Any):
    return itertools.product(*(range(k) for k in geo.kernel_spatial))


# For each window offset k (row-major), the output-shaped strided slice x_pad[n, c, k d + s m]
# of x zero-padded by the geometry's padding.
def window_offset_slices(
    x: jax.Array, window: Sequence[int], dilation: Sequence[int], geo: Any
) -> list[tuple[tuple[int, ...], jax.Array]]:
    """``[(start k d, x_pad[..., k d + s m])]`` for every offset k of ``window``; ``geo`` gives
    ``padding``, ``stride`` and ``out_spatial`` (a ``ConvGeometry`` or ``PoolGeometry``)."""
    pads = [(0, 0, 0), (0, 0, 0), *((lo, hi, 0) for lo, hi in geo.padding)]
    x_pad = lax.pad(x, jnp.zeros((), x.dtype), pads)
    m = geo.out_spatial
    out = []
    for offset in itertools.product(*(range(k) for k in window)):
        start = tuple(o * d for o, d in zip(offset, dilation))
        limit = [st + (mi - 1) * s + 1 for st, mi, s in zip(start, m, geo.stride)]
        out.append(
            (start, lax.slice(x_pad, (0, 0, *start), (*x.shape[:2], *limit), (1, 1, *geo.stride)))
        )
    return out


# patches[n, c, p, m] = x_pad[n, c, k_p d + s m], p running over the kernel offsets k_p in
# row-major order: (N, C, *in) -> (N, C, P, *M).
def extract_patches(x: jax.Array, geo: Any) -> jax.Array:
    """``(N, C, *in_spatial)`` -> ``(N, C, P, *out_spatial)``, P = K_1 ... K_n offsets."""
    cols = window_offset_slices(x, geo.kernel_spatial, geo.dilation, geo)
    return jnp.stack([col for _, col in cols], axis=2)


# col2im, the transpose of extract_patches:  [n, c, p, m] -> [n, c, y]
#   dx[n, c, y] = sum_p sum_{m : k_p d - lo + s m = y} dp[n, c, p, m]
# For each offset, lax.pad with interior padding s - 1 spreads the slice by the stride and edge
# padding (k_p d - lo, N - (k_p d - lo + (M - 1) s + 1)) aligns it with x; negative edge pads crop
# the rows that fell into the zero padding (their gradient is discarded). Overlaps add up.
def col2im(dp: jax.Array, geo: Any) -> jax.Array:
    """``(N, C, P, *out_spatial)`` -> ``(N, C, *in_spatial)``, the transpose of the patches."""
    dx = None
    for p, offset in enumerate(_offsets(geo)):
        dilated = [o * d for o, d in zip(offset, geo.dilation)]
        term = place_back(lax.index_in_dim(dp, p, axis=2, keepdims=False), dilated, geo)
        dx = term if dx is None else dx + term
    return dx
