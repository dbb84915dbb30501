"""Unshared and tiled convolution, and convolution by serialisation (im2col), hand-written VJPs.

Three relatives of ``fconv.ops.conv`` from the lectures (Goodfellow ch. 9, "Kinds of
connectivity"; and the "serialisation" way of computing a convolution as one large dot product):

* ``locally_connected``  a separate kernel at every output position (no parameter sharing);
* ``tiled_conv``         kernels cycled with period t across output positions (t = 1 is ``conv``,
                         t = the output size is ``locally_connected``);
* ``conv_im2col``        ``conv`` computed as patches (N, C K, M) times a weight matrix (O, C K).

Notation per spatial dimension as in ``fconv.ops.conv``: input N, kernel K, dilation d,
K' = d (K - 1) + 1, stride s, padding (lo, hi), output M = floor((N + lo + hi - K') / s) + 1.
P = K_1 ... K_n is the number of kernel offsets and J = C P the length of one patch.

All three share one patch extraction ("im2col"): for each kernel offset k (row-major order) the
strided slice ``x_pad[..., k d + s m]`` of the zero-padded input, stacked to ``(N, C, P, *M)``.
Its transpose ("col2im") places each offset's slice back with a strided ``lax.pad`` (interior
padding s - 1, edge padding that also crops the zero padding) and sums: no scatter anywhere.

Arrays are channels-first ``(N, C, *spatial)``. Forward-mode differentiation (``jax.jvp``,
``jax.jacfwd``) is not available through a ``custom_vjp``; use ``vjp="autodiff"`` for that.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from fconv.ops import _canon
from fconv.ops._canon import Padding
from fconv.ops._patches import col2im as _col2im
from fconv.ops._patches import extract_patches as _extract_patches
from fconv.ops.conv import (
    ConvGeometry,
    _add_bias,
    _check_groups,
    _check_in_channels,
    _check_kernel,
    _geometry,
    _promote,
)

__all__ = ["LocalGeometry", "conv_im2col", "locally_connected", "tiled_conv"]


class LocalGeometry(NamedTuple):
    """Static description of a tiled / locally connected convolution (hashable).

    Attributes:
      conv: the underlying ``ConvGeometry`` (groups is always 1).
      tile: the kernel period t per spatial dimension; ``out_spatial`` for ``locally_connected``.
    """

    conv: ConvGeometry
    tile: tuple[int, ...]

    @property
    def blocks(self) -> tuple[int, ...]:
        """Q = ceil(M / t): how many periods cover the output in each dimension."""
        return tuple(-(-m // t) for m, t in zip(self.conv.out_spatial, self.tile))


# ---------------------------------------------------------------------------------------------
# Tiled / locally connected convolution: one core, written on period blocks.
# ---------------------------------------------------------------------------------------------
#
# Output position m = q t + r (per dimension, 0 <= r < t) uses kernel r. Padding the output axis
# M up to Q t (Q = ceil(M / t)) and reshaping it to (Q, t) turns the kernel index into an axis of
# its own, so the op is one batched matrix product with the t-axes as batch dimensions:
#   y[n, o, q, r] = sum_j patches[n, j, q, r] w[r, o, j]     ([r, o, j][n, j, q, r] -> [n, o, q, r])
# With t = M (locally connected) Q = 1 and it is an einsum per output position; with t = 1 it is
# the ordinary convolution by serialisation.


def _to_blocks(a: jax.Array, geo: LocalGeometry) -> jax.Array:
    """(A, B, *M) -> (A, B, Q_1, t_1, ..., Q_n, t_n), zero-padding M up to Q t."""
    m = geo.conv.out_spatial
    pads = [(0, 0, 0), (0, 0, 0)]
    pads += [(0, q * t - mi, 0) for mi, q, t in zip(m, geo.blocks, geo.tile)]
    a = lax.pad(a, jnp.zeros((), a.dtype), pads)
    split = [*a.shape[:2]]
    for q, t in zip(geo.blocks, geo.tile):
        split += [q, t]
    return a.reshape(split)


def _from_blocks(a: jax.Array, geo: LocalGeometry) -> jax.Array:
    """(A, B, Q_1, t_1, ...) -> (A, B, *M): the transpose of ``_to_blocks`` (crops the pad)."""
    full = [q * t for q, t in zip(geo.blocks, geo.tile)]
    a = a.reshape(*a.shape[:2], *full)
    return lax.slice(a, (0,) * a.ndim, (*a.shape[:2], *geo.conv.out_spatial))


def _block_axes(n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Positions of the Q axes and of the t axes in a (A, B, Q_1, t_1, ...) block array."""
    return tuple(2 + 2 * i for i in range(n)), tuple(3 + 2 * i for i in range(n))


def _with_backward(forward, backward):
    """``forward(x, w, geo)`` as a ``custom_vjp`` whose rule is ``backward(x, w, g, geo)``.

    The residuals are the inputs ``(x, w)``; ``geo`` is static (``nondiff_argnums``).
    """

    @functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
    def op(x: jax.Array, w: jax.Array, geo: Any) -> jax.Array:
        return forward(x, w, geo)

    op.defvjp(
        lambda x, w, geo: (forward(x, w, geo), (x, w)),
        lambda geo, res, g: backward(*res, g, geo),
    )
    return op


def _tiled_forward(x: jax.Array, w: jax.Array, geo: LocalGeometry) -> jax.Array:
    n = len(geo.tile)
    nb = x.shape[0]
    o = w.shape[n]
    p = _extract_patches(x, geo.conv)
    p6 = _to_blocks(p.reshape(nb, -1, *geo.conv.out_spatial), geo)
    wt = w.reshape(*geo.tile, o, -1)
    _, t_axes = _block_axes(n)
    y = lax.dot_general(
        wt, p6, (((n + 1,), (1,)), (tuple(range(n)), t_axes)), precision=geo.conv.precision
    )
    # y: (*t, O, N, *Q) -> (N, O, Q_1, t_1, ...)
    perm = [n + 1, n]
    for i in range(n):
        perm += [n + 2 + i, i]
    return _from_blocks(jnp.transpose(y, perm), geo)


# Backward of the tiled / locally connected convolution, with g and the patches in blocks:
#   dw[r, o, j] = sum_{n, q} g[n, o, q, r] patches[n, j, q, r]    [n,o,q,r][n,j,q,r] -> [r,o,j]
#   dp[n, j, q, r] = sum_o g[n, o, q, r] w[r, o, j]               [n,o,q,r][r,o,j] -> [n,j,q,r]
#   dx = col2im(dp)   (strided lax.pad per kernel offset, summed)
# The rows added by _to_blocks hold zeros in g, so they add nothing to dw; dp's are cropped.
def _tiled_backward(x: jax.Array, w: jax.Array, g: jax.Array, geo: LocalGeometry):
    n = len(geo.tile)
    nb, c = x.shape[:2]
    o = w.shape[n]
    p6 = _to_blocks(_extract_patches(x, geo.conv).reshape(nb, -1, *geo.conv.out_spatial), geo)
    g6 = _to_blocks(g, geo)
    wt = w.reshape(*geo.tile, o, -1)
    q_axes, t_axes = _block_axes(n)
    prec = geo.conv.precision
    dw = lax.dot_general(g6, p6, (((0, *q_axes), (0, *q_axes)), (t_axes, t_axes)), precision=prec)
    dp = lax.dot_general(g6, wt, (((1,), (n,)), (t_axes, tuple(range(n)))), precision=prec)
    # dp: (*t, N, *Q, J) -> (N, J, Q_1, t_1, ...)
    perm = [n, 2 * n + 1]
    for i in range(n):
        perm += [n + 1 + i, i]
    dp = _from_blocks(jnp.transpose(dp, perm), geo)
    dp = dp.reshape(nb, c, -1, *geo.conv.out_spatial)
    dx = _col2im(dp, geo.conv)
    dw = dw.reshape(w.shape)
    assert dx.shape == x.shape, (dx.shape, x.shape)  # internal invariant, not user input
    return dx.astype(x.dtype), dw.astype(w.dtype)


_tiled_p = _with_backward(_tiled_forward, _tiled_backward)


# ---------------------------------------------------------------------------------------------
# Convolution by serialisation (im2col).
# ---------------------------------------------------------------------------------------------


# Forward, with the channels split into G groups (C = G C_g, O = G O_g, J = C_g P):
#   y[n, g, o, m] = sum_j W[g, o, j] patches[n, g, j, m]     ([g, o, j][n, g, j, m] -> [n, g, o, m])
# where W is the kernel (O, C_g, *K) read as a matrix (G, O_g, C_g P).
def _im2col_forward(x: jax.Array, w: jax.Array, geo: ConvGeometry) -> jax.Array:
    nb = x.shape[0]
    o, gr = w.shape[0], geo.groups
    p = _extract_patches(x, geo).reshape(nb, gr, -1, math.prod(geo.out_spatial))
    wm = w.reshape(gr, o // gr, -1)
    y = lax.dot_general(wm, p, (((2,), (2,)), ((0,), (1,))), precision=geo.precision)
    # y: (G, O_g, N, M) -> (N, O, *M)
    return jnp.transpose(y, (2, 0, 1, 3)).reshape(nb, o, *geo.out_spatial)


# Backward of conv_im2col (the serialised h and g of the lectures):
#   dW = g · patchesᵀ:  dW[g, o, j] = sum_{n, m} gy[n, g, o, m] patches[n, g, j, m]
#                       ([n, g, o, m][n, g, j, m] -> [g, o, j])
#   dpatches = Wᵀ · g:  dp[n, g, j, m] = sum_o gy[n, g, o, m] W[g, o, j]
#                       ([n, g, o, m][g, o, j] -> [n, g, j, m])
#   dx = col2im(dp): each kernel offset's slice placed back with a strided lax.pad, summed.
def _im2col_backward(x: jax.Array, w: jax.Array, g: jax.Array, geo: ConvGeometry):
    nb, c = x.shape[:2]
    o, gr = w.shape[0], geo.groups
    mflat = math.prod(geo.out_spatial)
    p = _extract_patches(x, geo).reshape(nb, gr, -1, mflat)
    gy = g.reshape(nb, gr, o // gr, mflat)
    wm = w.reshape(gr, o // gr, -1)
    dw = lax.dot_general(gy, p, (((0, 3), (0, 3)), ((1,), (1,))), precision=geo.precision)
    dp = lax.dot_general(gy, wm, (((2,), (1,)), ((1,), (0,))), precision=geo.precision)
    # dp: (G, N, M, J) -> (N, G, J, M) -> (N, C, P, *M)
    dp = jnp.transpose(dp, (1, 0, 3, 2)).reshape(nb, c, -1, *geo.out_spatial)
    dx = _col2im(dp, geo)
    assert dx.shape == x.shape, (dx.shape, x.shape)  # internal invariant, not user input
    return dx.astype(x.dtype), dw.reshape(w.shape).astype(w.dtype)


_im2col_p = _with_backward(_im2col_forward, _im2col_backward)


# ---------------------------------------------------------------------------------------------
# Public functions.
# ---------------------------------------------------------------------------------------------


def _check_inputs(x: Any, w: Any, vjp: str) -> tuple[jax.Array, jax.Array, int]:
    _canon.check_vjp_mode(vjp)
    x = _canon.check_float_array(x, "x")
    w = _canon.check_float_array(w, "w")
    n = _canon.spatial_rank(x, "x")
    x, w = _promote(x, w)
    return x, w, n


def _unshared_geometry(
    x: jax.Array,
    w: jax.Array,
    n: int,
    stride: Any,
    padding: Padding,
    dilation: Any,
    precision: Any,
    lead: str,
) -> ConvGeometry:
    """Checks a ``(*lead, O, C, *kernel)`` kernel against ``x`` and returns the geometry."""
    if w.ndim != 2 * n + 2:
        raise ValueError(
            f"`w` must be {2 * n + 2}-D ({lead}, out_channels, in_channels, *kernel) for a "
            f"{n}-D input, got shape {tuple(w.shape)}."
        )
    if 0 in w.shape:
        raise ValueError(
            f"`w` must have every size >= 1 ({lead}, out_channels, in_channels, *kernel), got "
            f"shape {tuple(w.shape)}."
        )
    if w.shape[n + 1] != x.shape[1]:
        raise ValueError(
            f"channel mismatch: `x` has {x.shape[1]} channels but `w` {tuple(w.shape)} expects "
            f"w.shape[{n + 1}] = {w.shape[n + 1]}."
        )
    return _geometry(x.shape[2:], w.shape[n + 2 :], stride, padding, dilation, 1, precision)


def _add_bias_unshared(y: jax.Array, bias: Any, geo: ConvGeometry, o: int) -> jax.Array:
    """Bias ``(O,)`` (shared) or ``(*out_spatial, O)`` (one per output position)."""
    if bias is None:
        return y
    bias = _canon.check_float_array(bias, "bias")
    if bias.shape == (*geo.out_spatial, o):
        return y + jnp.moveaxis(bias.astype(y.dtype), -1, 0)[None]
    if bias.shape == (o,):
        return _add_bias(y, bias, o)
    raise ValueError(
        f"`bias` must have shape ({o},) or {(*geo.out_spatial, o)} (*out_spatial, out_channels), "
        f"got {tuple(bias.shape)}."
    )


def locally_connected(
    x: jax.Array,
    w: jax.Array,
    bias: jax.Array | None = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    precision: Any = None,
    vjp: str = "custom",
) -> jax.Array:
    """Unshared convolution ("local connection"): a separate kernel at every output position.

    ``y[n, o, m] = sum_{c, k} x_pad[n, c, m s + k d] w[m, o, c, k] (+ bias)``: the windows are
    those of ``conv`` with the same stride/padding/dilation, but nothing is shared across
    positions. Parameters: M_1 ... M_n O C K_1 ... K_n; compute as for ``conv``.

    Args:
      x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
      w: kernels ``(*out_spatial, O, C, *kernel)``: the leading axes index the output position
        (e.g. ``(M_h, M_w, O, C, K_h, K_w)`` in 2-D); ``w[m]`` is an OIHW kernel.
      bias: optional, ``(O,)`` (shared by all positions) or ``(*out_spatial, O)`` (untied).
      stride: an int or one per spatial dim. Default 1.
      padding: as for ``fconv.ops.conv`` (``"VALID"`` default, ``"SAME"`` with the odd pixel on
        the high side, ``"FULL"``, ints or ``(lo, hi)`` pairs); zero padding.
      dilation: kernel dilation, an int or one per spatial dim. Default 1.
      precision: forwarded to ``lax.dot_general``.
      vjp: ``"custom"`` (default, hand-written backward) or ``"autodiff"`` (JAX autodiff).

    Returns:
      ``(N, O, *out_spatial)``.

    Raises:
      ValueError: wrong ranks, channel mismatch, ``w``'s leading axes not the output size,
        window larger than the padded input, bad bias shape.

    >>> import jax.numpy as jnp
    >>> locally_connected(jnp.ones((1, 2, 5, 5)), jnp.ones((3, 3, 4, 2, 3, 3))).shape
    (1, 4, 3, 3)
    """
    x, w, n = _check_inputs(x, w, vjp)
    cgeo = _unshared_geometry(x, w, n, stride, padding, dilation, precision, "*out_spatial")
    if tuple(w.shape[:n]) != cgeo.out_spatial:
        raise ValueError(
            f"`w`'s leading {n} axes must be the output size {cgeo.out_spatial} (one kernel per "
            f"output position), got w.shape = {tuple(w.shape)}."
        )
    geo = LocalGeometry(cgeo, cgeo.out_spatial)
    with jax.named_scope("fconv.locally_connected"):
        y = _tiled_p(x, w, geo) if vjp == "custom" else _tiled_forward(x, w, geo)
        return _add_bias_unshared(y, bias, cgeo, w.shape[n])


def tiled_conv(
    x: jax.Array,
    w: jax.Array,
    bias: jax.Array | None = None,
    *,
    tile: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    precision: Any = None,
    vjp: str = "custom",
) -> jax.Array:
    """Tiled convolution: t kernels per dimension, cycled across the output positions.

    Output position ``m`` uses kernel ``w[m mod t]`` (per dimension), the lectures'
    ``Z[i, j, k] = sum V[l, j+m-1, k+n-1] K[i, l, m, n, j % t + 1, k % t + 1]``. ``tile=1`` is
    ``fconv.ops.conv``; ``tile`` = the output size is ``locally_connected``.

    Args:
      x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
      w: kernels ``(*tile, O, C, *kernel)``; ``w[r]`` is the OIHW kernel of the positions with
        ``m mod t == r``.
      bias: optional ``(O,)``.
      tile: the period t, an int or one per spatial dim; ``1 <= t <= M``.
      stride, padding, dilation, precision, vjp: as for ``locally_connected``.

    Returns:
      ``(N, O, *out_spatial)``.

    Raises:
      ValueError: ``w``'s leading axes not ``tile``, a tile larger than the output, wrong ranks,
        channel mismatch.

    >>> import jax.numpy as jnp
    >>> tiled_conv(jnp.ones((1, 2, 6, 6)), jnp.ones((2, 2, 4, 2, 3, 3)), tile=2).shape
    (1, 4, 4, 4)
    """
    x, w, n = _check_inputs(x, w, vjp)
    tile = _canon.ntuple(tile, n, "tile")
    cgeo = _unshared_geometry(x, w, n, stride, padding, dilation, precision, "*tile")
    if tuple(w.shape[:n]) != tile:
        raise ValueError(
            f"`w`'s leading {n} axes must equal `tile` {tile}, got w.shape = {tuple(w.shape)}."
        )
    if any(t > m for t, m in zip(tile, cgeo.out_spatial)):
        raise ValueError(
            f"`tile` {tile} must not exceed the output size {cgeo.out_spatial} (kernels beyond "
            "it would never be used)."
        )
    geo = LocalGeometry(cgeo, tile)
    with jax.named_scope("fconv.tiled_conv"):
        y = _tiled_p(x, w, geo) if vjp == "custom" else _tiled_forward(x, w, geo)
        return _add_bias(y, bias, w.shape[n])


def conv_im2col(
    x: jax.Array,
    w: jax.Array,
    bias: jax.Array | None = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    precision: Any = None,
    vjp: str = "custom",
) -> jax.Array:
    """``fconv.ops.conv`` computed by serialisation: patches (im2col) times a weight matrix.

    The input is unrolled into patches ``(N, C K_1...K_n, *out)`` (P = K_1...K_n times the input,
    in memory) and multiplied by the kernel read as a ``(O, C / groups * P)`` matrix in one
    ``lax.dot_general``; per group with ``groups > 1``. Same results as ``conv``; the backward
    rule is dW = g patchesᵀ and dx = col2im(Wᵀ g).

    Args:
      x: input ``(N, C, *spatial)``, 1 to 3 spatial dims.
      w: kernel ``(O, C / groups, *kernel)`` (OIHW).
      bias: optional ``(O,)``.
      stride, padding, dilation, groups: as for ``fconv.ops.conv``.
      precision: forwarded to ``lax.dot_general``.
      vjp: ``"custom"`` (default) or ``"autodiff"``.

    Returns:
      ``(N, O, *out_spatial)``.

    Raises:
      ValueError: as for ``fconv.ops.conv``.

    >>> import jax.numpy as jnp
    >>> conv_im2col(jnp.ones((1, 1, 4, 4)), jnp.ones((1, 1, 3, 3)), padding="SAME")[0, 0, 0]
    Array([4., 6., 6., 4.], dtype=float32)
    """
    x, w, n = _check_inputs(x, w, vjp)
    groups = _check_groups(groups)
    _check_kernel(w, n, groups)
    _check_in_channels(x.shape[1], w, groups, "input `x`")
    geo = _geometry(x.shape[2:], w.shape[2:], stride, padding, dilation, groups, precision)
    with jax.named_scope("fconv.conv_im2col"):
        y = _im2col_p(x, w, geo) if vjp == "custom" else _im2col_forward(x, w, geo)
        return _add_bias(y, bias, w.shape[0])
