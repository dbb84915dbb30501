"""Specification of fconv.ops.local_conv: locally_connected, tiled_conv and conv_im2col.

Forward values against NumPy loops over output positions; hand-written VJPs against forward-mode
Jacobians of the autodiff twins (``reference="jacfwd"``, independent of any transpose rule);
the lectures' identities (tile 1 = conv, tile = output size = locally connected, im2col = conv,
strided conv = conv then subsample, its input gradient = upsample then transposed conv,
1x1 conv = per-pixel dense layer).
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from fconv.ops import DTypeError, conv, conv_input_grad, conv_transpose
from fconv.ops.local_conv import conv_im2col, locally_connected, tiled_conv
from fconv.testing import check_vjp

# ---------------------------------------------------------------------------------------------
# Independent NumPy references: explicit loops over output positions and kernel offsets.
# ---------------------------------------------------------------------------------------------


def _np_pads(padding, size, window, stride):
    if padding == "VALID":
        return [(0, 0)] * len(size)
    if padding == "SAME":
        return [tuple(p) for p in lax.padtype_to_pads(size, window, stride, "SAME")]
    return [tuple(p) for p in padding]


def np_unshared(x, kernel_at, kernel, stride, padding, dilation):
    """y[n, :, m] = sum_{c, k} x_pad[n, c, m s + k d] kernel_at(m)[:, c, k], any rank."""
    n = x.ndim - 2
    eff = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    pads = _np_pads(padding, x.shape[2:], eff, stride)
    xp = np.pad(x, [(0, 0), (0, 0), *pads])
    out = [(xp.shape[2 + i] - eff[i]) // stride[i] + 1 for i in range(n)]
    o = kernel_at((0,) * n).shape[0]
    y = np.zeros((x.shape[0], o, *out))
    for m in np.ndindex(*out):
        wm = kernel_at(m)
        for k in np.ndindex(*kernel):
            idx = tuple(m[i] * stride[i] + k[i] * dilation[i] for i in range(n))
            y[(slice(None), slice(None), *m)] += (
                xp[(slice(None), slice(None), *idx)] @ wm[(slice(None), slice(None), *k)].T
            )
    return y


def _check(f_custom, f_reference, *args, fd=False, reference="jacfwd"):
    """check_vjp, both functions jitted (one compile each instead of one per primitive).

    ``reference="jacfwd"`` (forward-mode Jacobians, independent of every transpose rule) is
    required wherever the reference contains ``lax.conv``, whose reverse mode can abort the
    process; the twins of locally_connected / tiled_conv are slices, pads and dot_generals, so
    reverse mode is safe for them and much cheaper to compile. Finite differences only where
    asked: they need a second compile under ``jax.enable_x64``."""
    report = check_vjp(
        jax.jit(f_custom),
        jax.jit(f_reference),
        *args,
        reference=reference,
        finite_differences=fd,
    )
    assert max(report.rel_err) < 1e-12, report
    return report


def _arrays(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


def _out_size(size, kernel, stride, padding, dilation):
    eff = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    pads = _np_pads(padding, size, eff, stride)
    return tuple((n + lo + hi - e) // s + 1 for n, (lo, hi), e, s in zip(size, pads, eff, stride))


# (input spatial, kernel, stride, padding, dilation)
UNSHARED_CONFIGS = [
    ((7,), (3,), (1,), "VALID", (1,)),  # 1-D, plain
    ((9,), (2,), (2,), ((1, 2),), (2,)),  # 1-D, stride + dilation + asymmetric pad
    ((5, 6), (3, 2), (1, 1), "VALID", (1, 1)),  # 2-D, even kernel width
    ((6, 5), (3, 3), (2, 1), "SAME", (1, 1)),  # 2-D, SAME with stride: odd pixel on the high side
    ((7, 6), (2, 3), (2, 2), ((0, 1), (2, 0)), (2, 1)),  # 2-D, all of it, remainder rows
]


def _lc_case(cfg, n_batch=2, c=3, o=2, seed=0):
    size, kernel, stride, padding, dilation = cfg
    m = _out_size(size, kernel, stride, padding, dilation)
    x, w = _arrays((n_batch, c, *size), (*m, o, c, *kernel), seed=seed)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    return x, w, m, kw


# ---------------------------------------------------------------------------------------------
# locally_connected
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", UNSHARED_CONFIGS)
def test_locally_connected_matches_loop_reference(cfg):
    x, w, m, kw = _lc_case(cfg)
    y = jax.jit(functools.partial(locally_connected, **kw))(x, w)
    ref = np_unshared(x, lambda pos: w[pos], cfg[1], cfg[2], cfg[3], cfg[4])
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("i", [1, 3, 4])
def test_locally_connected_vjp_matches_jacfwd(i):
    x, w, _, kw = _lc_case(UNSHARED_CONFIGS[i], n_batch=1, c=2, seed=1)
    _check(
        lambda x, w: locally_connected(x, w, **kw),
        lambda x, w: locally_connected(x, w, vjp="autodiff", **kw),
        x,
        w,
        fd=i == 4,
        reference="jacfwd" if i == 4 else "vjp",
    )


def test_locally_connected_bias_shared_and_untied():
    x, w, m, kw = _lc_case(UNSHARED_CONFIGS[2])
    b_shared, b_untied = _arrays((2,), (*m, 2), seed=3)
    f = jax.jit(functools.partial(locally_connected, **kw))
    y = np.asarray(f(x, w))
    np.testing.assert_allclose(f(x, w, b_shared), y + b_shared[None, :, None, None], atol=1e-12)
    np.testing.assert_allclose(
        f(x, w, b_untied), y + np.moveaxis(b_untied, -1, 0)[None], atol=1e-12
    )


def test_locally_connected_with_shared_kernels_is_conv():
    # Copying one OIHW kernel to every position removes the "unshared" part.
    x, wc = _arrays((2, 3, 7, 6), (4, 3, 3, 2))
    kw = dict(stride=(2, 1), padding=((1, 0), (0, 1)), dilation=(1, 2))
    y = conv(x, wc, **kw)
    w = np.broadcast_to(wc, (*y.shape[2:], *wc.shape))
    np.testing.assert_allclose(
        jax.jit(functools.partial(locally_connected, **kw))(x, w), y, atol=1e-12
    )


def test_locally_connected_3d_and_jit():
    x, w = _arrays((1, 2, 4, 3, 4), (3, 3, 4, 2, 2, 2, 2, 2))
    f = jax.jit(lambda x, w: locally_connected(x, w, padding=((0, 0), (0, 1), (1, 0))))
    ref = np_unshared(
        x, lambda pos: w[pos], (2, 2, 2), (1, 1, 1), ((0, 0), (0, 1), (1, 0)), (1,) * 3
    )
    np.testing.assert_allclose(f(x, w), ref, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# tiled_conv
# ---------------------------------------------------------------------------------------------


# (config, tile)
TILED_CASES = [
    (UNSHARED_CONFIGS[0], (2,)),  # 1-D, M = 5 not a multiple of t
    (UNSHARED_CONFIGS[2], (2, 2)),  # 2-D, M = (3, 5)
    (UNSHARED_CONFIGS[3], (3, 1)),  # shared along W, tiled along H
    (UNSHARED_CONFIGS[4], (2, 3)),  # stride, dilation, padding
]


def _tiled_case(cfg, tile, seed=0, n_batch=2, c=3):
    size, kernel, stride, padding, dilation = cfg
    x, w = _arrays((n_batch, c, *size), (*tile, 2, c, *kernel), seed=seed)
    return x, w, dict(stride=stride, padding=padding, dilation=dilation)


@pytest.mark.parametrize("cfg, tile", TILED_CASES)
def test_tiled_conv_matches_loop_reference(cfg, tile):
    x, w, kw = _tiled_case(cfg, tile)
    ref = np_unshared(
        x, lambda m: w[tuple(mi % t for mi, t in zip(m, tile))], cfg[1], cfg[2], cfg[3], cfg[4]
    )
    np.testing.assert_allclose(
        jax.jit(functools.partial(tiled_conv, tile=tile, **kw))(x, w), ref, atol=1e-12
    )


@pytest.mark.parametrize("i", [0, 3])
def test_tiled_conv_vjp_matches_jacfwd(i):
    cfg, tile = TILED_CASES[i]
    x, w, kw = _tiled_case(cfg, tile, seed=2, n_batch=1, c=2)
    _check(
        lambda x, w: tiled_conv(x, w, tile=tile, **kw),
        lambda x, w: tiled_conv(x, w, tile=tile, vjp="autodiff", **kw),
        x,
        w,
        fd=i == 3,
        reference="jacfwd" if i == 3 else "vjp",
    )


@pytest.mark.parametrize("cfg", UNSHARED_CONFIGS[1::2])
def test_tiled_conv_tile_one_is_conv(cfg):
    size, kernel, stride, padding, dilation = cfg
    x, wc = _arrays((2, 3, *size), (4, 3, *kernel))
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    n = len(size)
    w = wc.reshape((1,) * n + wc.shape)
    # equal outputs, and equal gradients (conv's own hand-written rule as the reference)
    g = _arrays(conv(x, wc, **kw).shape, seed=5)[0]

    @jax.jit
    def both(x, w, wc, g):
        y_t, pull_t = jax.vjp(lambda x, w: tiled_conv(x, w, tile=1, **kw), x, w)
        y_c, pull_c = jax.vjp(lambda x, w: conv(x, w, **kw), x, wc)
        return y_t, y_c, pull_t(g), pull_c(g)

    y_t, y_c, (dx_t, dw_t), (dx_c, dw_c) = both(x, w, wc, g)
    np.testing.assert_allclose(y_t, y_c, atol=1e-12)
    np.testing.assert_allclose(dx_t, dx_c, atol=1e-12)
    np.testing.assert_allclose(dw_t.reshape(wc.shape), dw_c, atol=1e-12)


@pytest.mark.parametrize("cfg", UNSHARED_CONFIGS[::2])
def test_tiled_conv_full_tile_is_locally_connected(cfg):
    x, w, m, kw = _lc_case(cfg, seed=4)
    f = jax.jit(lambda x, w: (tiled_conv(x, w, tile=m, **kw), locally_connected(x, w, **kw)))
    tiled, local = f(x, w)
    np.testing.assert_allclose(tiled, local, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# conv_im2col
# ---------------------------------------------------------------------------------------------

# (x shape, w shape, stride, padding, dilation, groups)
IM2COL_CONFIGS = [
    ((2, 3, 9), (4, 3, 3), 1, "VALID", 1, 1),  # 1-D plain
    ((2, 4, 10), (6, 2, 2), 3, ((2, 1),), 2, 2),  # 1-D stride, dilation, groups, asym pad
    ((2, 3, 6, 7), (5, 3, 3, 3), 1, "SAME", 1, 1),  # 2-D SAME
    ((1, 4, 7, 8), (4, 1, 2, 3), (2, 3), "FULL", (1, 2), 4),  # depthwise, FULL, remainders
    ((1, 4, 8, 5), (4, 2, 3, 2), 2, ((1, 2), (0, 1)), (2, 1), 2),  # groups + everything
    ((1, 1, 10, 5), (1, 1, 2, 3), 2, ((1, 2), (0, 0)), 1, 1),  # autodiff-abort config
    ((1, 2, 4, 5, 4), (2, 2, 2, 3, 2), (1, 2, 1), "SAME", 1, 1),  # 3-D
]


def _im2col_case(cfg, seed=0):
    xs, ws, stride, padding, dilation, groups = cfg
    x, w = _arrays(xs, ws, seed=seed)
    return x, w, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("cfg", IM2COL_CONFIGS)
def test_conv_im2col_equals_conv(cfg):
    x, w, kw = _im2col_case(cfg)
    f = jax.jit(lambda x, w: (conv_im2col(x, w, **kw), conv(x, w, **kw)))
    got, want = f(x, w)
    np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("i", [4, 6])  # groups + stride + dilation + asymmetric pad (2-D); 3-D
def test_conv_im2col_vjp_matches_jacfwd_of_conv(i):
    x, w, kw = _im2col_case(IM2COL_CONFIGS[i], seed=1)
    _check(
        lambda x, w: conv_im2col(x, w, **kw),
        lambda x, w: conv(x, w, vjp="autodiff", **kw),
        x,
        w,
        fd=i == 4,
    )


def test_conv_im2col_gradients_equal_conv_rule_on_abort_config():
    # jax.vjp of lax.conv aborts the process on this configuration (backward-rules.md); im2col's
    # rule and conv's own rule both compute it, and agree.
    x, w, kw = _im2col_case(IM2COL_CONFIGS[5], seed=7)
    g = _arrays(conv(x, w, **kw).shape, seed=8)[0]

    @jax.jit
    def both(x, w, g):
        got = jax.vjp(lambda x, w: conv_im2col(x, w, **kw), x, w)[1](g)
        want = jax.vjp(lambda x, w: conv(x, w, **kw), x, w)[1](g)
        return got, want

    got, want = both(x, w, g)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_conv_im2col_bias_and_second_order():
    x, w, b = _arrays((1, 4, 5, 4), (4, 2, 3, 2), (4,))
    kw = dict(stride=(2, 1), padding=1, groups=2)
    f = jax.jit(lambda x, w, b: (conv_im2col(x, w, b, **kw), conv(x, w, b, **kw)))
    got, want = f(x, w, b)
    np.testing.assert_allclose(got, want, atol=1e-12)

    # grad of a gradient norm: the backward rule is itself differentiable jax.
    def gnorm(w, vjp):
        dx = jax.grad(lambda x: jnp.sum(conv_im2col(x, w, vjp=vjp, **kw) ** 2))(x)
        return jnp.sum(dx**2)

    hvp = jax.jit(jax.grad(gnorm), static_argnums=1)
    np.testing.assert_allclose(hvp(w, "custom"), hvp(w, "autodiff"), rtol=1e-10)


def test_conv_im2col_under_jit_float32():
    x, w = (a.astype(np.float32) for a in _arrays((2, 3, 8, 8), (4, 3, 3, 3)))
    f = jax.jit(lambda x, w: conv_im2col(x, w, stride=2, padding="SAME"))
    y = f(x, w)
    assert y.dtype == jnp.float32 and y.shape == (2, 4, 4, 4)
    want = jax.jit(lambda x, w: conv(x, w, stride=2, padding="SAME"))(x, w)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# The lectures' equivalences (seed 004): stride, its gradient, 1x1 convolution.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, kernel, stride",
    [((11,), (3,), (2,)), ((9, 8), (3, 2), (2, 3)), ((7, 7), (2, 2), (3, 1))],
)
def test_strided_conv_is_full_conv_then_subsample(size, kernel, stride):
    x, w = _arrays((2, 3, *size), (4, 3, *kernel))

    @jax.jit
    def run(x, w):
        return conv(x, w), conv(x, w, stride=stride), conv_im2col(x, w, stride=stride)

    full, strided, im2col = run(x, w)
    sub = full[(slice(None), slice(None), *(slice(None, None, s) for s in stride))]
    np.testing.assert_allclose(strided, sub, atol=1e-12)
    np.testing.assert_allclose(im2col, sub, atol=1e-12)


@pytest.mark.parametrize(
    "size, kernel, stride",
    [((11,), (3,), (2,)), ((9, 8), (3, 2), (2, 3)), ((7, 7), (2, 2), (3, 1))],
)
def test_strided_conv_input_grad_is_upsample_then_transposed_conv(size, kernel, stride):
    x, w = _arrays((2, 3, *size), (4, 3, *kernel))
    m = jax.eval_shape(functools.partial(conv, stride=stride), x, w).shape[2:]
    m1 = jax.eval_shape(conv, x, w).shape[2:]
    g = _arrays((2, 4, *m), seed=1)[0]

    @jax.jit
    def run(x, w, g):
        # upsample: s - 1 zeros between the gradient's entries, zeros up to the stride-1 size
        pads = [(0, 0, 0), (0, 0, 0)]
        pads += [(0, mf - ((mi - 1) * s + 1), s - 1) for mf, mi, s in zip(m1, m, stride)]
        up = lax.pad(g, jnp.zeros((), g.dtype), pads)
        upsampled_transposed = conv_transpose(up, w, stride=1)
        dx = conv_input_grad(g, w, x.shape, stride=stride)
        dx_im2col = jax.vjp(lambda x: conv_im2col(x, w, stride=stride), x)[1](g)[0]
        return upsampled_transposed, dx, dx_im2col

    want, dx, dx_im2col = run(x, w, g)
    np.testing.assert_allclose(dx, want, atol=1e-12)
    np.testing.assert_allclose(dx_im2col, want, atol=1e-12)


def test_one_by_one_conv_is_per_pixel_dense():
    x, w, b = _arrays((2, 5, 4, 3), (7, 5, 1, 1), (7,))
    dense = np.einsum("nchw,oc->nohw", x, w[:, :, 0, 0]) + b[None, :, None, None]
    got = jax.jit(lambda x, w, b: (conv(x, w, b), conv_im2col(x, w, b)))(x, w, b)
    np.testing.assert_allclose(got[0], dense, atol=1e-12)
    np.testing.assert_allclose(got[1], dense, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_locally_connected_errors():
    x = np.zeros((1, 2, 5, 5))
    with pytest.raises(ValueError, match=r"`w` must be 6-D \(\*out_spatial"):
        locally_connected(x, np.zeros((4, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"leading 2 axes must be the output size \(3, 3\)"):
        locally_connected(x, np.zeros((2, 3, 4, 2, 3, 3)))
    with pytest.raises(ValueError, match="channel mismatch: `x` has 2 channels"):
        locally_connected(x, np.zeros((3, 3, 4, 3, 3, 3)))
    with pytest.raises(ValueError, match="larger than the padded input"):
        locally_connected(x, np.zeros((1, 1, 4, 2, 6, 6)))
    with pytest.raises(ValueError, match=r"`bias` must have shape \(4,\) or \(3, 3, 4\)"):
        locally_connected(x, np.zeros((3, 3, 4, 2, 3, 3)), np.zeros((3,)))
    with pytest.raises(ValueError, match="`stride` entries must be >= 1"):
        locally_connected(x, np.zeros((3, 3, 4, 2, 3, 3)), stride=0)
    with pytest.raises(DTypeError, match="`x` must have a floating dtype"):
        locally_connected(np.zeros((1, 2, 5, 5), np.int32), np.zeros((3, 3, 4, 2, 3, 3)))
    with pytest.raises(ValueError, match="`vjp` must be 'custom' or 'autodiff'"):
        locally_connected(x, np.zeros((3, 3, 4, 2, 3, 3)), vjp="jvp")


def test_tiled_conv_errors():
    x = np.zeros((1, 2, 5, 5))
    with pytest.raises(ValueError, match=r"leading 2 axes must equal `tile` \(2, 2\)"):
        tiled_conv(x, np.zeros((2, 3, 4, 2, 3, 3)), tile=2)
    with pytest.raises(ValueError, match=r"`tile` \(4, 4\) must not exceed the output size"):
        tiled_conv(x, np.zeros((4, 4, 4, 2, 3, 3)), tile=4)
    with pytest.raises(ValueError, match="`tile` must have one entry per spatial dimension"):
        tiled_conv(x, np.zeros((2, 2, 4, 2, 3, 3)), tile=(2, 2, 2))
    with pytest.raises(ValueError, match="`tile` entries must be >= 1"):
        tiled_conv(x, np.zeros((2, 2, 4, 2, 3, 3)), tile=0)


def test_conv_im2col_errors():
    x = np.zeros((1, 4, 5, 5))
    with pytest.raises(ValueError, match=r"`groups` \(=3\) must divide the kernel's out_channels"):
        conv_im2col(x, np.zeros((4, 2, 3, 3)), groups=3)
    with pytest.raises(ValueError, match="channel mismatch"):
        conv_im2col(x, np.zeros((4, 3, 3, 3)))
    with pytest.raises(ValueError, match="`padding` string must be 'VALID', 'SAME' or 'FULL'"):
        conv_im2col(x, np.zeros((4, 4, 3, 3)), padding="same-ish")
    with pytest.raises(ValueError, match=r"`x` must be 3 or 4 or 5-D"):
        conv_im2col(np.zeros((4, 5)), np.zeros((4, 4, 3)))
    for w in (np.zeros((4, 4, 0, 3)), np.zeros((0, 4, 3, 3))):  # no taps, no output channels
        with pytest.raises(ValueError, match="`w` must have every size >= 1"):
            conv_im2col(x, w)


def test_unshared_convolutions_reject_empty_kernels():
    x = np.zeros((1, 2, 5, 5))
    with pytest.raises(ValueError, match=r"`w` must have every size >= 1 \(\*out_spatial"):
        locally_connected(x, np.zeros((3, 3, 0, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"`w` must have every size >= 1 \(\*tile"):
        tiled_conv(x, np.zeros((1, 1, 4, 2, 0, 3)), tile=1)


def test_col2im_counts_the_windows_covering_each_cell():
    # With w = 1 and g = 1, dx[y] is the number of (window, offset) pairs that read cell y:
    # 6x5 input, 3x2 kernel, stride (2, 1), pads ((1, 0), (0, 1)) -> 3x5 windows.
    x = np.ones((1, 1, 6, 5))
    w = np.ones((1, 1, 3, 2))
    kw = dict(stride=(2, 1), padding=((1, 0), (0, 1)))
    pull = jax.jit(lambda x, g: jax.vjp(lambda x: conv_im2col(x, w, **kw), x)[1](g)[0])
    counts = pull(x, np.ones((1, 1, 3, 5)))[0, 0]
    want = np.zeros((6, 5))
    for i, j in itertools.product(range(3), range(5)):
        for a, b in itertools.product(range(3), range(2)):
            r, c = i * 2 + a - 1, j + b
            if 0 <= r < 6 and 0 <= c < 5:
                want[r, c] += 1
    np.testing.assert_array_equal(counts, want)


def test_backward_rules_do_not_scatter():
    x, w_lc, w_t, w_c = _arrays((2, 4, 7, 6), (4, 4, 3, 4, 2, 2), (2, 2, 3, 4, 2, 2), (6, 2, 2, 2))
    ops = [
        lambda x: locally_connected(x, w_lc, stride=2, padding=1),
        lambda x: tiled_conv(x, w_t, tile=2, dilation=2),
        lambda x: conv_im2col(x, w_c, stride=(2, 1), padding="SAME", groups=2),
    ]
    for op in ops:
        jaxpr = str(jax.make_jaxpr(jax.grad(lambda x, op=op: jnp.sum(op(x) ** 2)))(x))
        assert "scatter" not in jaxpr
