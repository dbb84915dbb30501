"""More pooling ops with hand-written backward rules: Lp, maxout, global, adaptive, SPP, ROI.

* ``lp_pool``               (sum over the window of |x|^p)^(1/p); L2 pooling for p = 2.
* ``maxout``                cross-channel max over groups of consecutive channels.
* ``global_avg_pool``, ``global_max_pool``   ``(N, C, *spatial) -> (N, C)``.
* ``adaptive_avg_pool``, ``adaptive_max_pool``   a fixed number of bins (PyTorch semantics).
* ``spatial_pyramid_pool``  SPP-net: adaptive pools at several levels, flattened and concatenated.
* ``roi_max_pool``          Fast R-CNN ROI pooling (torchvision ``roi_pool`` quantisation).

Max-type ops route each output's gradient to the FIRST maximum of its region in row-major order
(what ``jax.grad`` of ``lax.reduce_window(max)`` does for ``fconv.ops.max_pool``); ties get no
duplicated gradient. Every backward rule is built from one-hot masks, ``lax.pad`` and
``lax.dot_general``: no ``lax.scatter`` (serial on CPU). Each op takes ``vjp="custom"`` (default)
or ``vjp="autodiff"``, a plain-jax twin whose gradient JAX derives (gathers at argmax indices for
the max-type ops, so it also routes to the first maximum).

Arrays are channels-first ``(N, C, *spatial)``.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fconv.ops import _canon
from fconv.ops._canon import Padding
from fconv.ops._patches import window_offset_slices
from fconv.ops._placement import place_back
from fconv.ops.pooling import PoolGeometry, _prepare, window_sum_transpose

__all__ = [
    "adaptive_avg_pool",
    "adaptive_max_pool",
    "global_avg_pool",
    "global_max_pool",
    "lp_pool",
    "maxout",
    "roi_max_pool",
    "spatial_pyramid_pool",
]

_HIGHEST = lax.Precision.HIGHEST


def _check_x(x: Any, vjp: str, ranks: Sequence[int] = (1, 2, 3)) -> tuple[jax.Array, int]:
    """For the ops that pool over whole regions (global, adaptive, SPP, ROI): every spatial
    size must be >= 1, or a region would be empty."""
    _canon.check_vjp_mode(vjp)
    x = _canon.check_float_array(x, "x")
    n = _canon.spatial_rank(x, "x", ranks)
    if 0 in x.shape[2:]:
        raise ValueError(
            f"`x` must have every spatial size >= 1 (a pooled region cannot be empty), got "
            f"shape {tuple(x.shape)}."
        )
    return x, n


def _first_argmax_onehot(v: jax.Array, axis: int) -> jax.Array:
    """Boolean mask, True at the first maximum of ``v`` along ``axis`` (``jnp.argmax`` ties)."""
    idx = jnp.argmax(v, axis=axis, keepdims=True)
    return lax.broadcasted_iota(idx.dtype, v.shape, axis) == idx


def _take_first_max(v: jax.Array, axis: int) -> jax.Array:
    """Autodiff-twin max: a gather at the first argmax, whose JAX gradient routes the same way."""
    idx = jnp.argmax(v, axis=axis, keepdims=True)
    return jnp.squeeze(jnp.take_along_axis(v, idx, axis=axis), axis)


# ---------------------------------------------------------------------------------------------
# Lp pooling.
# ---------------------------------------------------------------------------------------------


def _abs_pow(a: jax.Array, p: float) -> jax.Array:
    return (
        lax.integer_pow(a, int(p)) if float(p).is_integer() else lax.pow(a, jnp.asarray(p, a.dtype))
    )


def _acc_dtype(dtype: Any) -> Any:
    """float32 for half-precision inputs (|x|^p of a float16 300 already overflows), else dtype."""
    return jnp.promote_types(dtype, jnp.float32)


def _window_taps(a: jax.Array, geo: PoolGeometry) -> list[tuple[tuple[int, ...], jax.Array]]:
    """``[(offset o, a_pad[..., o + s m])]`` for every window offset (zero padding)."""
    return window_offset_slices(a, geo.window, (1,) * len(geo.window), geo)


# Windows of at most this many cells take the scaled per-offset forms below (a slice per
# offset: cost and compile time grow with the window); larger ones (e.g. a global pool) keep
# one reduce_window, where |x|^p can overflow or underflow for large p.
_LP_SCALED_MAX_TAPS = 32


def _lp_scaled(geo: PoolGeometry) -> bool:
    return math.prod(geo.window) <= _LP_SCALED_MAX_TAPS


# Lp-pool forward. Scaled form (windows of <= 32 cells), so that no power overflows or
# underflows: with M[m] the window's largest |x| (the offset-wise max of its strided slices),
#   y[m] = M[m] (sum_{k in window m} (|x_k| / M[m])^p)^(1/p)       (y[m] = 0 where M[m] = 0),
# every ratio in [0, 1] and the sum in [1, K]. The autodiff twin differentiates the same
# program with M held constant (stop_gradient): y is homogeneous in M, so that is the exact
# derivative (nan where a window is all zeros, p > 1). Larger windows: y = S^(1/p),
# S = reduce_window sum of |x|^p. Half-precision inputs accumulate in float32 either way.
def _lp_forward(x: jax.Array, p: float, geo: PoolGeometry) -> jax.Array:
    a = jnp.abs(x).astype(_acc_dtype(x.dtype))
    if not _lp_scaled(geo):
        s = lax.reduce_window(
            _abs_pow(a, p),
            np.zeros((), a.dtype),
            lax.add,
            (1, 1, *geo.window),
            (1, 1, *geo.stride),
            ((0, 0), (0, 0), *geo.padding),
        )
        return (s if p == 1 else lax.pow(s, jnp.asarray(1.0 / p, a.dtype))).astype(x.dtype)
    taps = [t for _, t in _window_taps(a, geo)]
    if p == 1:
        return functools.reduce(lax.add, taps).astype(x.dtype)
    peak = lax.stop_gradient(functools.reduce(lax.max, taps))
    nonzero = peak > 0
    peak_safe = jnp.where(nonzero, peak, jnp.ones((), peak.dtype))
    total = functools.reduce(lax.add, [_abs_pow(t / peak_safe, p) for t in taps])
    y = peak * lax.pow(total, jnp.asarray(1.0 / p, total.dtype))
    return jnp.where(nonzero, y, jnp.zeros((), y.dtype)).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _lp_p(x: jax.Array, p: float, geo: PoolGeometry) -> jax.Array:
    return _lp_forward(x, p, geo)


def _lp_p_fwd(x, p, geo):
    y = _lp_forward(x, p, geo)
    return y, (x, y)


# Lp-pool backward.  y[m] = S[m]^(1/p),  S[m] = sum_{k in window m} |x_k|^p, so
#   dy[m]/dx_k = (1/p) S^(1/p - 1) p |x_k|^(p-1) sign(x_k) = (|x_k| / y[m])^(p-1) sign(x_k)
#   dx[y] = sign(x[y]) * sum_{m containing y} g[m] (|x[y]| / y[m])^(p-1)
# Scaled form: per window offset o, the ratio of the offset's slice |x|_o to y (in [0, 1]: no
# overflow however large p), times g, placed back at o (pooling's place_back; the sum over o is
# the transpose of the window sum). Larger windows: |x|^(p-1) sign(x) times the window-sum
# transpose of g y^(1-p). p = 1: the ratio is 1, dx = sign(x) * window_sum_transpose(g), with
# sign(0) = 0 (the minimum-norm subgradient of |x|, as PyTorch's abs; jax.grad of abs takes 1
# at 0). y[m] = 0 means every |x| in window m is 0: the true derivative is 0 there (p > 1),
# where autodiff gives 0 * inf = nan; its windows add nothing.
def _lp_p_bwd(p, geo, res, g):
    x, y = res
    acc = _acc_dtype(x.dtype)
    g, y = g.astype(acc), y.astype(acc)
    if p == 1:
        dx = jnp.sign(x).astype(acc) * window_sum_transpose(g, geo)
        return (dx.astype(x.dtype),)
    positive = y > 0
    g_over = jnp.where(positive, g, jnp.zeros((), acc))
    y_safe = jnp.where(positive, y, jnp.ones((), acc))
    a = jnp.abs(x).astype(acc)
    if not _lp_scaled(geo):
        t = g_over * lax.pow(y_safe, jnp.asarray(1.0 - p, acc))
        dx = _abs_pow(a, p - 1) * jnp.sign(x).astype(acc) * window_sum_transpose(t, geo)
        return (dx.astype(x.dtype),)
    dx = None
    for o, t in _window_taps(a, geo):
        term = place_back(g_over * _abs_pow(t / y_safe, p - 1), o, geo)
        dx = term if dx is None else dx + term
    return ((jnp.sign(x).astype(acc) * dx).astype(x.dtype),)


_lp_p.defvjp(_lp_p_fwd, _lp_p_bwd)


def lp_pool(
    x: jax.Array,
    p: float,
    window: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
    *,
    vjp: str = "custom",
) -> jax.Array:
    """Lp pooling ``y = (sum_window |x|^p)^(1/p)`` (L2 pooling for ``p=2``), 1-, 2- or 3-D.

    ``p=1`` is the window sum of ``|x|``; as ``p`` grows it tends to max pooling of ``|x|``.
    Unlike PyTorch's ``LPPool`` (which takes ``x^p`` without the absolute value) this is the
    norm of the window. For windows of at most 32 cells it is computed as
    ``M (sum (|x| / M)^p)^(1/p)`` with ``M`` the window's largest ``|x|``, so no power overflows
    or underflows (``p=40`` on values of 10); larger windows sum ``|x|^p`` directly (one
    ``reduce_window``; it can overflow for large ``p``). Half-precision inputs accumulate in
    float32 (``p=2`` on float16 values of 300 is fine). Where a window is all
    zeros the gradient is 0 (autodiff gives ``nan`` for ``p > 1``). At an ``x`` that is exactly
    0 with ``p=1`` the custom gradient takes ``sign(0) = 0`` (PyTorch's convention for
    ``|x|``), where ``jax.grad`` of ``jnp.abs`` takes 1: both are subgradients.

    Args:
      x: ``(N, C, *spatial)``.
      p: the norm's order, a finite number ``>= 1``.
      window: window size, an int or one per spatial dim.
      stride: an int or one per spatial dim; defaults to ``window``.
      padding: as for ``fconv.ops.max_pool`` (zero padding, each pad smaller than the window).
      vjp: ``"custom"`` (default) or ``"autodiff"``.

    Returns:
      ``(N, C, *out)``, ``out = floor((N + lo + hi - K) / s) + 1``.

    Raises:
      ValueError: ``p`` not finite or ``< 1``; bad window, stride or padding.
      TypeError: ``p`` not a number.

    >>> import jax.numpy as jnp
    >>> lp_pool(jnp.full((1, 1, 2, 2), 3.0), 2, 2)[0, 0]
    Array([[6.]], dtype=float32)
    """
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"`p` must be a number (the norm's order), got {p!r}.")
    p = float(p)
    if not (math.isfinite(p) and p >= 1):
        raise ValueError(f"`p` must be a finite number >= 1, got {p!r}.")
    x, geo, _ = _prepare(x, window, stride, padding, "channels_first", vjp)
    with jax.named_scope("fconv.lp_pool"):
        return _lp_p(x, p, geo) if vjp == "custom" else _lp_forward(x, p, geo)


# ---------------------------------------------------------------------------------------------
# Maxout.
# ---------------------------------------------------------------------------------------------


def _maxout_split(x: jax.Array, k: int, axis: int) -> jax.Array:
    """(..., C, ...) -> (..., C / k, k, ...): the pieces on axis ``axis + 1``."""
    return x.reshape(*x.shape[:axis], x.shape[axis] // k, k, *x.shape[axis + 1 :])


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _maxout_p(x: jax.Array, k: int, axis: int) -> jax.Array:
    return jnp.max(_maxout_split(x, k, axis), axis=axis + 1)


def _maxout_p_fwd(x, k, axis):
    xs = _maxout_split(x, k, axis)
    return jnp.max(xs, axis=axis + 1), _first_argmax_onehot(xs, axis + 1)


# Maxout backward:  y[.., j, ..] = max_i x[.., j k + i, ..]
#   dx[.., j k + i, ..] = g[.., j, ..] * [i is the first argmax over the k pieces of group j]
# A one-hot mask (from jnp.argmax, first maximum on ties) times the broadcast g; no scatter.
def _maxout_p_bwd(k, axis, onehot, g):
    dx = jnp.where(onehot, jnp.expand_dims(g, axis + 1), jnp.zeros((), g.dtype))
    shape = (*onehot.shape[:axis], onehot.shape[axis] * k, *onehot.shape[axis + 2 :])
    return (dx.reshape(shape),)


_maxout_p.defvjp(_maxout_p_fwd, _maxout_p_bwd)


def maxout(x: jax.Array, num_pieces: int, axis: int = 1, *, vjp: str = "custom") -> jax.Array:
    """Maxout: the maximum over each group of ``num_pieces`` consecutive channels.

    ``y[:, j] = max(x[:, j k], ..., x[:, j k + k - 1])`` with ``k = num_pieces`` (Goodfellow et
    al. 2013; the lectures' cross-channel pooling). The gradient goes to the first maximum.

    Args:
      x: any floating array with at least one axis; channels on ``axis``.
      num_pieces: k >= 1, must divide ``x.shape[axis]``.
      axis: the channel axis. Default 1 (NCHW).
      vjp: ``"custom"`` (default) or ``"autodiff"``.

    Returns:
      ``x`` with ``x.shape[axis] // num_pieces`` channels on ``axis``.

    Raises:
      ValueError: ``num_pieces`` < 1 or not dividing the channels; ``axis`` out of range.
      TypeError: ``num_pieces`` or ``axis`` not an int.

    >>> import jax.numpy as jnp
    >>> maxout(jnp.array([[1.0, 5.0, 3.0, 2.0]]), 2)
    Array([[5., 3.]], dtype=float32)
    """
    _canon.check_vjp_mode(vjp)
    x = _canon.check_float_array(x, "x")
    if isinstance(num_pieces, bool) or not isinstance(num_pieces, (int, np.integer)):
        raise TypeError(f"`num_pieces` must be an int, got {num_pieces!r}.")
    k = int(num_pieces)
    if k < 1:
        raise ValueError(f"`num_pieces` must be >= 1, got {k}.")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"`axis` must be an int, got {axis!r}.")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"`axis` {axis} is out of range for `x` of shape {tuple(x.shape)}.")
    axis = int(axis) % x.ndim
    if x.shape[axis] % k:
        raise ValueError(
            f"`num_pieces` (={k}) must divide the channels on axis {axis} (={x.shape[axis]}) of "
            f"`x` {tuple(x.shape)}."
        )
    with jax.named_scope("fconv.maxout"):
        if vjp == "custom":
            return _maxout_p(x, k, axis)
        return _take_first_max(_maxout_split(x, k, axis), axis + 1)


# ---------------------------------------------------------------------------------------------
# Global pooling.
# ---------------------------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _global_avg_p(x: jax.Array, spatial: tuple[int, ...]) -> jax.Array:
    return jnp.mean(x.reshape(*x.shape[:2], -1), axis=-1)


def _global_avg_p_fwd(x, spatial):
    return _global_avg_p(x, spatial), None


# Global-average backward:  y[n, c] = (1/S) sum_y x[n, c, y],  S = prod(spatial)
#   dx[n, c, y] = g[n, c] / S   (a broadcast)
def _global_avg_p_bwd(spatial, _, g):
    t = g / jnp.asarray(math.prod(spatial), g.dtype)
    return (lax.broadcast_in_dim(t, (*g.shape, *spatial), (0, 1)),)


_global_avg_p.defvjp(_global_avg_p_fwd, _global_avg_p_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _global_max_p(x: jax.Array, spatial: tuple[int, ...]) -> jax.Array:
    return jnp.max(x.reshape(*x.shape[:2], -1), axis=-1)


def _global_max_p_fwd(x, spatial):
    flat = x.reshape(*x.shape[:2], -1)
    return jnp.max(flat, axis=-1), jnp.argmax(flat, axis=-1)


# Global-max backward:  y[n, c] = max_y x[n, c, y]
#   dx[n, c, y] = g[n, c] * [y == first argmax of x[n, c] in row-major order]
# (flatten the spatial axes, one-hot of jnp.argmax times the broadcast g; no scatter).
def _global_max_p_bwd(spatial, idx, g):
    flat_shape = (*g.shape, math.prod(spatial))
    onehot = lax.broadcasted_iota(idx.dtype, flat_shape, 2) == idx[..., None]
    dx = jnp.where(onehot, g[..., None], jnp.zeros((), g.dtype))
    return (dx.reshape(*g.shape, *spatial),)


_global_max_p.defvjp(_global_max_p_fwd, _global_max_p_bwd)


def global_avg_pool(x: jax.Array, *, vjp: str = "custom") -> jax.Array:
    """Mean over all spatial positions: ``(N, C, *spatial) -> (N, C)``.

    Args:
      x: ``(N, C, *spatial)`` with 1 to 3 spatial dims.
      vjp: ``"custom"`` (default) or ``"autodiff"``.

    Returns:
      ``(N, C)``.

    >>> import jax.numpy as jnp
    >>> global_avg_pool(jnp.arange(8.0).reshape(1, 2, 2, 2))
    Array([[1.5, 5.5]], dtype=float32)
    """
    x, _ = _check_x(x, vjp)
    with jax.named_scope("fconv.global_avg_pool"):
        if vjp == "custom":
            return _global_avg_p(x, tuple(x.shape[2:]))
        return jnp.mean(x, axis=tuple(range(2, x.ndim)))


def global_max_pool(x: jax.Array, *, vjp: str = "custom") -> jax.Array:
    """Maximum over all spatial positions: ``(N, C, *spatial) -> (N, C)``.

    The gradient goes to the first maximum in row-major order (ties get nothing twice).

    Args:
      x: ``(N, C, *spatial)`` with 1 to 3 spatial dims.
      vjp: ``"custom"`` (default) or ``"autodiff"``.

    Returns:
      ``(N, C)``.

    >>> import jax.numpy as jnp
    >>> global_max_pool(jnp.arange(8.0).reshape(1, 2, 2, 2))
    Array([[3., 7.]], dtype=float32)
    """
    x, _ = _check_x(x, vjp)
    with jax.named_scope("fconv.global_max_pool"):
        if vjp == "custom":
            return _global_max_p(x, tuple(x.shape[2:]))
        return _take_first_max(x.reshape(*x.shape[:2], -1), 2)


# ---------------------------------------------------------------------------------------------
# Adaptive pooling.
# ---------------------------------------------------------------------------------------------


class AdaptiveGeometry(NamedTuple):
    """Static description of an adaptive pool: input and output sizes per spatial dim."""

    in_spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]

    @property
    def bins(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        """Per dim, bin i spans [floor(i N / M), ceil((i + 1) N / M)) (PyTorch's rule)."""
        return tuple(
            tuple(((i * n) // m, -(-((i + 1) * n) // m)) for i in range(m))
            for n, m in zip(self.in_spatial, self.out_spatial)
        )


def _avg_matrix(n: int, bins: Sequence[tuple[int, int]]) -> np.ndarray:
    """The (M, N) averaging matrix A: A[i, j] = 1 / (e_i - s_i) for s_i <= j < e_i."""
    a = np.zeros((len(bins), n))
    for i, (s, e) in enumerate(bins):
        a[i, s:e] = 1.0 / (e - s)
    return a


def _along(x: jax.Array, a: np.ndarray, axis: int) -> jax.Array:
    """Contracts ``x``'s ``axis`` with ``a``'s columns: ``[.., j, ..][i, j] -> [.., i, ..]``."""
    y = lax.dot_general(x, jnp.asarray(a, x.dtype), (((axis,), (1,)), ((), ())), precision=_HIGHEST)
    return jnp.moveaxis(y, -1, axis)


def _adaptive_avg_forward(x: jax.Array, geo: AdaptiveGeometry) -> jax.Array:
    for i, (n, bins) in enumerate(zip(geo.in_spatial, geo.bins)):
        x = _along(x, _avg_matrix(n, bins), 2 + i)
    return x


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _adaptive_avg_p(x: jax.Array, geo: AdaptiveGeometry) -> jax.Array:
    return _adaptive_avg_forward(x, geo)


def _adaptive_avg_p_fwd(x, geo):
    return _adaptive_avg_forward(x, geo), None


# Adaptive-average backward. Per spatial dim the forward is a linear map y = A x along that axis
# with the static (M, N) matrix A[i, j] = 1 / |bin i| on bin i (bins may overlap when M does not
# divide N); the dims are separable, y = (A_1 ⊗ ... ⊗ A_n) x, so
#   dx = (A_1ᵀ ⊗ ... ⊗ A_nᵀ) g:   per axis  [.., i, ..][i, j] -> [.., j, ..]
# i.e. g[bin] / |bin| spread over the bin, overlaps summed.
def _adaptive_avg_p_bwd(geo, _, g):
    for i, (n, bins) in enumerate(zip(geo.in_spatial, geo.bins)):
        g = _along(g, _avg_matrix(n, bins).T, 2 + i)
    return (g,)


_adaptive_avg_p.defvjp(_adaptive_avg_p_fwd, _adaptive_avg_p_bwd)


def _max_along(x: jax.Array, bins: Sequence[tuple[int, int]], axis: int) -> jax.Array:
    parts = [
        jnp.max(lax.slice_in_dim(x, s, e, axis=axis), axis=axis, keepdims=True) for s, e in bins
    ]
    return lax.concatenate(parts, axis)


def _adaptive_max_stages(x: jax.Array, geo: AdaptiveGeometry) -> list[jax.Array]:
    """The separable forward, last spatial axis first: [x, z_n, ..., z_1 = y]."""
    zs = [x]
    for i in reversed(range(len(geo.in_spatial))):
        zs.append(_max_along(zs[-1], geo.bins[i], 2 + i))
    return zs


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _adaptive_max_p(x: jax.Array, geo: AdaptiveGeometry) -> jax.Array:
    return _adaptive_max_stages(x, geo)[-1]


def _adaptive_max_p_fwd(x, geo):
    zs = _adaptive_max_stages(x, geo)
    return zs[-1], zs[:-1]


# Adaptive-max backward. The forward is separable: the max over a box of bins is the max over the
# last axis' bin, then over the previous axis' bin, ... (stages z_n, ..., z_1). Per stage along an
# axis, with z its input and g the cotangent of its output:
#   dz[.., j, ..] = sum_i g[.., i, ..] * [j = s_i + first argmax of z[.., s_i:e_i, ..]]
# computed per bin as a one-hot mask times g, put in place with lax.pad (s_i, N - e_i) and summed
# (bins may overlap). Going back from the first axis to the last, the routing picks the first
# row containing the box maximum and, in it, the first column: the first maximum in row-major
# order, the same tie rule as max_pool.
def _adaptive_max_p_bwd(geo, zs, g):
    n = len(geo.in_spatial)
    for stage, i in enumerate(range(n)):
        z = zs[n - 1 - stage]
        axis = 2 + i
        dz = None
        for b, (s, e) in enumerate(geo.bins[i]):
            onehot = _first_argmax_onehot(lax.slice_in_dim(z, s, e, axis=axis), axis)
            gb = lax.slice_in_dim(g, b, b + 1, axis=axis)
            t = jnp.where(onehot, gb, jnp.zeros((), g.dtype))
            pads = [(0, 0, 0)] * z.ndim
            pads[axis] = (s, z.shape[axis] - e, 0)
            t = lax.pad(t, jnp.zeros((), g.dtype), pads)
            dz = t if dz is None else dz + t
        g = dz
    return (g.astype(zs[0].dtype),)


_adaptive_max_p.defvjp(_adaptive_max_p_fwd, _adaptive_max_p_bwd)


def _adaptive_reference(x: jax.Array, geo: AdaptiveGeometry, mode: str) -> jax.Array:
    """Autodiff twin: one region per output cell, flattened row-major, mean or first-max gather."""
    cells = []
    for box in itertools.product(*geo.bins):
        region = x[(slice(None), slice(None), *(slice(s, e) for s, e in box))]
        flat = region.reshape(*x.shape[:2], -1)
        cells.append(jnp.mean(flat, axis=-1) if mode == "avg" else _take_first_max(flat, 2))
    return jnp.stack(cells, axis=-1).reshape(*x.shape[:2], *geo.out_spatial)


def _adaptive_geometry(x: jax.Array, n: int, output_size: Any) -> AdaptiveGeometry:
    out = _canon.ntuple(output_size, n, "output_size")
    return AdaptiveGeometry(tuple(x.shape[2:]), out)


def adaptive_avg_pool(
    x: jax.Array, output_size: int | Sequence[int], *, vjp: str = "custom"
) -> jax.Array:
    """Average pooling to a fixed output size (PyTorch ``AdaptiveAvgPoolNd`` semantics).

    Along a dimension of input size N and output size M, output i averages the input cells
    ``floor(i N / M) <= j < ceil((i + 1) N / M)``; bins overlap when M does not divide N, and
    M > N repeats cells.

    Args:
      x: ``(N, C, *spatial)`` with 1 to 3 spatial dims.
      output_size: M, an int or one per spatial dim (``>= 1``).
      vjp: ``"custom"`` (default) or ``"autodiff"``.

    Returns:
      ``(N, C, *output_size)``.

    Raises:
      ValueError: ``output_size`` entries < 1 or the wrong number of them.

    >>> import jax.numpy as jnp
    >>> adaptive_avg_pool(jnp.arange(5.0).reshape(1, 1, 5), 2)[0, 0]
    Array([1., 3.], dtype=float32)
    """
    x, n = _check_x(x, vjp)
    geo = _adaptive_geometry(x, n, output_size)
    with jax.named_scope("fconv.adaptive_avg_pool"):
        if vjp == "custom":
            return _adaptive_avg_p(x, geo)
        return _adaptive_reference(x, geo, "avg")


def adaptive_max_pool(
    x: jax.Array, output_size: int | Sequence[int], *, vjp: str = "custom"
) -> jax.Array:
    """Max pooling to a fixed output size (PyTorch ``AdaptiveMaxPoolNd`` semantics).

    Bins as for ``adaptive_avg_pool``. The gradient of each output goes to the first maximum of
    its bin in row-major order; overlapping bins add up.

    Args:
      x: ``(N, C, *spatial)`` with 1 to 3 spatial dims.
      output_size: M, an int or one per spatial dim (``>= 1``).
      vjp: ``"custom"`` (default) or ``"autodiff"``.

    Returns:
      ``(N, C, *output_size)``.

    Raises:
      ValueError: ``output_size`` entries < 1 or the wrong number of them.

    >>> import jax.numpy as jnp
    >>> adaptive_max_pool(jnp.arange(5.0).reshape(1, 1, 5), 2)[0, 0]
    Array([2., 4.], dtype=float32)
    """
    x, n = _check_x(x, vjp)
    geo = _adaptive_geometry(x, n, output_size)
    with jax.named_scope("fconv.adaptive_max_pool"):
        if vjp == "custom":
            return _adaptive_max_p(x, geo)
        return _adaptive_reference(x, geo, "max")


def spatial_pyramid_pool(
    x: jax.Array,
    levels: Sequence[int] = (1, 2, 4),
    mode: str = "max",
    *,
    vjp: str = "custom",
) -> jax.Array:
    """Spatial pyramid pooling (He et al., SPP-net): a fixed-length vector from any input size.

    For each level l, ``adaptive_{max,avg}_pool(x, l)`` (l bins per spatial dim) is flattened to
    ``(N, C l^n)`` (channel-major: all bins of channel 0 first); the levels are concatenated in
    the given order. The gradient flows through the adaptive pools' hand-written rules (the
    reshape and concatenation are linear bookkeeping left to JAX).

    Args:
      x: ``(N, C, *spatial)`` with 1 to 3 spatial dims; any spatial size (smaller than a level
        repeats cells, as in ``adaptive_max_pool``).
      levels: positive ints, the bins per dim at each level. Default ``(1, 2, 4)``.
      mode: ``"max"`` (default) or ``"avg"``.
      vjp: ``"custom"`` (default) or ``"autodiff"``.

    Returns:
      ``(N, C * sum(l^n for l in levels))``.

    Raises:
      ValueError: unknown ``mode``, empty ``levels`` or a level < 1.

    >>> import jax.numpy as jnp
    >>> spatial_pyramid_pool(jnp.ones((2, 3, 13, 9))).shape
    (2, 63)
    """
    if mode not in ("max", "avg"):
        raise ValueError(f"`mode` must be 'max' or 'avg', got {mode!r}.")
    if isinstance(levels, (int, np.integer)) or not isinstance(levels, Sequence) or not levels:
        raise ValueError(f"`levels` must be a non-empty sequence of ints >= 1, got {levels!r}.")
    levels = _canon.ntuple(levels, len(levels), "levels")
    x, n = _check_x(x, vjp)
    pool = adaptive_max_pool if mode == "max" else adaptive_avg_pool
    with jax.named_scope("fconv.spatial_pyramid_pool"):
        parts = [pool(x, (lv,) * n, vjp=vjp).reshape(x.shape[0], -1) for lv in levels]
        return jnp.concatenate(parts, axis=1)


# ---------------------------------------------------------------------------------------------
# ROI max pooling.
# ---------------------------------------------------------------------------------------------


class RoiGeometry(NamedTuple):
    """Static description of ROI pooling: input batch and spatial size, bins, scale."""

    batch: int
    in_spatial: tuple[int, int]
    output_size: tuple[int, int]
    spatial_scale: float


def _round_half_away(v: jax.Array) -> jax.Array:
    """C's ``round`` (half away from zero), as torchvision uses; jnp.round rounds half to even."""
    return jnp.sign(v) * jnp.floor(jnp.abs(v) + 0.5)


def _roi_masks(boxes: jax.Array, geo: RoiGeometry):
    """Bin membership masks ``(K, PH, H)``, ``(K, PW, W)`` and the empty-bin mask ``(K, PH, PW)``.

    torchvision ``roi_pool``: corners rounded (half away from zero) after scaling; ROI size
    ``max(end - start + 1, 1)``; bin b spans ``[floor(b size / P), ceil((b + 1) size / P))``
    offset by the ROI start and clipped to the image.
    """
    scale = jnp.asarray(geo.spatial_scale, boxes.dtype)
    starts_ends = [_round_half_away(boxes[:, i] * scale) for i in range(1, 5)]
    x1, y1, x2, y2 = starts_ends
    one = jnp.ones((), boxes.dtype)
    spans = []
    for start, end, pooled, size in (
        (y1, y2, geo.output_size[0], geo.in_spatial[0]),
        (x1, x2, geo.output_size[1], geo.in_spatial[1]),
    ):
        length = jnp.maximum(end - start + 1, one)
        bin_size = length / pooled
        b = jnp.arange(pooled, dtype=boxes.dtype)[None, :]
        lo = jnp.clip(jnp.floor(b * bin_size[:, None]) + start[:, None], 0, size)
        hi = jnp.clip(jnp.ceil((b + 1) * bin_size[:, None]) + start[:, None], 0, size)
        pos = jnp.arange(size, dtype=boxes.dtype)[None, None, :]
        mask = (pos >= lo[..., None]) & (pos < hi[..., None])
        spans.append((mask, hi <= lo))
    (mask_h, empty_h), (mask_w, empty_w) = spans
    empty = empty_h[:, :, None] | empty_w[:, None, :]
    return mask_h, mask_w, empty


def _batch_index(boxes: jax.Array) -> jax.Array:
    return boxes[:, 0].astype(jnp.int32)


def _take_images(x: jax.Array, boxes: jax.Array) -> jax.Array:
    """x[b_k] for every ROI, ``(K, C, H, W)``; an index outside [0, N) (negative included, which
    jnp.take would wrap) reads NaN, matching the backward rule that gives it no gradient."""
    b = _batch_index(boxes)
    b = jnp.where(b < 0, x.shape[0], b)
    return jnp.take(x, b, axis=0, mode="fill", fill_value=jnp.nan)


def _roi_stages(x: jax.Array, boxes: jax.Array, geo: RoiGeometry):
    """Separable masked max: over each bin's columns, then over its rows (first max kept)."""
    mask_h, mask_w, empty = _roi_masks(boxes, geo)
    xs = _take_images(x, boxes)  # (K, C, H, W)
    neg = jnp.asarray(-jnp.inf, x.dtype)
    # stage 1, over W: (K, C, H, PW, W) -> r (K, C, H, PW)
    v1 = jnp.where(mask_w[:, None, None, :, :], xs[:, :, :, None, :], neg)
    r, aw = jnp.max(v1, axis=-1), jnp.argmax(v1, axis=-1)
    # stage 2, over H: (K, C, PH, H, PW) -> (K, C, PH, PW)
    v2 = jnp.where(mask_h[:, None, :, :, None], r[:, :, None, :, :], neg)
    y, ah = jnp.max(v2, axis=3), jnp.argmax(v2, axis=3)
    y = jnp.where(empty[:, None], jnp.zeros((), x.dtype), y)
    return y, (aw, ah, empty)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _roi_p(x: jax.Array, boxes: jax.Array, geo: RoiGeometry) -> jax.Array:
    return _roi_stages(x, boxes, geo)[0]


def _roi_p_fwd(x, boxes, geo):
    y, (aw, ah, empty) = _roi_stages(x, boxes, geo)
    return y, (aw, ah, empty, boxes)


# ROI max-pool backward. Forward per ROI k and bin (i, j), on the image b_k = boxes[k, 0]:
#   r[k, c, h, j] = max_{w in cols(k, j)} x[b_k, c, h, w]          (first argmax aw)
#   y[k, c, i, j] = max_{h in rows(k, i)} r[k, c, h, j]            (first argmax ah)
# (0 for an empty bin). Transposing stage by stage with one-hot masks:
#   dr[k, c, h, j]     = sum_i g[k, c, i, j] [h == ah[k, c, i, j]]  (g zeroed on empty bins)
#   dxs[k, c, h, w]    = sum_j dr[k, c, h, j] [w == aw[k, c, h, j]]
#   dx[n, c, h, w]     = sum_k [b_k == n] dxs[k, c, h, w]     [k, n][k, c, h, w] -> [n, c, h, w]
# The routing is the first maximum of the bin in row-major order (first row holding the max, then
# its first column), torchvision's strict ">" scan. The batch accumulation is a dot with a one-hot
# (K, N) matrix instead of a scatter. The box coordinates are quantised (round/floor/ceil): their
# cotangent is zero. Cost: O(K C H W max(PH, PW)) memory for the masked stages, fine for modest
# K and feature maps, wasteful for hundreds of ROIs on large maps.
def _roi_p_bwd(geo, res, g):
    aw, ah, empty, boxes = res
    ph = geo.output_size[0]
    h, w = geo.in_spatial
    zero = jnp.zeros((), g.dtype)
    g = jnp.where(empty[:, None], zero, g)
    onehot_h = ah[:, :, :, None, :] == lax.broadcasted_iota(ah.dtype, (1, 1, ph, h, 1), 3)
    dr = jnp.sum(jnp.where(onehot_h, g[:, :, :, None, :], zero), axis=2)  # (K, C, H, PW)
    onehot_w = aw[..., None] == lax.broadcasted_iota(aw.dtype, (1, 1, 1, 1, w), 4)
    dxs = jnp.sum(jnp.where(onehot_w, dr[..., None], zero), axis=3)  # (K, C, H, W)
    onehot_b = (_batch_index(boxes)[:, None] == jnp.arange(geo.batch)[None, :]).astype(g.dtype)
    dx = lax.dot_general(onehot_b, dxs, (((0,), (0,)), ((), ())), precision=_HIGHEST)
    return dx, jnp.zeros_like(boxes)


_roi_p.defvjp(_roi_p_fwd, _roi_p_bwd)


def _roi_reference(x: jax.Array, boxes: jax.Array, geo: RoiGeometry) -> jax.Array:
    """Autodiff twin: the full (K, C, PH, PW, H W) masked region, gathered at its first max."""
    mask_h, mask_w, empty = _roi_masks(boxes, geo)
    xs = _take_images(x, boxes)
    mask = mask_h[:, :, None, :, None] & mask_w[:, None, :, None, :]  # (K, PH, PW, H, W)
    v = jnp.where(mask[:, None], xs[:, :, None, None, :, :], jnp.asarray(-jnp.inf, x.dtype))
    y = _take_first_max(v.reshape(*v.shape[:4], -1), 4)
    return jnp.where(empty[:, None], jnp.zeros((), x.dtype), y)


def roi_max_pool(
    x: jax.Array,
    boxes: jax.Array,
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    *,
    vjp: str = "custom",
) -> jax.Array:
    """ROI max pooling (Fast R-CNN), with torchvision ``roi_pool``'s quantisation.

    Each box is scaled by ``spatial_scale``, its corners rounded (half away from zero), and the
    ROI of ``(x2 - x1 + 1) x (y2 - y1 + 1)`` cells (at least 1) is split into
    ``output_size`` bins: bin i covers rows ``[floor(i h / PH), ceil((i + 1) h / PH))`` from the
    ROI's top, clipped to the image; each output is the bin's maximum, 0 for an empty bin. The
    boxes may be traced (computed by the network): bins are masks, not slices.

    Cost: the masked max materialises ``(K, C, H, max(PH, PW), W)`` values, so memory grows as
    K C H W max(PH, PW) — fine for tens of ROIs on small feature maps.

    Args:
      x: feature map ``(N, C, H, W)``.
      boxes: ``(K, 5)`` floating, rows ``(batch_index, x1, y1, x2, y2)`` in input coordinates
        (before ``spatial_scale``); batch indices should lie in ``[0, N)``: they may be traced, so
        they are not checked; an index outside (negative included) gives NaN outputs and no
        gradient.
      output_size: ``(PH, PW)`` or an int for both.
      spatial_scale: factor from box coordinates to ``x``'s cells (e.g. 1/16). Default 1.
      vjp: ``"custom"`` (default) or ``"autodiff"``. The gradient with respect to ``x`` goes to
        the first maximum of each bin in row-major order; ``boxes`` gets a zero cotangent.

    Returns:
      ``(K, C, PH, PW)``.

    Raises:
      ValueError: ``x`` not 4-D, ``boxes`` not ``(K, 5)``, bad ``output_size`` or
        ``spatial_scale``.
      TypeError: ``spatial_scale`` not a number; integer ``x`` or ``boxes`` (``DTypeError``).

    >>> import jax.numpy as jnp
    >>> x = jnp.arange(16.0).reshape(1, 1, 4, 4)
    >>> roi_max_pool(x, jnp.array([[0.0, 0.0, 0.0, 3.0, 3.0]]), 2)[0, 0]
    Array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    """
    x, _ = _check_x(x, vjp, ranks=(2,))
    boxes = _canon.check_float_array(boxes, "boxes")
    if boxes.ndim != 2 or boxes.shape[1] != 5:
        raise ValueError(
            "`boxes` must have shape (K, 5) with rows (batch_index, x1, y1, x2, y2), got "
            f"{tuple(boxes.shape)}."
        )
    output_size = _canon.ntuple(output_size, 2, "output_size")
    if isinstance(spatial_scale, bool) or not isinstance(
        spatial_scale, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"`spatial_scale` must be a number, got {spatial_scale!r}.")
    if not (math.isfinite(spatial_scale) and spatial_scale > 0):
        raise ValueError(f"`spatial_scale` must be a positive number, got {spatial_scale!r}.")
    geo = RoiGeometry(x.shape[0], tuple(x.shape[2:]), output_size, float(spatial_scale))
    with jax.named_scope("fconv.roi_max_pool"):
        if vjp == "custom":
            return _roi_p(x, boxes, geo)
        return _roi_reference(x, boxes, geo)
