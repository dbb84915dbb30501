"""N-d max and average pooling with hand-written backward rules, and their autodiff twins.

Notation per spatial dimension as in ``fconv.ops.conv``: input N, window K, stride s, padding
(lo, hi), output M = floor((N + lo + hi - K) / s) + 1, remainder r = (N + lo + hi - K) mod s.
Arrays are ``(N, C, *spatial)`` (or ``(N, *spatial, C)`` with ``layout="channels_last"``).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fconv.ops import _canon
from fconv.ops._canon import Padding
from fconv.ops._placement import place_back
from fconv.ops._window_slices import (
    reduce_window_slices,
    use_slices,
    window_sum_transpose_slices,
)

__all__ = ["PoolGeometry", "avg_pool", "max_pool"]


class PoolGeometry(NamedTuple):
    """Static description of one pooling op (hashable)."""

    in_spatial: tuple[int, ...]
    window: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]

    @property
    def out_spatial(self) -> tuple[int, ...]:
        return tuple(
            _canon.output_size(n, k, s, p)
            for n, k, s, p in zip(self.in_spatial, self.window, self.stride, self.padding)
        )

    @property
    def remainder(self) -> tuple[int, ...]:
        return tuple(
            (n + lo + hi - k) % s
            for n, k, s, (lo, hi) in zip(self.in_spatial, self.window, self.stride, self.padding)
        )

    @property
    def non_overlapping(self) -> bool:
        """Windows tile the input exactly: stride == window and no padding."""
        return self.window == self.stride and all(p == (0, 0) for p in self.padding)


def _reduce_window(x: jax.Array, init: float, op, geo: PoolGeometry) -> jax.Array:
    return lax.reduce_window(
        x,
        np.asarray(init, x.dtype),  # concrete, so lax picks the differentiable monoid reducer
        op,
        (1, 1, *geo.window),
        (1, 1, *geo.stride),
        ((0, 0), (0, 0), *geo.padding),
    )


def _fast_reduce_window(x: jax.Array, init: float, op, geo: PoolGeometry) -> jax.Array:
    """The custom ops' forward: strided slices on CPU (3-10x faster there), else reduce_window."""
    if use_slices():
        return reduce_window_slices(x, init, op, geo)
    return _reduce_window(x, init, op, geo)


def _max_forward(x: jax.Array, geo: PoolGeometry) -> jax.Array:
    return _reduce_window(x, -jnp.inf, lax.max, geo)


# Max-pool backward, general case (any stride, padding):  [n, c, m] -> [n, c, y]
#   dx[y] = sum over windows m that contain y of g[m] * [y is the FIRST argmax of window m]
# "First" is row-major order inside the window, which is what XLA's select_and_scatter (used by
# jax.grad of reduce_window max, with select = ">=") does; padding is -inf; overlapping windows
# add up. Loop over the K_1 ... K_n window offsets (unrolled at trace time): the strided slice
# x_pad[o + s m] is the window's value at offset o; "taken" marks windows already routed.
def _routed_by_offset(x: jax.Array, y: jax.Array, g: jax.Array, geo: PoolGeometry):
    """Yields ``(offset, g where offset o is its window's first maximum, else 0)``, shape of y."""
    neg_inf = jnp.asarray(-jnp.inf, x.dtype)
    x_pad = lax.pad(x, neg_inf, [(0, 0, 0), (0, 0, 0), *((lo, hi, 0) for lo, hi in geo.padding)])
    taken = jnp.zeros(y.shape, bool)
    zero = jnp.zeros((), g.dtype)
    for offset in itertools.product(*(range(k) for k in geo.window)):
        limit = [o + (m - 1) * s + 1 for o, m, s in zip(offset, y.shape[2:], geo.stride)]
        v = lax.slice(x_pad, (0, 0, *offset), (*x.shape[:2], *limit), (1, 1, *geo.stride))
        hit = (v == y) & ~taken
        taken = taken | hit
        yield offset, jnp.where(hit, g, zero)


# ... each routed slice placed back over the input with a strided lax.pad, summed.
def _max_pool_bwd_offsets(x: jax.Array, y: jax.Array, g: jax.Array, geo: PoolGeometry):
    dx = jnp.zeros(x.shape, g.dtype)
    for offset, routed in _routed_by_offset(x, y, g, geo):
        dx = dx + place_back(routed, offset, geo)
    return dx


# Max-pool backward, overlapping strided windows on CPU ("polyphase" placement). Same routing as
# the offset loop, but in padded coordinates t = m s + o an offset o only reaches the positions
# of phase rho = o mod s, at q = m + o div s. So each offset's routed g is added, shifted by
# o div s with a plain edge pad (no interior padding), into the array of its phase (length
# Q = ceil(N_pad / s)); phases that no offset reaches stay zero. The s_1 ... s_n phase arrays are
# then interleaved (stack, transpose, reshape: x_pad[q s + rho] = phase_rho[q]) and cropped to
# the input. The offset loop instead writes K_1 ... K_n stride-spread arrays of the full input
# size.
def _max_pool_bwd_phases(x: jax.Array, y: jax.Array, g: jax.Array, geo: PoolGeometry):
    n = len(geo.window)
    zero = jnp.zeros((), g.dtype)
    padded = [size + lo + hi for size, (lo, hi) in zip(geo.in_spatial, geo.padding)]
    q = [-(-size // s) for size, s in zip(padded, geo.stride)]
    phases: dict[tuple[int, ...], jax.Array] = {}
    for offset, routed in _routed_by_offset(x, y, g, geo):
        shift = [o // s for o, s in zip(offset, geo.stride)]
        pads = [(0, 0, 0), (0, 0, 0)]
        pads += [(sh, qi - m - sh, 0) for sh, qi, m in zip(shift, q, y.shape[2:])]
        term = lax.pad(routed, zero, pads)
        rho = tuple(o % s for o, s in zip(offset, geo.stride))
        phases[rho] = term if rho not in phases else phases[rho] + term
    lead = x.shape[:2]
    empty = jnp.zeros((*lead, *q), g.dtype)
    rhos = itertools.product(*(range(s) for s in geo.stride))
    stacked = jnp.stack([phases.get(rho, empty) for rho in rhos], axis=-1)
    stacked = stacked.reshape(*lead, *q, *geo.stride)  # (N, C, Q_1.., s_1..)
    perm = [0, 1]
    for i in range(n):
        perm += [2 + i, 2 + n + i]
    dx_pad = jnp.transpose(stacked, perm).reshape(*lead, *(qi * s for qi, s in zip(q, geo.stride)))
    start = (0, 0, *(lo for lo, _ in geo.padding))
    stop = (*lead, *(lo + size for (lo, _), size in zip(geo.padding, geo.in_spatial)))
    return lax.slice(dx_pad, start, stop)


# Max-pool backward, non-overlapping windows (stride == window, no padding):
#   view x[..., :M K] as (..., M_1, K_1, ..., M_n, K_n), move the K axes last and flatten them,
#   take jnp.argmax (first maximum, row-major), and write g through a one-hot mask; the r
#   remainder rows get zeros. No scatter, one fused elementwise pass.
def _max_pool_bwd_tiles(x: jax.Array, g: jax.Array, geo: PoolGeometry):
    n = len(geo.window)
    m = g.shape[2:]
    used = tuple(mi * k for mi, k in zip(m, geo.window))
    xc = x[(slice(None), slice(None), *(slice(0, u) for u in used))]
    split = [*x.shape[:2]]
    for mi, k in zip(m, geo.window):
        split += [mi, k]
    perm = (0, 1, *range(2, 2 + 2 * n, 2), *range(3, 3 + 2 * n, 2))
    tiles = jnp.transpose(xc.reshape(split), perm).reshape(*x.shape[:2], *m, -1)
    window_size = int(np.prod(geo.window))
    offsets = jnp.arange(window_size).reshape((1,) * (tiles.ndim - 1) + (window_size,))
    onehot = jnp.argmax(tiles, axis=-1)[..., None] == offsets
    dt = jnp.where(onehot, g[..., None], jnp.zeros((), g.dtype))
    dt = dt.reshape(*x.shape[:2], *m, *geo.window)
    inv = [0, 1]
    for i in range(n):
        inv += [2 + i, 2 + n + i]
    dx = jnp.transpose(dt, inv).reshape(*x.shape[:2], *used)
    pads = [(0, 0, 0), (0, 0, 0)] + [(0, size - u, 0) for size, u in zip(x.shape[2:], used)]
    return lax.pad(dx, jnp.zeros((), g.dtype), pads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool_p(x: jax.Array, geo: PoolGeometry) -> jax.Array:
    return _fast_reduce_window(x, -jnp.inf, lax.max, geo)


def _max_pool_p_fwd(x, geo):
    y = _max_pool_p(x, geo)  # not the raw lax op: grad-of-grad must see the custom rule
    return y, (x, y)


def _max_pool_p_bwd(geo, res, g):
    x, y = res
    # CPU: tiles for tiling windows (35x faster than select_and_scatter there), the polyphase
    # placement for other strided windows. On GPU the offset loop fuses into one kernel and
    # measured 1.1x faster than autodiff on an H200, the tiles form 0.54x.
    if jax.default_backend() == "cpu":
        if geo.non_overlapping:
            return (_max_pool_bwd_tiles(x, g, geo).astype(x.dtype),)
        if any(s > 1 for s in geo.stride):
            return (_max_pool_bwd_phases(x, y, g, geo).astype(x.dtype),)
    return (_max_pool_bwd_offsets(x, y, g, geo).astype(x.dtype),)


_max_pool_p.defvjp(_max_pool_p_fwd, _max_pool_p_bwd)


def _avg_divisor(geo: PoolGeometry, count_include_pad: bool) -> np.ndarray | float:
    """The window divisor: K_1...K_n, or per output the number of real (unpadded) cells."""
    if count_include_pad:
        return float(np.prod(geo.window))
    counts = np.ones((1, 1), np.float64)
    for n, k, s, (lo, _), m in zip(
        geo.in_spatial, geo.window, geo.stride, geo.padding, geo.out_spatial
    ):
        start = np.arange(m) * s - lo
        c = np.minimum(start + k, n) - np.maximum(start, 0)
        counts = counts[..., None] * c
    return counts


def _avg_forward(
    x: jax.Array, geo: PoolGeometry, count_include_pad: bool, *, fast: bool = False
) -> jax.Array:
    total = (_fast_reduce_window if fast else _reduce_window)(x, 0.0, lax.add, geo)
    return total / jnp.asarray(_avg_divisor(geo, count_include_pad), x.dtype)


# Transpose of the window sum  S[m] = sum_k x_pad[m s + k]:   [n, c, m] -> [n, c, y]
#   dx[y] = sum over windows m containing y of t[m]
# Spread t by the stride (interior padding s - 1), pad by (K - 1 - lo, K - 1 - hi + r) and take
# stride-1 window sums of size K: the padded length is N + K - 1, so N sums remain; the r
# remainder rows, which no window reaches, get zero. On CPU the same map is computed as a tile
# broadcast or separable strided pads (fconv.ops._window_slices, 2.6-7x faster there).
def window_sum_transpose(t: jax.Array, geo: PoolGeometry) -> jax.Array:
    if use_slices():
        return window_sum_transpose_slices(t, geo)
    return _window_sum_transpose_lax(t, geo)


def _window_sum_transpose_lax(t: jax.Array, geo: PoolGeometry) -> jax.Array:
    pads = [(0, 0, 0), (0, 0, 0)]
    for k, (lo, hi), r, s in zip(geo.window, geo.padding, geo.remainder, geo.stride):
        pads.append((k - 1 - lo, k - 1 - hi + r, s - 1))
    t = lax.pad(t, jnp.zeros((), t.dtype), pads)
    ones = (1,) * len(geo.window)
    return lax.reduce_window(
        t, np.zeros((), t.dtype), lax.add, (1, 1, *geo.window), (1, 1, *ones), "VALID"
    )


# Avg-pool backward:  dx[y] = sum over windows m containing y of g[m] / divisor[m]
def _avg_pool_bwd_rule(g: jax.Array, geo: PoolGeometry, count_include_pad: bool) -> jax.Array:
    return window_sum_transpose(g / jnp.asarray(_avg_divisor(geo, count_include_pad), g.dtype), geo)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _avg_pool_p(x: jax.Array, geo: PoolGeometry, count_include_pad: bool) -> jax.Array:
    return _avg_forward(x, geo, count_include_pad, fast=True)


def _avg_pool_p_fwd(x, geo, count_include_pad):
    return _avg_pool_p(x, geo, count_include_pad), None


def _avg_pool_p_bwd(geo, count_include_pad, _, g):
    return (_avg_pool_bwd_rule(g, geo, count_include_pad),)


_avg_pool_p.defvjp(_avg_pool_p_fwd, _avg_pool_p_bwd)


def _prepare(
    x: jax.Array,
    window: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: Padding,
    layout: str,
    vjp: str,
) -> tuple[jax.Array, PoolGeometry, bool]:
    _canon.check_vjp_mode(vjp)
    last = _canon.check_layout(layout)
    x = _canon.check_float_array(x, "x")
    if x.ndim not in (3, 4, 5):
        raise ValueError(
            f"`x` must be 3-, 4- or 5-D (batch, channels, *spatial), got shape {tuple(x.shape)}."
        )
    if last:
        x = _canon.to_channels_first(x)
    n = x.ndim - 2
    window = _canon.ntuple(window, n, "window")
    stride = window if stride is None else _canon.ntuple(stride, n, "stride")
    pads = _canon.resolve_padding(padding, x.shape[2:], window, stride)
    for (lo, hi), k in zip(pads, window):
        if lo >= k or hi >= k:
            raise ValueError(
                f"`padding` {padding!r} gives a pad of {max(lo, hi)} >= the window size {k}: "
                "some windows would hold padding only."
            )
    _canon.check_window_fits(x.shape[2:], window, pads, "window")
    return x, PoolGeometry(tuple(x.shape[2:]), window, stride, pads), last


def max_pool(
    x: jax.Array,
    window: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
    *,
    layout: str = "channels_first",
    vjp: str = "custom",
) -> jax.Array:
    """1-, 2- or 3-D max pooling with an argmax-routing backward rule.

    The gradient of each output goes to the first maximum of its window in row-major order
    (exactly what ``jax.grad`` of ``lax.reduce_window(max)`` does, ties included); with
    overlapping windows (``stride < window``) the contributions add up. Padding is ``-inf``.

    Args:
      x: ``(N, C, *spatial)`` (``(N, *spatial, C)`` with ``layout="channels_last"``).
      window: window size, an int or one per spatial dim.
      stride: an int or one per spatial dim; defaults to ``window``.
      padding: ``"VALID"`` (default), ``"SAME"``, ``"FULL"``, ints or ``(lo, hi)`` pairs; each
        pad must be smaller than the window.
      layout: ``"channels_first"`` or ``"channels_last"``.
      vjp: ``"custom"`` (default) or ``"autodiff"`` (``jax.grad`` of ``reduce_window``).

    Returns:
      ``(N, C, *out)`` with ``out = floor((N + lo + hi - K) / s) + 1``.

    >>> import jax.numpy as jnp
    >>> max_pool(jnp.arange(16.0).reshape(1, 1, 4, 4), 2)[0, 0]
    Array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    """
    x, geo, last = _prepare(x, window, stride, padding, layout, vjp)
    with jax.named_scope("fconv.max_pool"):
        y = _max_pool_p(x, geo) if vjp == "custom" else _max_forward(x, geo)
    return _canon.to_channels_last(y) if last else y


def avg_pool(
    x: jax.Array,
    window: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
    *,
    count_include_pad: bool = True,
    layout: str = "channels_first",
    vjp: str = "custom",
) -> jax.Array:
    """1-, 2- or 3-D average pooling with a hand-written backward rule.

    Args:
      x: ``(N, C, *spatial)`` (``(N, *spatial, C)`` with ``layout="channels_last"``).
      window: window size, an int or one per spatial dim.
      stride: an int or one per spatial dim; defaults to ``window``.
      padding: as for ``max_pool`` (zero padding).
      count_include_pad: divide by the full window size ``K_1 ... K_n`` (True, default, as
        PyTorch) or by the number of real input cells in each window (False; Flax's
        ``count_include_pad=False``).
      layout: ``"channels_first"`` or ``"channels_last"``.
      vjp: ``"custom"`` (default) or ``"autodiff"``.

    Returns:
      ``(N, C, *out)``.

    Raises:
      TypeError: ``count_include_pad`` not a bool.
      ValueError: as for ``max_pool``.
    """
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"`count_include_pad` must be a bool, got {count_include_pad!r}.")
    x, geo, last = _prepare(x, window, stride, padding, layout, vjp)
    count_include_pad = bool(count_include_pad)
    with jax.named_scope("fconv.avg_pool"):
        if vjp == "custom":
            y = _avg_pool_p(x, geo, count_include_pad)
        else:
            y = _avg_forward(x, geo, count_include_pad)
    return _canon.to_channels_last(y) if last else y
