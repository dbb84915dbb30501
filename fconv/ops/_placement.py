"""Scatter-free placement of a strided slice back into an input-shaped array.

The transpose of ``lax.slice(x_pad, o, ..., strides=s)``, shared by the backward rules of
max-pool, depthwise convolution by taps and the patch-based convolutions: XLA's CPU scatter is
serial, a ``lax.pad`` is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax


def place_back(t: jax.Array, offset: Sequence[int], geo: Any) -> jax.Array:
    """``out[..., o - lo + s m] = t[..., m]`` for an ``(N, C, *in_spatial)``-shaped ``out``.

    A ``lax.pad`` with interior padding ``s - 1`` spreads ``t`` by the stride, and edge padding
    ``(o - lo, N - (o - lo + (M - 1) s + 1))`` (negative values crop padded rows) aligns it.

    Args:
      t: ``(N, C, *M)`` values for one window/kernel offset.
      offset: the offset ``o`` inside the padded input, per spatial dim.
      geo: anything with ``padding`` (``(lo, hi)`` pairs), ``stride`` and ``in_spatial``
        (``ConvGeometry`` or ``PoolGeometry``).

    Returns:
      ``(N, C, *in_spatial)``, zero where no element of ``t`` lands.
    """
    pads = [(0, 0, 0), (0, 0, 0)]
    for o, (lo, _), s, n, m in zip(offset, geo.padding, geo.stride, geo.in_spatial, t.shape[2:]):
        low = o - lo
        pads.append((low, n - (low + (m - 1) * s + 1), s - 1))
    return lax.pad(t, jnp.zeros((), t.dtype), pads)
