"""N-d convolution with hand-written backward rules, and its autodiff reference twin.

Three linear maps close under differentiation, each a ``jax.custom_vjp`` whose backward rule is
one of the other two (so ``grad`` of ``grad`` is hand-written all the way down):

* ``conv``             y = x ⋆ w                      (cross-correlation, as in every DL framework)
* ``conv_input_grad``  dx = h(w, g): the "deconvolution" / transposed convolution of the lectures
* ``conv_weight_grad`` dw = g(x, g): correlation of the input with the output gradient

Per spatial dimension we write N for the input size, K for the kernel size, d for the kernel
dilation, K' = d (K - 1) + 1 for the dilated kernel, s for the stride, (lo, hi) for the padding,
M = floor((N + lo + hi - K') / s) + 1 for the output size and r = (N + lo + hi - K') mod s for the
remainder: the input rows at the high end that no window reaches (their gradient is zero).

Layouts: arrays are ``(N, C, *spatial)`` and kernels ``(O, I / groups, *spatial)``
(NCHW / OIHW) unless ``layout="channels_last"``, which takes ``(N, *spatial, C)`` and
``(*spatial, I / groups, O)`` (NHWC / HWIO, what Flax users have). Internally everything is
channels-first; XLA folds the transposes into the convolution's dimension numbers.

Forward-mode differentiation (``jax.jvp``, ``jax.jacfwd``) is not available through a
``custom_vjp`` function; use ``vjp="autodiff"`` for that.
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
from fconv.ops._patches import extract_patches
from fconv.ops._placement import place_back

__all__ = [
    "ConvGeometry",
    "conv",
    "conv_input_grad",
    "conv_transpose",
    "conv_weight_grad",
    "set_strided_input_grad",
]


class ConvGeometry(NamedTuple):
    """Static description of one convolution; hashable, so it can be a ``nondiff_argnum``.

    Attributes:
      in_spatial: input sizes N per spatial dimension.
      kernel_spatial: kernel sizes K per spatial dimension.
      stride: strides s.
      padding: explicit ``(lo, hi)`` pairs.
      dilation: kernel dilations d.
      groups: feature groups G.
      precision: forwarded to ``lax.conv_general_dilated``.
      strided_input_grad: how the input gradient spreads ``g`` by the stride:
        ``"polyphase"``, ``"subpixel"``, ``"interior_pad"`` or ``"lhs_dilation"`` (see
        ``set_strided_input_grad``).
      depthwise_taps: compute a depthwise convolution (``groups == C == O``) and its input
        gradient as a sum over kernel taps of shifted elementwise products (on CPU, where XLA's
        grouped convolution runs at under 1 GFLOP/s), instead of ``lax.conv_general_dilated``.
      in_channel_pad: zero input channels appended before the three maps run (and cropped from
        what they return); 1 for a 2-D, ungrouped convolution with an odd number (> 1) of input
        channels on CPU, where XLA runs those convolutions 2-3x slower than with one more.
      patch_matmul: compute the forward and the weight gradient as matrix products over the
        input's patches (2-D, one input channel, at most 25 kernel taps and 2^18 patch entries
        per example, on CPU).
    """

    in_spatial: tuple[int, ...]
    kernel_spatial: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    groups: int
    precision: Any = None
    strided_input_grad: str = "polyphase"
    depthwise_taps: bool = False
    in_channel_pad: int = 0
    patch_matmul: bool = False

    @property
    def ndim(self) -> int:
        return len(self.in_spatial)

    @property
    def dilated_kernel(self) -> tuple[int, ...]:
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_spatial, self.dilation))

    @property
    def out_spatial(self) -> tuple[int, ...]:
        return tuple(
            _canon.output_size(n, k, s, p)
            for n, k, s, p in zip(self.in_spatial, self.dilated_kernel, self.stride, self.padding)
        )

    @property
    def remainder(self) -> tuple[int, ...]:
        return tuple(
            (n + lo + hi - k) % s
            for n, k, s, (lo, hi) in zip(
                self.in_spatial, self.dilated_kernel, self.stride, self.padding
            )
        )


def _specs(n: int) -> str:
    return _canon.SPATIAL_LETTERS[n]


# ---------------------------------------------------------------------------------------------
# The three linear maps, written once with lax primitives.
# ---------------------------------------------------------------------------------------------


# Forward:  y[n, o, m] = sum_{i, k} x_pad[n, g(o) I/G + i, m s + k d] w[o, i, k]
# (cross-correlation; [n, i, m][o, i, k] -> [n, o, m]), zero padding (lo, hi), stride s.
def _conv_forward(x: jax.Array, w: jax.Array, geo: ConvGeometry) -> jax.Array:
    sp = _specs(geo.ndim)
    return lax.conv_general_dilated(
        x,
        w,
        window_strides=geo.stride,
        padding=geo.padding,
        rhs_dilation=geo.dilation,
        dimension_numbers=("NC" + sp, "OI" + sp, "NC" + sp),
        feature_group_count=geo.groups,
        precision=geo.precision,
    )


def _swap_in_out_per_group(w: jax.Array, groups: int) -> jax.Array:
    """(O, I/G, *K) -> (I, O/G, *K): in/out channels swapped within each group."""
    o, i_g, *k = w.shape
    w = w.reshape(groups, o // groups, i_g, *k)
    return jnp.swapaxes(w, 1, 2).reshape(groups * i_g, o // groups, *k)


def _flip_and_swap_kernel(w: jax.Array, groups: int) -> jax.Array:
    """(O, I/G, *K) -> (I, O/G, *K) flipped in every spatial axis, swapped within each group."""
    return jnp.flip(_swap_in_out_per_group(w, groups), axis=tuple(range(2, w.ndim)))


# Depthwise convolution by kernel taps (groups == C == O, one kernel per channel):
#   y[n, c, m] = sum_k x_pad[n, c, m s + k d] w[c, 0, k]
# one strided lax.slice per tap k, times that tap's per-channel weight, summed: XLA fuses the
# whole sum into one elementwise loop (measured 48x faster than its grouped convolution on a
# 2-core CPU for 3x3 on 64x32x32x32).
def _depthwise_taps_forward(x: jax.Array, w: jax.Array, geo: ConvGeometry) -> jax.Array:
    pads = [(0, 0, 0), (0, 0, 0), *((lo, hi, 0) for lo, hi in geo.padding)]
    x_pad = lax.pad(x, jnp.zeros((), x.dtype), pads)
    bcast = (1, x.shape[1]) + (1,) * geo.ndim
    y = None
    for tap in itertools.product(*(range(k) for k in geo.kernel_spatial)):
        start = [t * d for t, d in zip(tap, geo.dilation)]
        limit = [a + (m - 1) * s + 1 for a, m, s in zip(start, geo.out_spatial, geo.stride)]
        xs = lax.slice(x_pad, (0, 0, *start), (*x.shape[:2], *limit), (1, 1, *geo.stride))
        term = xs * w[(slice(None), 0, *tap)].reshape(bcast)
        y = term if y is None else y + term
    return y


# Its input gradient, tap by tap:  dx[n, c, y] = sum_k g[n, c, m] w[c, 0, k] at y = m s + k d - lo
# each tap's g * w_k placed back with a strided lax.pad (interior s - 1; edge pads align it and
# crop the padding), summed: the transpose of the slices above, again one fused loop.
def _depthwise_taps_input_grad(g: jax.Array, w: jax.Array, geo: ConvGeometry) -> jax.Array:
    bcast = (1, g.shape[1]) + (1,) * geo.ndim
    dx = None
    for tap in itertools.product(*(range(k) for k in geo.kernel_spatial)):
        offset = [t * d for t, d in zip(tap, geo.dilation)]
        term = place_back(g * w[(slice(None), 0, *tap)].reshape(bcast), offset, geo)
        dx = term if dx is None else dx + term
    return dx


# Odd input-channel counts on CPU (geo.in_channel_pad = 1): append one zero channel to x and to
# the kernel's input axis. The extra channel adds x_0 * 0 terms to the forward, and its rows of
# the input and weight gradients are cropped, so all three maps are unchanged; XLA's CPU
# convolutions with C = 3 (an RGB input layer) measured 2-3x slower than with C = 4.
def _pad_channels(a: jax.Array, count: int) -> jax.Array:
    return lax.pad(
        a, jnp.zeros((), a.dtype), [(0, 0, 0), (0, count, 0)] + [(0, 0, 0)] * (a.ndim - 2)
    )


# Small patches on CPU (geo.patch_matmul: one input channel, K_1 K_2 <= 25, at most 2^18 patch
# entries per example; e.g. LeNet's first layer): the convolution as one matrix product over the
# patches P (N, J, M), J = C K_1 K_2,
#   y[n, o, m]  = sum_j P[n, j, m] W[o, j]           ([n, j, m][o, j] -> [n, m, o] -> [n, o, m])
#   dW[o, j]    = sum_{n, m} g[n, o, m] P[n, j, m]   ([n, o, m][n, j, m] -> [o, j])
# (the input gradient keeps the flipped-kernel convolution). XLA's CPU convolution is poor at
# C = 1; measured LeNet-5 train step 16.0 -> 13.2 ms. The (N, M, O) product order lets XLA keep
# the channels-minor layout its CPU convolutions use. At C K_1 K_2 = 27 (an RGB 3x3 layer) it
# measured slower inside VGG-small's step (114 -> 124 ms), so the path stays narrow.
def _patch_matmul_forward(x: jax.Array, w: jax.Array, geo: ConvGeometry) -> jax.Array:
    nb, o = x.shape[0], w.shape[0]
    p = extract_patches(x, geo).reshape(nb, -1, math.prod(geo.out_spatial))
    y = lax.dot_general(p, w.reshape(o, -1), (((1,), (1,)), ((), ())), precision=geo.precision)
    return jnp.swapaxes(y, 1, 2).reshape(nb, o, *geo.out_spatial)


def _patch_matmul_weight_grad(x: jax.Array, g: jax.Array, geo: ConvGeometry) -> jax.Array:
    nb, o = x.shape[0], g.shape[1]
    m = math.prod(geo.out_spatial)
    p = extract_patches(x, geo).reshape(nb, -1, m)
    dims = (((0, 2), (0, 2)), ((), ()))
    dw = lax.dot_general(g.reshape(nb, o, m), p, dims, precision=geo.precision)
    return dw.reshape(o, x.shape[1], *geo.kernel_spatial)


def _conv_forward_custom(x: jax.Array, w: jax.Array, geo: ConvGeometry) -> jax.Array:
    if geo.patch_matmul:
        return _patch_matmul_forward(x, w, geo)
    if geo.in_channel_pad:
        p = geo.in_channel_pad
        return _conv_forward(_pad_channels(x, p), _pad_channels(w, p), geo)
    if geo.depthwise_taps:
        return _depthwise_taps_forward(x, w, geo)
    return _conv_forward(x, w, geo)


# Input gradient ("deconvolution", the lectures' h(K, G, s); Dumoulin & Visin 2016, arXiv
# 1603.07285, relationship 14):  [n, o, m][o, i, k] -> [n, i, y]
#   1. spread g by the stride: s - 1 zeros between elements;
#   2. pad by (K' - 1 - lo, K' - 1 - hi + r)   (negative pads crop);
#   3. stride-1 convolution, kernel dilation d, with the kernel flipped in every spatial axis and
#      its in/out channel axes swapped within each group.
# The padded length is (M - 1) s + 1 + 2 (K' - 1) - lo - hi + r = N + K' - 1, so the output has N
# rows; the r remainder rows see only padding and get zero gradient.
# A strided convolution does steps 1-3 without multiplying the inserted zeros, in polyphase or
# subpixel form (below; set_strided_input_grad chooses), or else with an interior lax.pad
# ("interior_pad") or the convolution's own lhs_dilation ("lhs_dilation", autodiff's way, slow
# on some GPUs). Step 2 is the convolution's padding argument: a separate lax.pad before it is
# not fused on CPU and cost 3x.
def _conv_input_grad(g: jax.Array, w: jax.Array, geo: ConvGeometry) -> jax.Array:
    if geo.in_channel_pad:
        dx = _conv_input_grad(
            g, _pad_channels(w, geo.in_channel_pad), geo._replace(in_channel_pad=0)
        )
        return dx[:, : w.shape[1]]
    pads = [
        (k - 1 - lo, k - 1 - hi + r)
        for k, (lo, hi), r in zip(geo.dilated_kernel, geo.padding, geo.remainder)
    ]
    if geo.depthwise_taps:
        return _depthwise_taps_input_grad(g, w, geo)
    if all(s == 1 for s in geo.stride):
        return _flipped_kernel_conv(g, w, pads, (1,) * geo.ndim, geo.dilation, geo)
    if geo.strided_input_grad == "polyphase":
        return _conv_input_grad_polyphase(g, w, geo)
    if geo.strided_input_grad == "subpixel":
        return _conv_input_grad_subpixel(g, w, geo)
    if geo.strided_input_grad == "interior_pad":
        interior = [(0, 0, 0), (0, 0, 0)] + [(0, 0, s - 1) for s in geo.stride]
        g = lax.pad(g, jnp.zeros((), g.dtype), interior)
        return _flipped_kernel_conv(g, w, pads, (1,) * geo.ndim, geo.dilation, geo)
    return _flipped_kernel_conv(g, w, pads, geo.stride, geo.dilation, geo)


def _flipped_kernel_conv(g, w, pads, lhs_dilation, rhs_dilation, geo: ConvGeometry):
    """Stride-1 convolution of ``g`` with ``w`` flipped and in/out-swapped per group."""
    sp = _specs(geo.ndim)
    if geo.groups == 1:  # swap in/out through the dimension numbers: no kernel transpose
        rhs, rhs_spec = jnp.flip(w, tuple(range(2, 2 + geo.ndim))), "IO" + sp
    else:
        rhs, rhs_spec = _flip_and_swap_kernel(w, geo.groups), "OI" + sp
    return lax.conv_general_dilated(
        g,
        rhs,
        window_strides=(1,) * geo.ndim,
        padding=pads,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=("NC" + sp, rhs_spec, "NC" + sp),
        feature_group_count=geo.groups,
        precision=geo.precision,
    )


# Strided input gradient without multiplying inserted zeros ("polyphase" / sub-pixel form).
# In padded coordinates t = m s + k d. Split t by its phase rho = t mod s: only the taps k with
# k d = rho (mod s) reach phase rho, namely k = k0 + u s' with s' = s / gcd(s, d), and then
#   dx_pad[s q + rho] = sum_u g[q - j0 - u d'] w[k0 + u s'],  j0 = (k0 d - rho) / s,
#   d' = d / gcd(s, d):
# a stride-1 transposed convolution of g with the sub-kernel w[k0::s'] (dilation d'), padded by
# (j0 + (T - 1) d' - qa, qb - j0 - M) to give q in [qa, qb) = [lo // s, ceil((lo + N) / s)).
# The s_1 ... s_n phase outputs are interleaved (stack, transpose, reshape) and cropped to N.
# Flops equal the forward's (the interior-pad form multiplies s_1 ... s_n times more zeros), and
# no lhs_dilation is used (slow on GPU; on CPU jaxlib 0.10.2 it can abort the process).
def _conv_input_grad_polyphase(g: jax.Array, w: jax.Array, geo: ConvGeometry) -> jax.Array:
    n = geo.ndim
    q_ranges, phase_specs = [], []
    for size, k, s, d, (lo, _), m in zip(
        geo.in_spatial, geo.kernel_spatial, geo.stride, geo.dilation, geo.padding, g.shape[2:]
    ):
        qa, qb = lo // s, -(-(lo + size) // s)
        q_ranges.append((qa, qb))
        common = math.gcd(s, d)
        s_sub, d_sub = s // common, d // common
        specs = []
        for rho in range(s):
            taps = [t for t in range(k) if (t * d) % s == rho]
            if not taps:
                specs.append(None)
                continue
            k0, count = taps[0], len(taps)
            j0 = (k0 * d - rho) // s
            pad = (j0 + (count - 1) * d_sub - qa, qb - j0 - m)
            specs.append((slice(k0, k0 + (count - 1) * s_sub + 1, s_sub), d_sub, pad))
        phase_specs.append(specs)
    q_sizes = [qb - qa for qa, qb in q_ranges]
    out_shape = (g.shape[0], w.shape[1] * geo.groups, *q_sizes)
    phases = []
    for combo in itertools.product(*(range(s) for s in geo.stride)):
        spec = [phase_specs[i][rho] for i, rho in enumerate(combo)]
        if any(sp is None for sp in spec):
            phases.append(jnp.zeros(out_shape, g.dtype))
            continue
        w_sub = w[(slice(None), slice(None), *(sp[0] for sp in spec))]
        pads = [sp[2] for sp in spec]
        phases.append(_flipped_kernel_conv(g, w_sub, pads, (1,) * n, [sp[1] for sp in spec], geo))
    y = jnp.stack(phases, axis=-1).reshape(*out_shape, *geo.stride)
    return _interleave_phases(y, q_ranges, geo)


def _interleave_phases(y: jax.Array, q_ranges: list[tuple[int, int]], geo: ConvGeometry):
    """(N, C, Q_1.., s_1..) phase outputs -> dx: x_pad[s q + rho] = y[q, rho], cropped to N."""
    n = geo.ndim
    perm = [0, 1] + [a for i in range(n) for a in (2 + i, 2 + n + i)]
    interleaved = [(qb - qa) * s for (qa, qb), s in zip(q_ranges, geo.stride)]
    y = jnp.transpose(y, perm).reshape(*y.shape[:2], *interleaved)
    start = [lo - qa * s for (lo, _), (qa, _), s in zip(geo.padding, q_ranges, geo.stride)]
    stop = [b + size for b, size in zip(start, geo.in_spatial)]
    return lax.slice(y, (0, 0, *start), (*y.shape[:2], *stop))


# Strided input gradient as ONE stride-1 convolution ("subpixel" form): the polyphase form's
# s_1 ... s_n phases become output channels. Per dimension, tap k reaches phase rho = k d mod s
# at shift j = floor(k d / s): dx_pad[s q + rho] gets g[q - j] w[k]. Over all phases j spans
# [J_lo, J_hi]; a dense kernel of E = J_hi - J_lo + 1 taps holds w[k] at tap e = J_hi - j of its
# phase (zero where a phase has no tap there) and correlates g, padded by (J_hi - qa,
# qb - J_lo - M), into q in [qa, qb) as above. Output channel c P + phase (groups stay
# contiguous); then the polyphase interleave and crop. Flops per g cell: s_1 E_1 ... s_n E_n
# (16 for 3x3, s = 2) against K_1 ... K_n (9) for the polyphase form and s K (36) for the
# interior pad, in one convolution where the polyphase form launches s_1 ... s_n.
def _conv_input_grad_subpixel(g: jax.Array, w: jax.Array, geo: ConvGeometry) -> jax.Array:
    n = geo.ndim
    q_ranges, pads, index = [], [], []
    taps_per_dim = _subpixel_taps(geo.kernel_spatial, geo.stride, geo.dilation)
    for i, (size, k, s, d, (lo, _), m, e) in enumerate(
        zip(
            geo.in_spatial,
            geo.kernel_spatial,
            geo.stride,
            geo.dilation,
            geo.padding,
            g.shape[2:],
            taps_per_dim,
        )
    ):
        qa, qb = lo // s, -(-(lo + size) // s)
        taps = np.full((s, e), k)  # k indexes the zero appended to w below
        for t in range(k):  # shifts j run from J_lo = 0 (t = 0) to J_hi = e - 1
            taps[(t * d) % s, e - 1 - t * d // s] = t
        shape = [1] * (2 * n)
        shape[i], shape[n + i] = taps.shape
        index.append(taps.reshape(shape))
        q_ranges.append((qa, qb))
        pads.append((e - 1 - qa, qb - m))
    w_pad = lax.pad(w, jnp.zeros((), w.dtype), [(0, 0, 0)] * 2 + [(0, 1, 0)] * n)
    v = w_pad[(slice(None), slice(None), *index)]  # (O, I/G, s_1.., E_1..): an exact gather
    o, i_g = w.shape[:2]
    v = v.reshape(o, i_g * math.prod(geo.stride), *taps_per_dim)
    sp = _specs(n)
    if geo.groups == 1:  # in/out swapped through the dimension numbers
        rhs, rhs_spec = v, "IO" + sp
    else:
        rhs, rhs_spec = _swap_in_out_per_group(v, geo.groups), "OI" + sp
    y = lax.conv_general_dilated(
        g,
        rhs,
        window_strides=(1,) * n,
        padding=pads,
        dimension_numbers=("NC" + sp, rhs_spec, "NC" + sp),
        feature_group_count=geo.groups,
        precision=geo.precision,
    )
    c = i_g * geo.groups
    y = y.reshape(y.shape[0], c, *geo.stride, *y.shape[2:])
    y = jnp.transpose(y, (0, 1, *range(2 + n, 2 + 2 * n), *range(2, 2 + n)))
    return _interleave_phases(y, q_ranges, geo)


# Weight gradient (the lectures' g(G, V, s)):  [i, n, y][o, n, m] -> [o, i, k]
#   dw[o, i, k] = sum_{n, m} x_pad[n, i, m s + k d] g[n, o, m]
# a convolution of the input with the output gradient as its kernel, with the channel axis of x
# as batch and its batch axis as features; the forward stride s becomes the kernel dilation and
# the forward dilation d becomes the window stride; padding (lo, hi - r) drops the remainder rows
# (negative pads crop). Groups split the input channels ("batch" here) into G blocks:
# batch_group_count = G.
def _conv_weight_grad(x: jax.Array, g: jax.Array, geo: ConvGeometry) -> jax.Array:
    if geo.patch_matmul:
        return _patch_matmul_weight_grad(x, g, geo)
    if geo.in_channel_pad:
        dw = _conv_weight_grad(
            _pad_channels(x, geo.in_channel_pad), g, geo._replace(in_channel_pad=0)
        )
        return dw[:, : x.shape[1]]
    sp = _specs(geo.ndim)
    return lax.conv_general_dilated(
        x,
        g,
        window_strides=geo.dilation,
        padding=[(lo, hi - r) for (lo, hi), r in zip(geo.padding, geo.remainder)],
        rhs_dilation=geo.stride,
        dimension_numbers=("CN" + sp, "IO" + sp, "CN" + sp),
        batch_group_count=geo.groups,
        precision=geo.precision,
    )


# ---------------------------------------------------------------------------------------------
# custom_vjp wiring: each map's cotangents are the other two maps.
#   <conv(x, w), g>        = <x, input_grad(g, w)> = <w, weight_grad(x, g)>
# ---------------------------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_p(x: jax.Array, w: jax.Array, geo: ConvGeometry) -> jax.Array:
    return _conv_forward_custom(x, w, geo)


# The fwd/bwd rules call the custom_vjp maps, never the raw lax ones, so that differentiating a
# backward pass again (grad of grad) goes through these hand-written rules too.
def _conv_p_fwd(x, w, geo):
    return _conv_p(x, w, geo), (x, w)


def _conv_p_bwd(geo, res, g):
    x, w = res
    return _input_grad_p(g, w, geo).astype(x.dtype), _weight_grad_p(x, g, geo).astype(w.dtype)


_conv_p.defvjp(_conv_p_fwd, _conv_p_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _input_grad_p(g: jax.Array, w: jax.Array, geo: ConvGeometry) -> jax.Array:
    return _conv_input_grad(g, w, geo)


def _input_grad_p_fwd(g, w, geo):
    return _input_grad_p(g, w, geo), (g, w)


# <input_grad(g, w), u> = <g, conv(u, w)>: so d/dg = conv(u, w) and d/dw = weight_grad(u, g).
def _input_grad_p_bwd(geo, res, u):
    g, w = res
    return _conv_p(u, w, geo).astype(g.dtype), _weight_grad_p(u, g, geo).astype(w.dtype)


_input_grad_p.defvjp(_input_grad_p_fwd, _input_grad_p_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _weight_grad_p(x: jax.Array, g: jax.Array, geo: ConvGeometry) -> jax.Array:
    return _conv_weight_grad(x, g, geo)


def _weight_grad_p_fwd(x, g, geo):
    return _weight_grad_p(x, g, geo), (x, g)


# <weight_grad(x, g), v> = <g, conv(x, v)>: so d/dx = input_grad(g, v) and d/dg = conv(x, v).
def _weight_grad_p_bwd(geo, res, v):
    x, g = res
    return _input_grad_p(g, v, geo).astype(x.dtype), _conv_p(x, v, geo).astype(g.dtype)


_weight_grad_p.defvjp(_weight_grad_p_fwd, _weight_grad_p_bwd)


# ---------------------------------------------------------------------------------------------
# Autodiff reference twins: plain lax, differentiated by JAX's own transpose rules.
# ---------------------------------------------------------------------------------------------


def _input_grad_autodiff(g: jax.Array, w: jax.Array, geo: ConvGeometry) -> jax.Array:
    x_shape = (g.shape[0], w.shape[1] * geo.groups, *geo.in_spatial)
    zeros = jnp.zeros(x_shape, g.dtype)
    return jax.vjp(lambda x: _conv_forward(x, w, geo), zeros)[1](g)[0]


def _weight_grad_autodiff(x: jax.Array, g: jax.Array, geo: ConvGeometry) -> jax.Array:
    w_shape = (g.shape[1], x.shape[1] // geo.groups, *geo.kernel_spatial)
    zeros = jnp.zeros(w_shape, x.dtype)
    return jax.vjp(lambda w: _conv_forward(x, w, geo), zeros)[1](g)[0]


_IMPLS = {
    "custom": (_conv_p, _input_grad_p, _weight_grad_p),
    "autodiff": (_conv_forward, _input_grad_autodiff, _weight_grad_autodiff),
}


# ---------------------------------------------------------------------------------------------
# Argument checking (trace time) and the public functions.
# ---------------------------------------------------------------------------------------------


_STRIDED_INPUT_GRAD = {"mode": "auto"}
_STRIDED_MODES = ("auto", "polyphase", "subpixel", "interior_pad", "lhs_dilation")


def set_strided_input_grad(mode: str) -> None:
    """Chooses how the input gradient of a strided convolution spreads ``g`` by the stride.

    Args:
      mode: one of
        ``"auto"`` (default): ``"subpixel"`` on GPU/TPU (on an H200 as fast as autodiff's
        lhs-dilated convolution, and 1.6x faster than ``"interior_pad"`` for 4x4 kernels at
        stride 2), or ``"interior_pad"`` where a kernel dilation larger than the stride gives
        the subpixel kernel more taps than the kernel has; on CPU ``"subpixel"`` where its
        kernel has no zero taps (every dimension's K a multiple of its stride, no dilation:
        4x4 or 2x2 kernels at stride 2, 1.6x faster than ``"polyphase"`` on a 2-core CPU) and
        ``"polyphase"`` otherwise.
        ``"polyphase"``: one stride-1 convolution per output phase with the matching
        sub-kernel, then interleaved; no multiplications by inserted zeros (2-3x faster than
        ``"interior_pad"`` on a 2-core CPU, 1.6x slower than ``"subpixel"`` on an H200).
        ``"subpixel"``: the phases stacked as the output channels of one stride-1 convolution
        with a dense kernel (zero taps where a phase has none), then interleaved.
        ``"interior_pad"``: a ``lax.pad`` with interior padding ``s - 1``, then a stride-1
        convolution over the zero-stuffed gradient.
        ``"lhs_dilation"``: the convolution's own input dilation, as autodiff does (very slow
        on some GPUs; on jaxlib 0.10.2 CPU it can abort the process for some shapes, see
        backward-rules.md).
        Read when an op is traced: already-compiled functions keep their choice.

    Raises:
      ValueError: for an unknown mode.
    """
    if mode not in _STRIDED_MODES:
        raise ValueError(f"`mode` must be one of {_STRIDED_MODES}, got {mode!r}.")
    _STRIDED_INPUT_GRAD["mode"] = mode


def _subpixel_taps(kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]):
    """Taps E per dimension of the subpixel kernel: 1 + max - min of the shifts floor(k d / s)."""
    return [(k - 1) * d // s + 1 for k, s, d in zip(kernel, stride, dilation)]


def _strided_input_grad_mode(
    kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> str:
    mode = _STRIDED_INPUT_GRAD["mode"]
    if mode != "auto":
        return mode
    taps = _subpixel_taps(kernel, stride, dilation)
    if jax.default_backend() != "cpu":
        # Per g cell the subpixel kernel multiplies s_1 E_1 ... s_n E_n weights, the interior pad
        # s_1 K_1 ... s_n K_n: only a dilation larger than the stride makes E exceed K.
        return "subpixel" if math.prod(taps) <= math.prod(kernel) else "interior_pad"
    # CPU: subpixel only when its kernel has no zero taps (s E == K in every dimension).
    dense = all(s * e == k for s, e, k in zip(stride, taps, kernel))
    return "subpixel" if dense else "polyphase"


def _is_depthwise(w: Any, groups: int) -> bool:
    """One kernel per channel, no channel multiplier: groups == C == O, w (C, 1, *K)."""
    return groups > 1 and w.shape[1] == 1 and w.shape[0] == groups


def _use_depthwise_taps(depthwise: bool) -> bool:
    # XLA's CPU grouped convolution is the slow path the taps form replaces; on GPU/TPU the
    # library depthwise kernels are fast, so they keep lax.conv_general_dilated.
    return depthwise and jax.default_backend() == "cpu"


def _in_channel_pad(in_channels: int | None, groups: int, ndim: int) -> int:
    # Measured on XLA:CPU (jaxlib 0.10.2, 2 cores, 64x{C}x32x32 -> 32, 3x3): forward 7.4 ms at
    # C = 3, 3.4 ms at C = 4; 7.9 / 3.9 ms at C = 5 / 6; 8.6 / 5.2 ms at C = 7 / 8; the weight
    # gradient likewise. 1-D and 3-D convolutions, and other backends, show no such step.
    if in_channels is None or groups != 1 or ndim != 2 or jax.default_backend() != "cpu":
        return 0
    return 1 if in_channels > 1 and in_channels % 2 == 1 else 0


# The patches hold K_1 K_2 copies of the input: at most 2^18 patch entries per example (4 x 4
# taps of a 128 x 128 image, 25 taps of 100 x 100) keep that extra memory small.
_PATCH_ENTRIES_PER_EXAMPLE = 2**18


def _use_patch_matmul(
    in_channels: int | None,
    kernel_spatial: Sequence[int],
    groups: int,
    ndim: int,
    out_spatial: Sequence[int],
) -> bool:
    if in_channels is None or groups != 1 or ndim != 2 or jax.default_backend() != "cpu":
        return False
    taps = math.prod(kernel_spatial)
    small = taps * math.prod(out_spatial) <= _PATCH_ENTRIES_PER_EXAMPLE
    return in_channels == 1 and taps <= 25 and small


def _geometry(
    in_spatial: Sequence[int],
    kernel_spatial: Sequence[int],
    stride: int | Sequence[int],
    padding: Padding,
    dilation: int | Sequence[int],
    groups: int,
    precision: Any,
    *,
    depthwise: bool = False,
    in_channels: int | None = None,
) -> ConvGeometry:
    """Resolves the arguments into a ``ConvGeometry``; ``depthwise`` means groups == C == O.

    ``in_channels`` (the convolution's input channels C) enables the odd-channel padding; the
    patch-based ops in ``local_conv`` leave it out.
    """
    n = len(in_spatial)
    stride = _canon.ntuple(stride, n, "stride")
    dilation = _canon.ntuple(dilation, n, "dilation")
    dilated = tuple(d * (k - 1) + 1 for k, d in zip(kernel_spatial, dilation))
    pads = _canon.resolve_padding(padding, in_spatial, dilated, stride)
    _canon.check_window_fits(in_spatial, dilated, pads, "kernel")
    geo = ConvGeometry(
        tuple(in_spatial),
        tuple(kernel_spatial),
        stride,
        pads,
        dilation,
        groups,
        precision,
        _strided_input_grad_mode(kernel_spatial, stride, dilation),
        _use_depthwise_taps(depthwise),
        _in_channel_pad(in_channels, groups, n),
    )
    # The patch path's memory cap needs the output size, which the geometry computes.
    patch = _use_patch_matmul(in_channels, kernel_spatial, groups, n, geo.out_spatial)
    return geo._replace(patch_matmul=patch)


def _check_groups(groups: Any) -> int:
    if not isinstance(groups, int) or isinstance(groups, bool):
        raise TypeError(f"`groups` must be an int, got {groups!r}.")
    if groups < 1:
        raise ValueError(f"`groups` must be >= 1, got {groups}.")
    return groups


def _check_kernel(
    w: jax.Array,
    n: int,
    groups: int,
    name: str = "w",
    *,
    layout: str = "(out_channels, in_channels / groups, *kernel)",
    lead: str = "out_channels",
    shown: tuple[int, ...] | None = None,
) -> None:
    """Checks a channels-first kernel's rank, that every size is >= 1 and that groups divides
    its leading channels (``lead``, named as in ``layout``). ``shown`` is the shape the user
    passed (a channels-last kernel is checked after conversion), for the messages."""
    shown = tuple(w.shape) if shown is None else tuple(shown)
    if w.ndim != n + 2:
        raise ValueError(
            f"`{name}` must be {n + 2}-D {layout} to match a {n}-D convolution, got shape {shown}."
        )
    if 0 in w.shape:
        raise ValueError(f"`{name}` must have every size >= 1 {layout}, got shape {shown}.")
    if w.shape[0] % groups:
        raise ValueError(
            f"`groups` (={groups}) must divide the kernel's {lead} (={w.shape[0]}); "
            f"`{name}` has shape {shown}."
        )


def _check_in_channels(
    c_in: int, w: jax.Array, groups: int, what: str, w_axis: str = "w.shape[1]"
) -> None:
    """``w_axis`` names the kernel's input-channel axis as the caller passed it."""
    if c_in % groups:
        raise ValueError(f"`groups` (={groups}) must divide the {what}'s channels (={c_in}).")
    if w.shape[1] * groups != c_in:
        raise ValueError(
            f"channel mismatch: the {what} has {c_in} channels but the kernel expects "
            f"{w_axis} * groups = {w.shape[1]} * {groups} = {w.shape[1] * groups}."
        )


def _promote(*arrays: jax.Array) -> list[jax.Array]:
    dtype = jnp.result_type(*arrays)
    return [a.astype(dtype) for a in arrays]


def _add_bias(y: jax.Array, bias: jax.Array | None, channels: int) -> jax.Array:
    if bias is None:
        return y
    bias = _canon.check_float_array(bias, "bias")
    if bias.shape != (channels,):
        raise ValueError(f"`bias` must have shape ({channels},), got {tuple(bias.shape)}.")
    return y + bias.astype(y.dtype).reshape((1, channels) + (1,) * (y.ndim - 2))


def _inputs_channels_first(
    layout: str, vjp: str, *arrays: tuple[Any, str, bool]
) -> tuple[bool, list[jax.Array]]:
    """Checks dtypes/layout and returns channels-first arrays (data and kernels)."""
    _canon.check_vjp_mode(vjp)
    last = _canon.check_layout(layout)
    out = []
    for a, name, is_kernel in arrays:
        a = _canon.check_float_array(a, name)
        if a.ndim < 3:
            raise ValueError(
                f"`{name}` must be 3-, 4- or 5-D (1-, 2- or 3-D convolution), got shape "
                f"{tuple(a.shape)}."
            )
        if last:
            a = _canon.kernel_to_oihw(a) if is_kernel else _canon.to_channels_first(a)
        out.append(a)
    return last, _promote(*out)


def conv(
    x: jax.Array,
    w: jax.Array,
    bias: jax.Array | None = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    layout: str = "channels_first",
    precision: Any = None,
    vjp: str = "custom",
) -> jax.Array:
    """1-, 2- or 3-D convolution (cross-correlation) with a hand-written backward rule.

    Args:
      x: input, ``(N, C, *spatial)`` with 1 to 3 spatial dims (``(N, *spatial, C)`` if
        ``layout="channels_last"``).
      w: kernel, ``(O, C / groups, *kernel)`` (``(*kernel, C / groups, O)`` channels-last).
      bias: optional ``(O,)`` added to every output position.
      stride: window stride, an int or one per spatial dim. Default 1.
      padding: ``"VALID"`` (default), ``"SAME"`` (XLA/TF: output ``ceil(N / s)``, odd extra
        pixel on the high side; PyTorch's ``padding="same"`` puts it on the low side for even
        kernels, so use explicit pairs to match it), ``"FULL"`` (``K' - 1`` each side), an int, a
        sequence of ints or of ``(lo, hi)`` pairs.
      dilation: kernel dilation, an int or one per spatial dim. Default 1.
      groups: feature groups; ``groups == C`` gives a depthwise convolution. Default 1.
      layout: ``"channels_first"`` (NCHW/OIHW, default) or ``"channels_last"`` (NHWC/HWIO).
      precision: forwarded to ``lax.conv_general_dilated``.
      vjp: ``"custom"`` (default, hand-written backward rule) or ``"autodiff"`` (plain lax,
        differentiated by JAX; supports forward mode).

    Returns:
      ``(N, O, *out)`` (or ``(N, *out, O)``), ``out = floor((N + lo + hi - K') / s) + 1``.

    Raises:
      ValueError: wrong rank, channel mismatch, ``groups`` not dividing channels, kernel larger
        than the padded input, non-positive stride/dilation, unknown padding string.
      TypeError: integer inputs (``DTypeError``, also a ``ValueError``) or malformed arguments.

    >>> import jax.numpy as jnp
    >>> conv(jnp.ones((1, 1, 4, 4)), jnp.ones((1, 1, 3, 3)), padding="SAME").shape
    (1, 1, 4, 4)
    """
    w_shape = np.shape(w)  # as passed, for the messages
    last, (x, w) = _inputs_channels_first(layout, vjp, (x, "x", False), (w, "w", True))
    n = _canon.spatial_rank(x, "x")
    groups = _check_groups(groups)
    w_layout = (
        "(*kernel, C / groups, O)" if last else "(out_channels, in_channels / groups, *kernel)"
    )
    _check_kernel(
        w, n, groups, layout=w_layout, lead="O" if last else "out_channels", shown=w_shape
    )
    _check_in_channels(x.shape[1], w, groups, "input `x`", "w.shape[-2]" if last else "w.shape[1]")
    geo = _geometry(
        x.shape[2:],
        w.shape[2:],
        stride,
        padding,
        dilation,
        groups,
        precision,
        depthwise=_is_depthwise(w, groups),
        in_channels=x.shape[1],
    )
    with jax.named_scope("fconv.conv"):
        y = _add_bias(_IMPLS[vjp][0](x, w, geo), bias, w.shape[0])
    return _canon.to_channels_last(y) if last else y


def conv_input_grad(
    g: jax.Array,
    w: jax.Array,
    input_shape: Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    layout: str = "channels_first",
    precision: Any = None,
    vjp: str = "custom",
) -> jax.Array:
    """Gradient of ``conv`` with respect to its input (the lectures' h op).

    Like ``torch.nn.grad.conv2d_input``: given the output gradient ``g`` of
    ``conv(x, w, stride=..., padding=..., ...)`` for an ``x`` of shape ``input_shape``, returns
    ``d<conv(x, w), g>/dx``. It is linear in ``g`` and in ``w`` and is differentiable (its own
    backward rule is ``conv`` and ``conv_weight_grad``).

    Args:
      g: output gradient, ``(N, O, *out)`` (channels-last: ``(N, *out, O)``).
      w: kernel, ``(O, C / groups, *kernel)`` (channels-last: ``(*kernel, C / groups, O)``).
      input_shape: the full shape of ``x`` in the chosen layout.
      stride, padding, dilation, groups, layout, precision, vjp: as for ``conv``.

    Returns:
      ``dx`` with shape ``input_shape``.

    Raises:
      ValueError: if ``g`` is not the output shape ``conv`` gives for ``input_shape``.
    """
    last, (g, w) = _inputs_channels_first(layout, vjp, (g, "g", False), (w, "w", True))
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) != g.ndim:
        raise ValueError(
            f"`input_shape` must have rank {g.ndim} like `g` {tuple(g.shape)}, got {input_shape}."
        )
    x_shape = (input_shape[0], input_shape[-1], *input_shape[1:-1]) if last else input_shape
    geo = _check_conv_triplet(x_shape, w, g.shape, stride, padding, dilation, groups, precision)
    with jax.named_scope("fconv.conv_input_grad"):
        dx = _IMPLS[vjp][1](g, w, geo)
    return _canon.to_channels_last(dx) if last else dx


def conv_weight_grad(
    x: jax.Array,
    g: jax.Array,
    kernel_shape: Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    layout: str = "channels_first",
    precision: Any = None,
    vjp: str = "custom",
) -> jax.Array:
    """Gradient of ``conv`` with respect to its kernel (the lectures' g op).

    Like ``torch.nn.grad.conv2d_weight``: returns ``d<conv(x, w), g>/dw`` for a kernel of shape
    ``kernel_shape``. Linear in ``x`` and in ``g``, and differentiable.

    Args:
      x: the convolution's input, ``(N, C, *spatial)`` (channels-last: ``(N, *spatial, C)``).
      g: output gradient, ``(N, O, *out)`` (channels-last: ``(N, *out, O)``).
      kernel_shape: the kernel's shape in the chosen layout (``(O, C / groups, *kernel)`` or
        ``(*kernel, C / groups, O)``).
      stride, padding, dilation, groups, layout, precision, vjp: as for ``conv``.

    Returns:
      ``dw`` with shape ``kernel_shape``.
    """
    last, (x, g) = _inputs_channels_first(layout, vjp, (x, "x", False), (g, "g", False))
    kernel_shape = tuple(int(v) for v in kernel_shape)
    if len(kernel_shape) != x.ndim:
        raise ValueError(
            f"`kernel_shape` must have rank {x.ndim} like `x` {tuple(x.shape)}, got {kernel_shape}."
        )
    if last:
        kernel_shape = (kernel_shape[-1], kernel_shape[-2], *kernel_shape[:-2])
    w_like = jax.ShapeDtypeStruct(kernel_shape, x.dtype)
    geo = _check_conv_triplet(
        x.shape, w_like, g.shape, stride, padding, dilation, groups, precision
    )
    with jax.named_scope("fconv.conv_weight_grad"):
        dw = _IMPLS[vjp][2](x, g, geo)
    return _canon.kernel_to_hwio(dw) if last else dw


def _check_conv_triplet(
    x_shape: Sequence[int],
    w: Any,
    g_shape: Sequence[int],
    stride: Any,
    padding: Padding,
    dilation: Any,
    groups: int,
    precision: Any,
) -> ConvGeometry:
    """Checks that (input shape, kernel, output-gradient shape) describe one convolution."""
    n = len(x_shape) - 2
    if n not in (1, 2, 3):
        raise ValueError(f"expected a 1-, 2- or 3-D convolution, got input shape {x_shape}.")
    groups = _check_groups(groups)
    _check_kernel(w, n, groups)
    _check_in_channels(x_shape[1], w, groups, "input")
    geo = _geometry(
        x_shape[2:],
        w.shape[2:],
        stride,
        padding,
        dilation,
        groups,
        precision,
        depthwise=_is_depthwise(w, groups),
        in_channels=x_shape[1],
    )
    expected = (x_shape[0], w.shape[0], *geo.out_spatial)
    if tuple(g_shape) != expected:
        raise ValueError(
            f"`g` has shape {tuple(g_shape)} (channels-first), but the convolution of an input "
            f"{tuple(x_shape)} with a kernel {tuple(w.shape)} gives {expected}."
        )
    return geo


def conv_transpose(
    x: jax.Array,
    w: jax.Array,
    bias: jax.Array | None = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: Padding = 0,
    output_padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    layout: str = "channels_first",
    precision: Any = None,
    vjp: str = "custom",
) -> jax.Array:
    """Transposed convolution ("deconvolution"), PyTorch ``conv_transposeNd`` semantics.

    It is exactly the input gradient of the convolution with the same ``w``, ``stride``,
    ``padding``, ``dilation`` and ``groups``:
    ``<conv(z, w), x> == <z, conv_transpose(x, w)>``. Output size per spatial dim:
    ``(M - 1) s - (lo + hi) + d (K - 1) + output_padding + 1``.

    Args:
      x: input, ``(N, C_in, *spatial)`` (channels-last: ``(N, *spatial, C_in)``).
      w: kernel in PyTorch's transposed layout ``(C_in, C_out / groups, *kernel)`` (which is the
        kernel of the convolution being transposed); channels-last: ``(*kernel, C_out / groups,
        C_in)``.
      bias: optional ``(C_out,)``.
      stride: stride of the transposed convolution (upsampling factor). Default 1.
      padding: padding of the convolution being transposed: an int, ints or ``(lo, hi)`` pairs
        (the output is cropped by that much), ``"VALID"`` (0), ``"FULL"`` (``K' - 1``) or
        ``"SAME"`` (output size exactly ``M s``, as in Flax/TF). Default 0.
      output_padding: extra rows at the high end, ``0 <= output_padding < stride``; selects which
        of the ``s`` input sizes that a strided convolution maps to ``M`` is produced.
      dilation, groups, layout, precision, vjp: as for ``conv``.

    Returns:
      ``(N, C_out, *out)`` (or channels-last).

    Raises:
      ValueError: bad ``output_padding``, channel mismatch, or a non-positive output size.
    """
    x_shape, w_shape = np.shape(x), np.shape(w)  # as passed, for the messages
    last, (x, w) = _inputs_channels_first(layout, vjp, (x, "x", False), (w, "w", True))
    n = _canon.spatial_rank(x, "x")
    if 0 in x.shape[2:]:
        raise ValueError(f"`x` must have every spatial size >= 1, got shape {x_shape}.")
    groups = _check_groups(groups)
    w_layout = "(*kernel, C_out / groups, C_in)" if last else "(C_in, C_out / groups, *kernel)"
    _check_kernel(w, n, groups, layout=w_layout, lead="C_in", shown=w_shape)
    if x.shape[1] != w.shape[0]:
        c_in = "w.shape[-1]" if last else "w.shape[0]"
        raise ValueError(
            f"channel mismatch: `x` has {x.shape[1]} channels but the transposed kernel `w` "
            f"{w_shape} expects {c_in} = {w.shape[0]} (layout {w_layout})."
        )
    stride_t = _canon.ntuple(stride, n, "stride")
    dilation_t = _canon.ntuple(dilation, n, "dilation")
    out_pad = _canon.ntuple(output_padding, n, "output_padding", minimum=0)
    for op, s in zip(out_pad, stride_t):
        if op >= s:
            raise ValueError(
                f"`output_padding` must be smaller than `stride` in every dimension, got "
                f"output_padding={output_padding!r}, stride={stride!r}."
            )
    kernel = w.shape[2:]
    dilated = [d * (k - 1) + 1 for k, d in zip(kernel, dilation_t)]
    m = x.shape[2:]
    if isinstance(padding, str) and padding.upper() == "SAME":
        if any(out_pad):
            raise ValueError("`output_padding` must be 0 with padding='SAME' (output is M * s).")
        in_spatial = tuple(mi * s for mi, s in zip(m, stride_t))
        pads = _canon.resolve_padding("SAME", in_spatial, dilated, stride_t)
    else:
        pads = _canon.resolve_padding(padding, [0] * n, dilated, stride_t)
        in_spatial = tuple(
            (mi - 1) * s - lo - hi + k + op
            for mi, s, (lo, hi), k, op in zip(m, stride_t, pads, dilated, out_pad)
        )
    if any(size < 1 for size in in_spatial):
        raise ValueError(
            f"conv_transpose output size would be {in_spatial}: `padding` {padding!r} crops more "
            f"than the {tuple(m)} input produces."
        )
    geo = ConvGeometry(
        in_spatial,
        kernel,
        stride_t,
        pads,
        dilation_t,
        groups,
        precision,
        _strided_input_grad_mode(kernel, stride_t, dilation_t),
        _use_depthwise_taps(_is_depthwise(w, groups)),
        _in_channel_pad(w.shape[1] * groups, groups, n),
        _use_patch_matmul(w.shape[1] * groups, kernel, groups, n, m),
    )
    with jax.named_scope("fconv.conv_transpose"):
        y = _IMPLS[vjp][1](x, w, geo)
        y = _add_bias(y, bias, y.shape[1])
    return _canon.to_channels_last(y) if last else y
