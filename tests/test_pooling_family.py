"""Specification of fconv.ops.pooling_family: Lp, maxout, global, adaptive, SPP and ROI pooling.

Forward values against NumPy loops; hand-written VJPs against JAX's autodiff of the ``vjp=
"autodiff"`` twins (plus finite differences on a few); max-type ops on inputs with unique values,
and separately on ties, where the gradient must go to the first maximum in row-major order
exactly as ``jax.grad`` of the twin (a gather at ``argmax``) sends it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fconv.ops import DTypeError, avg_pool, max_pool
from fconv.ops.pooling_family import (
    adaptive_avg_pool,
    adaptive_max_pool,
    global_avg_pool,
    global_max_pool,
    lp_pool,
    maxout,
    roi_max_pool,
    spatial_pyramid_pool,
)
from fconv.testing import VJPReport, check_vjp


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _unique(*shape, seed=0):
    """Distinct values in random order: every maximum is unambiguous."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(math.prod(shape), dtype=np.float64)).reshape(shape) / 7.0


class Checked(NamedTuple):
    report: VJPReport
    forward: np.ndarray


def _check(op, *args, fd=False, argnums=None):
    """check_vjp of ``op(*args, vjp="custom")`` against autodiff of ``vjp="autodiff"``, jitted."""
    custom = jax.jit(lambda *a: op(*a, vjp="custom"))
    report = check_vjp(
        custom,
        jax.jit(lambda *a: op(*a, vjp="autodiff")),
        *args,
        argnums=argnums,
        finite_differences=fd,
    )
    assert max(report.rel_err) < 1e-12, report
    return Checked(report, np.asarray(custom(*args)))


def _grads(op, x, g):
    """(custom, autodiff) input gradients of <op(x), g>, jitted."""
    out = []
    for vjp in ("custom", "autodiff"):
        f = jax.jit(jax.grad(lambda x, vjp=vjp: jnp.sum(op(x, vjp=vjp) * g)))
        out.append(np.asarray(f(x)))
    return out


# ---------------------------------------------------------------------------------------------
# Lp pooling
# ---------------------------------------------------------------------------------------------


def np_lp_pool(x, p, window, stride, pads):
    xp = np.pad(np.abs(x), [(0, 0), (0, 0), *pads])
    n = x.ndim - 2
    out = [(xp.shape[2 + i] - window[i]) // stride[i] + 1 for i in range(n)]
    y = np.zeros((*x.shape[:2], *out))
    for m in np.ndindex(*out):
        sl = tuple(slice(m[i] * stride[i], m[i] * stride[i] + window[i]) for i in range(n))
        win = xp[(slice(None), slice(None), *sl)].reshape(*x.shape[:2], -1)
        y[(slice(None), slice(None), *m)] = np.sum(win**p, -1) ** (1 / p)
    return y


# (spatial, p, window, stride, padding as explicit pairs)
LP_CASES = [
    ((9,), 2, (3,), (2,), ((1, 1),)),  # 1-D L2, overlapping, padded
    ((6, 7), 2, (2, 2), (2, 2), ((0, 0), (0, 0))),  # 2-D L2, non-overlapping, remainder column
    ((6, 5), 1, (3, 2), (1, 2), ((1, 0), (0, 1))),  # p = 1: sum of |x|
    ((5, 6), 3.5, (2, 3), (1, 1), ((0, 1), (1, 1))),  # fractional p
]


@pytest.mark.parametrize("spatial, p, window, stride, pads", LP_CASES)
def test_lp_pool_matches_loop_reference(spatial, p, window, stride, pads):
    x = _rand(2, 3, *spatial)
    f = jax.jit(lambda x: lp_pool(x, p, window, stride, pads))
    np.testing.assert_allclose(f(x), np_lp_pool(x, p, window, stride, pads), rtol=1e-12)


@pytest.mark.parametrize("i", [0, 2, 3])
def test_lp_pool_vjp_matches_autodiff(i):
    spatial, p, window, stride, pads = LP_CASES[i]
    x = _rand(2, 2, *spatial, seed=1)
    _check(lambda x, vjp: lp_pool(x, p, window, stride, pads, vjp=vjp), x, fd=i == 3)


def test_lp_pool_l2_is_sqrt_of_window_sum_of_squares():
    x = _rand(2, 3, 8, 8)
    y, avg = jax.jit(lambda x: (lp_pool(x, 2, 3, 2, "SAME"), avg_pool(x**2, 3, 2, "SAME")))(x)
    np.testing.assert_allclose(y, np.sqrt(9 * np.asarray(avg)), rtol=1e-12)


def test_lp_pool_all_zero_window_has_zero_gradient():
    # Autodiff of S^(1/p) at S = 0 gives 0 * inf = nan; the hand-written rule gives 0.
    x = _rand(1, 1, 4, 4)
    x[0, 0, :2, :2] = 0.0
    g = np.ones((1, 1, 2, 2))
    custom, autodiff = _grads(lambda x, vjp: lp_pool(x, 2, 2, vjp=vjp), x, g)
    assert np.all(np.isfinite(custom))
    np.testing.assert_array_equal(custom[0, 0, :2, :2], 0.0)
    assert np.isnan(autodiff[0, 0, :2, :2]).all()
    np.testing.assert_allclose(custom[0, 0, 2:, 2:], autodiff[0, 0, 2:, 2:], rtol=1e-12)


@pytest.mark.parametrize(
    "value, p, dtype",
    [(1e-3, 20, jnp.float32), (10.0, 40, jnp.float32), (300.0, 2, jnp.float16)],
)
def test_lp_pool_neither_overflows_nor_underflows(value, p, dtype):
    # |x|^p alone would underflow (1e-3^20), overflow float32 (10^40) or float16 (300^2).
    x = jnp.full((1, 1, 2, 2), value, dtype)
    y = lp_pool(x, p, 2)
    assert y.dtype == dtype
    np.testing.assert_allclose(np.float64(y[0, 0, 0, 0]), value * 4 ** (1 / p), rtol=2e-3)
    dx = jax.grad(lambda x: lp_pool(x, p, 2).astype(jnp.float32).sum())(x)  # (1/4)^((p-1)/p)
    np.testing.assert_allclose(np.float64(dx), 0.25 ** ((p - 1) / p), rtol=2e-3)


@pytest.mark.parametrize("p", [1, 2, 3.5])
def test_lp_pool_windows_over_32_cells_use_one_reduce_window_and_match(p):
    # 6 x 6 = 36 cells: the direct window sum of |x|^p (a slice per cell would grow the program).
    x = _rand(2, 2, 12, 11, seed=5)
    want = np_lp_pool(x, p, (6, 6), (2, 2), ((1, 1), (1, 1)))
    np.testing.assert_allclose(lp_pool(x, p, 6, 2, 1), want, rtol=1e-12)
    _check(lambda x, vjp: lp_pool(x, p, 6, 2, 1, vjp=vjp), x)


def test_lp_pool_large_p_vjp_matches_autodiff():
    x = _rand(2, 2, 7, 6, seed=4) * 10.0
    _check(lambda x, vjp: lp_pool(x, 40, 3, 2, "SAME", vjp=vjp), x)


def test_lp_pool_p1_gradient_at_an_exact_zero_is_sign_0():
    # Both are subgradients of |x| at 0: the rule takes sign(0) = 0, jax.grad of abs takes 1.
    x = np.array([[[0.0, 1.0, 0.0, 0.0, -2.0, 0.0]]])
    custom, autodiff = _grads(lambda x, vjp: lp_pool(x, 1, 2, vjp=vjp), x, np.ones((1, 1, 3)))
    np.testing.assert_array_equal(custom, [[[0.0, 1.0, 0.0, 0.0, -1.0, 0.0]]])
    np.testing.assert_array_equal(autodiff, [[[1.0, 1.0, 1.0, 1.0, -1.0, 1.0]]])


def test_lp_pool_errors():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"`p` must be a finite number >= 1, got 0.5"):
        lp_pool(x, 0.5, 2)
    with pytest.raises(ValueError, match=r"`p` must be a finite number >= 1, got inf"):
        lp_pool(x, float("inf"), 2)
    with pytest.raises(TypeError, match=r"`p` must be a number \(the norm's order\), got True"):
        lp_pool(x, True, 2)
    with pytest.raises(TypeError, match="`p` must be a number"):
        lp_pool(x, "2", 2)
    with pytest.raises(ValueError, match="gives a pad of 2 >= the window size 2"):
        lp_pool(x, 2, 2, padding=2)
    with pytest.raises(DTypeError, match="`x` must have a floating dtype"):
        lp_pool(np.zeros((1, 1, 4, 4), np.int32), 2, 2)


# ---------------------------------------------------------------------------------------------
# Maxout
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, k, axis",
    [
        ((2, 6, 3, 3), 2, 1),  # NCHW channels
        ((2, 6, 5), 3, 1),  # 1-D
        ((4, 6), 6, -1),  # dense features, one group
        ((3, 2, 8), 4, 2),  # last axis given as a positive index
    ],
)
def test_maxout_matches_reference_and_autodiff(shape, k, axis):
    x = _unique(*shape)
    ax = axis % len(shape)
    split = (*shape[:ax], shape[ax] // k, k, *shape[ax + 1 :])
    checked = _check(lambda x, vjp: maxout(x, k, axis, vjp=vjp), x, fd=axis == 1 and k == 2)
    np.testing.assert_array_equal(checked.forward, x.reshape(split).max(ax + 1))


def test_maxout_ties_route_to_first_piece():
    x = np.array([[[1.0], [3.0], [3.0], [2.0], [2.0], [2.0]]])  # (1, 6, 1), two groups of 3
    g = np.array([[[10.0], [20.0]]])
    custom, autodiff = _grads(lambda x, vjp: maxout(x, 3, vjp=vjp), x, g)
    np.testing.assert_array_equal(custom[0, :, 0], [0.0, 10.0, 0.0, 20.0, 0.0, 0.0])
    np.testing.assert_array_equal(custom, autodiff)


def test_maxout_errors():
    with pytest.raises(ValueError, match=r"`num_pieces` \(=4\) must divide the channels on axis 1"):
        maxout(np.zeros((2, 6, 3)), 4)
    with pytest.raises(ValueError, match="`num_pieces` must be >= 1, got 0"):
        maxout(np.zeros((2, 6, 3)), 0)
    with pytest.raises(TypeError, match=r"`num_pieces` must be an int, got \(2,\)"):
        maxout(np.zeros((2, 6, 3)), (2,))
    with pytest.raises(ValueError, match="`axis` 3 is out of range"):
        maxout(np.zeros((2, 6, 3)), 2, axis=3)
    with pytest.raises(TypeError, match="`axis` must be an int"):
        maxout(np.zeros((2, 6, 3)), 2, axis=1.0)


# ---------------------------------------------------------------------------------------------
# Global pooling
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 3, 7), (2, 3, 4, 5), (1, 2, 3, 2, 3)])
def test_global_pools_match_numpy_and_autodiff(shape):
    x = _unique(*shape)
    axes = tuple(range(2, len(shape)))
    avg = _check(lambda x, vjp: global_avg_pool(x, vjp=vjp), x)
    mx = _check(lambda x, vjp: global_max_pool(x, vjp=vjp), x, fd=len(shape) == 4)
    np.testing.assert_allclose(avg.forward, x.mean(axes), rtol=1e-12)
    np.testing.assert_array_equal(mx.forward, x.max(axes))


def test_global_max_pool_ties_route_to_first_in_row_major_order():
    x = np.zeros((1, 2, 3, 3))
    x[0, 0, 1, 2] = x[0, 0, 2, 0] = 5.0  # two maxima: (1, 2) comes first in row-major order
    g = np.array([[2.0, 3.0]])  # channel 1 is all zeros: everything ties, (0, 0) wins
    custom, autodiff = _grads(lambda x, vjp: global_max_pool(x, vjp=vjp), x, g)
    want = np.zeros_like(x)
    want[0, 0, 1, 2] = 2.0
    want[0, 1, 0, 0] = 3.0
    np.testing.assert_array_equal(custom, want)
    np.testing.assert_array_equal(autodiff, want)


def test_global_avg_pool_gradient_is_uniform():
    g = np.array([[4.0, 8.0]])
    custom, _ = _grads(lambda x, vjp: global_avg_pool(x, vjp=vjp), np.zeros((1, 2, 2, 2)), g)
    np.testing.assert_array_equal(custom[0, 0], np.full((2, 2), 1.0))
    np.testing.assert_array_equal(custom[0, 1], np.full((2, 2), 2.0))


# ---------------------------------------------------------------------------------------------
# Adaptive pooling
# ---------------------------------------------------------------------------------------------


def np_adaptive(x, out, kind):
    """PyTorch's bins, written independently: start floor(i N / M), end ceil((i + 1) N / M)."""
    n = x.ndim - 2
    bins = [
        [(math.floor(i * size / m), math.ceil((i + 1) * size / m)) for i in range(m)]
        for size, m in zip(x.shape[2:], out)
    ]
    y = np.zeros((*x.shape[:2], *out))
    for idx in np.ndindex(*out):
        sl = tuple(slice(*bins[d][idx[d]]) for d in range(n))
        region = x[(slice(None), slice(None), *sl)].reshape(*x.shape[:2], -1)
        y[(slice(None), slice(None), *idx)] = region.max(-1) if kind == "max" else region.mean(-1)
    return y


# (spatial, output_size)
ADAPTIVE_CASES = [
    ((5,), (3,)),  # overlapping bins [0,2) [1,4) [3,5)
    ((7, 6), (3, 4)),  # overlapping in both dims
    ((8, 6), (4, 2)),  # M divides N: plain pooling with window N / M
    ((3, 5), (5, 5)),  # M > N repeats rows; M = N is the identity along W
    ((4, 3, 5), (2, 2, 3)),  # 3-D
]


def test_adaptive_bins_follow_pytorch_rule():
    # N = 5, M = 3: bins [0, 2), [1, 4), [3, 5)
    x = np.array([[[1.0, 2.0, 3.0, 4.0, 5.0]]])
    avg, mx = jax.jit(lambda x: (adaptive_avg_pool(x, 3), adaptive_max_pool(x, 3)))(x)
    np.testing.assert_allclose(avg[0, 0], [1.5, 3.0, 4.5], rtol=1e-12)
    np.testing.assert_array_equal(mx[0, 0], [2.0, 4.0, 5.0])


@pytest.mark.parametrize("spatial, out", ADAPTIVE_CASES)
@pytest.mark.parametrize("kind", ["avg", "max"])
def test_adaptive_pool_matches_loop_reference(spatial, out, kind):
    x = _unique(2, 3, *spatial)
    op = adaptive_max_pool if kind == "max" else adaptive_avg_pool
    want = np_adaptive(x, out, kind)
    got = jax.jit(lambda x: (op(x, out), op(x, out, vjp="autodiff")))(x)
    np.testing.assert_allclose(got[0], want, rtol=1e-12)
    np.testing.assert_allclose(got[1], want, rtol=1e-12)


# avg: bins overlapping in both dims; max: 1-D, 2-D (with finite differences) and 3-D
@pytest.mark.parametrize("kind, i", [("avg", 1), ("max", 0), ("max", 1), ("max", 4)])
def test_adaptive_pool_vjp_matches_autodiff(kind, i):
    spatial, out = ADAPTIVE_CASES[i]
    x = _unique(2, 2, *spatial, seed=1)
    op = adaptive_max_pool if kind == "max" else adaptive_avg_pool
    _check(lambda x, vjp: op(x, out, vjp=vjp), x, fd=i == 1)


def test_adaptive_pool_with_dividing_bins_is_plain_pooling():
    x = _rand(2, 3, 8, 6)
    got = jax.jit(
        lambda x: (
            adaptive_avg_pool(x, (4, 2)),
            avg_pool(x, (2, 3)),
            adaptive_max_pool(x, (4, 2)),
            max_pool(x, (2, 3)),
        )
    )(x)
    np.testing.assert_allclose(got[0], got[1], rtol=1e-12)
    np.testing.assert_array_equal(got[2], got[3])


def test_adaptive_max_pool_ties_route_to_first_in_row_major_order():
    # Constant input: every cell ties. Bins of a 5x5 input to 3x3 are [0,2) [1,4) [3,5) per dim,
    # so each bin's gradient goes to its top-left cell; overlapping bins never share one.
    x = np.ones((1, 1, 5, 5))
    g = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    custom, autodiff = _grads(lambda x, vjp: adaptive_max_pool(x, 3, vjp=vjp), x, g)
    want = np.zeros((5, 5))
    for i, r in enumerate([0, 1, 3]):
        for j, c in enumerate([0, 1, 3]):
            want[r, c] += g[0, 0, i, j]
    np.testing.assert_array_equal(custom[0, 0], want)
    np.testing.assert_array_equal(autodiff, custom)
    # A tie between (0, 1) and (1, 0) inside the first 2x2 bin: row-major picks (0, 1).
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = 1.0
    g = np.ones((1, 1, 2, 2))
    custom, autodiff = _grads(lambda x, vjp: adaptive_max_pool(x, 2, vjp=vjp), x, g)
    assert custom[0, 0, 0, 1] == 1.0 and custom[0, 0, 1, 0] == 0.0
    np.testing.assert_array_equal(custom, autodiff)


@pytest.mark.parametrize(
    "op",
    [
        global_avg_pool,
        global_max_pool,
        lambda x: adaptive_avg_pool(x, 2),
        lambda x: adaptive_max_pool(x, 2),
        spatial_pyramid_pool,
    ],
)
def test_region_pools_reject_an_empty_spatial_axis(op):
    with pytest.raises(ValueError, match=r"`x` must have every spatial size >= 1 .*\(1, 2, 0, 3\)"):
        op(jnp.ones((1, 2, 0, 3)))


def test_adaptive_pool_errors():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match="`output_size` entries must be >= 1"):
        adaptive_avg_pool(x, 0)
    with pytest.raises(ValueError, match="`output_size` must have one entry per spatial"):
        adaptive_max_pool(x, (2, 2, 2))
    with pytest.raises(ValueError, match=r"`x` must be 3 or 4 or 5-D"):
        adaptive_max_pool(np.zeros((4, 4)), 2)


# ---------------------------------------------------------------------------------------------
# Spatial pyramid pooling
# ---------------------------------------------------------------------------------------------


def test_spp_width_is_independent_of_input_size():
    levels = (1, 2, 4)
    # the third input is smaller than the finest level
    shapes = [
        jax.eval_shape(lambda x: spatial_pyramid_pool(x, levels), _rand(2, 3, *size)).shape
        for size in [(13, 9), (6, 20), (3, 3)]
    ]
    assert shapes == [(2, 3 * (1 + 4 + 16))] * 3
    y = jax.jit(lambda x: spatial_pyramid_pool(x, levels))(np.ones((2, 3, 3, 3)))
    np.testing.assert_array_equal(y, np.ones((2, 63)))


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_spp_is_concatenation_of_adaptive_pools(mode):
    x = _unique(2, 3, 7, 9)
    pool = adaptive_max_pool if mode == "max" else adaptive_avg_pool
    glob = global_max_pool if mode == "max" else global_avg_pool

    @jax.jit
    def run(x):
        parts = [pool(x, lv) for lv in (1, 2, 3)]
        return spatial_pyramid_pool(x, (1, 2, 3), mode), parts, glob(x)

    spp, parts, g = run(x)
    want = np.concatenate([np.asarray(p).reshape(2, -1) for p in parts], axis=1)
    np.testing.assert_allclose(spp, want, rtol=1e-12)
    # level 1 comes first, channel-major: it is global pooling
    np.testing.assert_allclose(spp[:, :3], g, rtol=1e-12)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_spp_vjp_matches_autodiff(mode):
    x = _unique(2, 2, 7, 5, seed=2)
    _check(lambda x, vjp: spatial_pyramid_pool(x, (1, 2, 3), mode, vjp=vjp), x)


def test_spp_1d():
    x = _unique(2, 3, 10)
    y = jax.jit(lambda x: spatial_pyramid_pool(x, (1, 2, 4)))(x)
    assert y.shape == (2, 3 * 7)
    np.testing.assert_array_equal(y[:, :3], x.max(-1))


def test_spp_errors():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match="`mode` must be 'max' or 'avg', got 'sum'"):
        spatial_pyramid_pool(x, mode="sum")
    with pytest.raises(ValueError, match="`levels` must be a non-empty sequence"):
        spatial_pyramid_pool(x, ())
    with pytest.raises(ValueError, match="`levels` must be a non-empty sequence"):
        spatial_pyramid_pool(x, 2)
    with pytest.raises(ValueError, match="`levels` entries must be >= 1"):
        spatial_pyramid_pool(x, (1, 0))


# ---------------------------------------------------------------------------------------------
# ROI max pooling
# ---------------------------------------------------------------------------------------------


def _c_round(v):
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def np_roi_pool(x, boxes, out, scale, g=None):
    """torchvision's roi_pool CPU kernel, transcribed: strict '>' scan from -inf, row-major.

    Returns the output and, if ``g`` is given, the input gradient (first max of each bin).
    """
    ph_, pw_ = out
    _, c, h, w = x.shape
    y = np.zeros((len(boxes), c, ph_, pw_))
    dx = np.zeros_like(x)
    for k, (b, x1, y1, x2, y2) in enumerate(boxes):
        b = int(b)
        sw, sh, ew, eh = (_c_round(v * scale) for v in (x1, y1, x2, y2))
        rw, rh = max(ew - sw + 1, 1), max(eh - sh + 1, 1)
        bh, bw = rh / ph_, rw / pw_
        for i in range(ph_):
            for j in range(pw_):
                hs = min(max(math.floor(i * bh) + sh, 0), h)
                he = min(max(math.ceil((i + 1) * bh) + sh, 0), h)
                ws = min(max(math.floor(j * bw) + sw, 0), w)
                we = min(max(math.ceil((j + 1) * bw) + sw, 0), w)
                if he <= hs or we <= ws:
                    continue  # empty bin: output 0, no gradient
                for ch in range(c):
                    best, arg = -np.inf, None
                    for r in range(hs, he):
                        for q in range(ws, we):
                            if x[b, ch, r, q] > best:
                                best, arg = x[b, ch, r, q], (r, q)
                    y[k, ch, i, j] = best
                    if g is not None:
                        dx[b, ch, arg[0], arg[1]] += g[k, ch, i, j]
    return y, dx


BOXES = np.array(
    [
        [1, 0.4, 1.6, 3.5, 6.2],  # fractional corners: rounding
        [0, 2, 0, 4, 3],  # small box, bins of 1-2 cells
        [1, 3, 3, 2, 2],  # inverted corners: clamped to a 1x1 ROI
        [0, -2, -3, 10, 12],  # larger than the image: clipped, bins partly outside
        [0, 0, 0, 0, 0],  # single cell: most bins empty (output 0)
        [1, 2.5, 1.5, 5.5, 4.5],  # .5 corners: round half away from zero (jnp.round differs)
    ]
)


@pytest.mark.parametrize("out, scale", [((2, 3), 1.0), ((3, 3), 0.5), ((1, 1), 1.0)])
def test_roi_max_pool_matches_torchvision_transcription(out, scale):
    x = _unique(2, 3, 7, 6)
    g = _rand(len(BOXES), 3, *out, seed=3)
    want, want_dx = np_roi_pool(x, BOXES, out, scale, g)
    f = jax.jit(lambda x, b: roi_max_pool(x, b, out, scale))
    np.testing.assert_array_equal(f(x, BOXES), want)
    ref = jax.jit(lambda x, b: roi_max_pool(x, b, out, scale, vjp="autodiff"))
    np.testing.assert_array_equal(ref(x, BOXES), want)
    dx, dboxes = jax.jit(jax.grad(lambda x, b: jnp.sum(f(x, b) * g), argnums=(0, 1)))(x, BOXES)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-12)
    np.testing.assert_array_equal(dboxes, np.zeros_like(BOXES))


def test_roi_max_pool_vjp_matches_autodiff():
    x = _unique(2, 3, 7, 6, seed=4)
    _check(lambda x, b, vjp: roi_max_pool(x, b, (2, 3), vjp=vjp), x, BOXES, argnums=(0,), fd=True)


def test_roi_max_pool_ties_route_to_first_in_row_major_order():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 2] = x[0, 0, 2, 1] = 3.0  # both in the single bin; (1, 2) comes first
    boxes = np.array([[0, 0, 0, 3, 3], [0, 1, 1, 3, 3]], np.float64)
    g = np.array([2.0, 5.0]).reshape(2, 1, 1, 1)
    custom, autodiff = _grads(lambda x, vjp: roi_max_pool(x, boxes, 1, vjp=vjp), x, g)
    want = np.zeros_like(x)
    want[0, 0, 1, 2] = 7.0  # both ROIs route to the same first maximum, and add up
    np.testing.assert_array_equal(custom, want)
    np.testing.assert_array_equal(autodiff, want)


def test_roi_max_pool_with_traced_boxes():
    # Boxes computed inside jit (e.g. by a region-proposal head) are fine: bins are masks.
    x = _unique(2, 2, 8, 8)

    @jax.jit
    def f(x, shift):
        boxes = jnp.asarray(BOXES[:2]) + jnp.array([[0.0, 1.0, 1.0, 1.0, 1.0]]) * shift
        return roi_max_pool(x, boxes, 2)

    shifted = BOXES[:2] + np.array([0.0, 1.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(f(x, 1.0), np_roi_pool(x, shifted, (2, 2), 1.0)[0])


def test_roi_max_pool_accumulates_over_boxes_on_the_same_image():
    x = _unique(3, 1, 5, 5)
    boxes = np.array([[2, 0, 0, 4, 4], [2, 0, 0, 4, 4], [0, 0, 0, 1, 1]], np.float64)
    dx = jax.jit(jax.grad(lambda x: jnp.sum(roi_max_pool(x, boxes, 1))))(x)
    assert dx[2].sum() == 2.0 and dx[0].sum() == 1.0 and dx[1].sum() == 0.0
    assert dx[2, 0].reshape(-1)[np.argmax(x[2, 0])] == 2.0


def test_roi_max_pool_errors():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"`boxes` must have shape \(K, 5\)"):
        roi_max_pool(x, np.zeros((2, 4)), 2)
    with pytest.raises(ValueError, match=r"`x` must be 4-D"):
        roi_max_pool(np.zeros((1, 1, 4)), np.zeros((2, 5)), 2)
    with pytest.raises(ValueError, match="`spatial_scale` must be a positive number, got 0.0"):
        roi_max_pool(x, np.zeros((2, 5)), 2, spatial_scale=0.0)
    with pytest.raises(TypeError, match="`spatial_scale` must be a number"):
        roi_max_pool(x, np.zeros((2, 5)), 2, spatial_scale=None)
    with pytest.raises(ValueError, match="`output_size` entries must be >= 1"):
        roi_max_pool(x, np.zeros((2, 5)), (0, 2))
    with pytest.raises(DTypeError, match="`boxes` must have a floating dtype"):
        roi_max_pool(x, np.zeros((2, 5), np.int32), 2)


def test_all_ops_keep_float32():
    x = _rand(2, 4, 6, 6).astype(np.float32)
    ops = [
        lambda x: lp_pool(x, 2, 2),
        lambda x: maxout(x, 2),
        global_avg_pool,
        global_max_pool,
        lambda x: adaptive_avg_pool(x, 4),
        lambda x: adaptive_max_pool(x, 4),
        spatial_pyramid_pool,
        lambda x: roi_max_pool(x, BOXES[:2].astype(np.float32), 2),
    ]
    for op in ops:
        out, grad = jax.eval_shape(jax.value_and_grad(lambda x, op=op: op(x).sum()), x)
        assert out.dtype == grad.dtype == jnp.float32
    dx = jax.jit(jax.grad(lambda x: jnp.sum(adaptive_avg_pool(x, 4))))(x)
    np.testing.assert_allclose(float(jnp.sum(dx)), 2 * 4 * 16, rtol=1e-5)


def test_lax_is_not_scattering_in_backward_rules():
    # The hand-written rules use masks, pads and dots: no scatter in the backward jaxpr.
    x = _rand(2, 4, 6, 6)
    ops = [
        lambda x: lp_pool(x, 2, 3, 2, "SAME"),
        lambda x: maxout(x, 2),
        global_max_pool,
        lambda x: adaptive_max_pool(x, (4, 3)),
        lambda x: adaptive_avg_pool(x, (4, 3)),
        lambda x: roi_max_pool(x, BOXES, 2),
    ]
    for op in ops:
        jaxpr = str(jax.make_jaxpr(jax.grad(lambda x, op=op: jnp.sum(op(x))))(x))
        assert "scatter" not in jaxpr, jaxpr


def test_roi_max_pool_out_of_range_batch_index_reads_nan_and_gets_no_gradient():
    x = _unique(2, 1, 4, 4)
    boxes = np.array([[-1, 0, 0, 3, 3], [2, 0, 0, 3, 3], [1, 0, 0, 3, 3]], np.float64)
    y, dx = jax.jit(jax.value_and_grad(lambda x: roi_max_pool(x, boxes, 1)[2, 0, 0, 0]))(x)
    out = jax.jit(lambda x: roi_max_pool(x, boxes, 1))(x)
    assert np.isnan(out[:2]).all() and y == x[1].max()
    assert dx.sum() == 1.0 and dx[0].sum() == 0.0
