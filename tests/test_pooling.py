"""Specification of fconv.ops.max_pool and avg_pool: forward, argmax routing, divisors."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fconv.ops import DTypeError, avg_pool, max_pool
from fconv.testing import check_vjp


@st.composite
def pool_configs(draw):
    """Random pool: rank 1-3, overlapping or not, every padding kind, optional ties."""
    n = draw(st.integers(1, 3))
    window = tuple(draw(st.integers(1, 3)) for _ in range(n))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(n))
    size = tuple(draw(st.integers(k, k + 5)) for k in window)
    kind = draw(st.sampled_from(["VALID", "SAME", "explicit"]))
    if kind == "explicit":
        padding = tuple((draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1))) for k in window)
    else:
        padding = kind
    pads = ref.pads_for(padding, size, window, stride)
    if any(max(p) >= k for p, k in zip(pads, window)):
        padding, pads = "VALID", [(0, 0)] * n
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), *size)
    ties = draw(st.booleans())
    return dict(shape=shape, window=window, stride=stride, padding=padding, pads=pads, ties=ties)


def _input(cfg, seed=0):
    x = np.random.default_rng(seed).standard_normal(cfg["shape"])
    # ReLU-like zeros and small integers make ties everywhere.
    return np.maximum(np.round(x), 0.0) if cfg["ties"] else x


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pool_configs(), st.booleans())
def test_pools_random_configuration_forward_and_gradient_match_autodiff(cfg, include_pad):
    x = _input(cfg)
    args = (cfg["window"], cfg["stride"], cfg["padding"])

    @jax.jit
    def everything(x, g_max, g_avg):
        out = []
        for vjp in ("custom", "autodiff"):
            mp = functools.partial(max_pool, vjp=vjp)
            ap = functools.partial(avg_pool, count_include_pad=include_pad, vjp=vjp)
            y_max, pb_max = jax.vjp(lambda x, mp=mp: mp(x, *args), x)
            y_avg, pb_avg = jax.vjp(lambda x, ap=ap: ap(x, *args), x)
            out.append((y_max, pb_max(g_max)[0], y_avg, pb_avg(g_avg)[0]))
        return out

    want_max = ref.pool(x, cfg["window"], cfg["stride"], cfg["pads"], "max")
    want_avg = ref.pool(x, cfg["window"], cfg["stride"], cfg["pads"], "avg", include_pad)
    rng = np.random.default_rng(1)
    g = rng.standard_normal(want_max.shape)
    (ym, dm, ya, da), (ym_ref, dm_ref, ya_ref, da_ref) = everything(x, g, g)
    np.testing.assert_allclose(ym, want_max, rtol=1e-12)
    np.testing.assert_allclose(ya, want_avg, rtol=1e-12, atol=1e-12)
    # Argmax routing equals select_and_scatter's, ties and -inf padding included: each output
    # gradient lands on exactly one input (the sum is preserved exactly).
    np.testing.assert_allclose(dm, dm_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(da, da_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ym_ref, ym, rtol=0)
    np.testing.assert_allclose(ya_ref, ya, rtol=1e-12)


def test_max_pool_hand_computed_gradient_non_overlapping():
    x = jnp.array(
        [[[[1.0, 2.0, 0.0, 0.0], [4.0, 3.0, 0.0, 0.0], [5.0, 5.0, 1.0, 9.0], [5.0, 5.0, 9.0, 1.0]]]]
    )
    dx = jax.grad(lambda x: (max_pool(x, 2) * jnp.array([[[[1.0, 2.0], [3.0, 4.0]]]])).sum())(x)
    # Windows: max 4 at (1,0); all-zero window -> first cell (0,2); tie of 5s -> first (2,0);
    # tie of 9s -> first in row-major order (2,3).
    want = np.zeros((4, 4))
    want[1, 0], want[0, 2], want[2, 0], want[2, 3] = 1.0, 2.0, 3.0, 4.0
    np.testing.assert_array_equal(dx[0, 0], want)


def test_max_pool_overlapping_windows_add_up():
    # 1-D, window 3, stride 1: the 9 is the max of all three windows that contain it.
    x = jnp.array([[[0.0, 1.0, 9.0, 2.0, 0.0]]])
    dx = jax.grad(lambda x: max_pool(x, 3, 1).sum())(x)
    np.testing.assert_array_equal(dx[0, 0], [0.0, 0.0, 3.0, 0.0, 0.0])


def test_max_pool_ties_route_once_not_to_every_equal_cell():
    x = jnp.zeros((1, 1, 4, 4))  # ReLU zeros: every cell ties
    dx = jax.grad(lambda x: max_pool(x, 2, 1).sum())(x)
    dx_ref = jax.grad(lambda x: max_pool(x, 2, 1, vjp="autodiff").sum())(x)
    np.testing.assert_array_equal(dx, dx_ref)
    assert float(dx.sum()) == 9.0  # 3 x 3 windows, one unit each: an equality mask would give 36


def test_max_pool_padding_is_minus_infinity():
    x = -jnp.ones((1, 1, 2, 2))
    y = max_pool(x, 2, 1, padding=1)
    np.testing.assert_array_equal(y, -np.ones((1, 1, 3, 3)))  # padding never wins


def test_avg_pool_both_divisor_modes_at_padded_borders():
    x = jnp.ones((1, 1, 3, 3))
    inc = avg_pool(x, 3, 1, padding=1, count_include_pad=True)
    exc = avg_pool(x, 3, 1, padding=1, count_include_pad=False)
    np.testing.assert_allclose(
        inc[0, 0], [[4 / 9, 6 / 9, 4 / 9], [6 / 9, 1, 6 / 9], [4 / 9, 6 / 9, 4 / 9]]
    )
    np.testing.assert_allclose(exc[0, 0], np.ones((3, 3)))
    # Gradient of the corner output flows to the 4 real cells, each with 1/4 (exclude) or 1/9.
    g = jnp.zeros((1, 1, 3, 3)).at[0, 0, 0, 0].set(1.0)
    d_exc = jax.grad(lambda x: (avg_pool(x, 3, 1, 1, count_include_pad=False) * g).sum())(x)
    d_inc = jax.grad(lambda x: (avg_pool(x, 3, 1, 1) * g).sum())(x)
    np.testing.assert_allclose(d_exc[0, 0, :2, :2], np.full((2, 2), 0.25))
    np.testing.assert_allclose(d_inc[0, 0, :2, :2], np.full((2, 2), 1 / 9))
    assert float(d_exc[0, 0, 2:].sum() + d_exc[0, 0, :, 2:].sum()) == 0.0


@pytest.mark.parametrize("op", [max_pool, avg_pool])
def test_pools_pass_check_vjp_with_finite_differences(op):
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6))  # unique values: no ties
    f = functools.partial(op, window=3, stride=2, padding="SAME")
    report = check_vjp(f, functools.partial(f, vjp="autodiff"), x)
    assert report.ok and report.rel_err[0] <= 1e-12


class TestPoolTransforms(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_max_pool_grad_of_grad_and_channels_last(self):
        x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 6, 6)))

        def loss(x, vjp="custom"):
            return (jnp.sin(max_pool(x, 3, 2, "SAME", vjp=vjp)) ** 2).sum()

        hvp = lambda vjp: jax.grad(  # noqa: E731
            lambda x: jnp.vdot(jax.grad(loss)(x, vjp), x)
        )(x)
        # Off CPU, JAX's own second derivative of reduce_window(max) runs at reduced precision
        # ("missing XLA support for pair-reductions"): the reference, not fconv, is loose there.
        rtol = 1e-12 if jax.default_backend() == "cpu" else 1e-2
        chex.assert_trees_all_close(
            self.variant(hvp, static_argnums=0)("custom"), hvp("autodiff"), rtol=rtol
        )
        y_last = max_pool(jnp.moveaxis(x, 1, -1), 3, 2, "SAME", layout="channels_last")
        chex.assert_trees_all_close(jnp.moveaxis(y_last, -1, 1), max_pool(x, 3, 2, "SAME"))

    def test_vmap_and_bfloat16(self):
        xs = jnp.asarray(np.random.default_rng(1).standard_normal((4, 2, 3, 6, 6)), jnp.bfloat16)
        dx = jax.vmap(jax.grad(lambda x: max_pool(x, 2).astype(jnp.float32).sum()))(xs)
        dref = jax.vmap(
            jax.grad(lambda x: max_pool(x, 2, vjp="autodiff").astype(jnp.float32).sum())
        )(xs)
        assert dx.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(dx, np.float32), np.asarray(dref, np.float32))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: max_pool(jnp.ones((1, 1, 4, 4)), 0), "`window`"),
        (lambda: max_pool(jnp.ones((1, 1, 4, 4)), 2, stride=(1, 0)), "`stride`"),
        (lambda: max_pool(jnp.ones((1, 1, 4, 4)), 5), "larger than the padded input"),
        (lambda: max_pool(jnp.ones((1, 1, 4, 4)), 2, padding=2), "pad of 2 >= the window"),
        (lambda: max_pool(jnp.ones((4, 4)), 2), "3-, 4- or 5-D"),
        (lambda: avg_pool(jnp.ones((1, 1, 4, 4)), 2, padding="valid-ish"), "'VALID', 'SAME'"),
        (lambda: avg_pool(jnp.ones((1, 1, 4, 4)), (2, 2, 2)), "one entry per spatial"),
    ],
)
def test_bad_pool_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_avg_pool_count_include_pad_must_be_a_bool():
    for bad in ("no", None, 1):
        with pytest.raises(TypeError, match="`count_include_pad` must be a bool"):
            avg_pool(jnp.ones((1, 1, 3, 3)), 2, 1, 1, count_include_pad=bad)


def test_integer_input_to_pool_raises():
    with pytest.raises(DTypeError, match="floating dtype"):
        max_pool(jnp.ones((1, 1, 4, 4), jnp.int32), 2)


def test_max_pool_is_invariant_to_small_shifts_inside_a_window():
    # Lecture 001: pooling makes the representation approximately invariant to small
    # translations: a detector peak that moves within its 2x2 window leaves the output unchanged.
    x = np.zeros((1, 1, 6, 6))
    x[0, 0, 2, 2] = 5.0
    moved = np.roll(x, (1, 1), axis=(2, 3))  # (2, 2) -> (3, 3): same window
    np.testing.assert_array_equal(max_pool(x, 2), max_pool(moved, 2))
    far = np.roll(x, (2, 0), axis=(2, 3))  # into the next window: the output moves with it
    assert not np.array_equal(max_pool(x, 2), max_pool(far, 2))


@pytest.mark.parametrize("ties", [False, True])
def test_both_non_overlapping_backward_forms_route_identically(ties):
    # CPU uses the one-hot tiles form, other backends the offset loop: same first-max routing.
    from fconv.ops.pooling import PoolGeometry, _max_pool_bwd_offsets, _max_pool_bwd_tiles

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 8))
    x = np.maximum(np.round(x), 0.0) if ties else x
    geo = PoolGeometry((9, 8), (2, 2), (2, 2), ((0, 0), (0, 0)))
    y = max_pool(x, 2)
    g = rng.standard_normal(y.shape)
    tiles = _max_pool_bwd_tiles(jnp.asarray(x), jnp.asarray(g), geo)
    offsets = _max_pool_bwd_offsets(jnp.asarray(x), y, jnp.asarray(g), geo)
    np.testing.assert_array_equal(tiles, offsets)
    ref_dx = jax.vjp(lambda x: max_pool(x, 2, vjp="autodiff"), x)[1](g)[0]
    np.testing.assert_array_equal(tiles, ref_dx)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pool_configs())
def test_cpu_slice_forms_equal_the_reduce_window_forms(cfg):
    # The CPU forward (strided slices) and avg-pool backward (tile broadcast / separable pads)
    # compute the same maps as reduce_window and its interior-pad transpose, used elsewhere.
    from fconv.ops._window_slices import reduce_window_slices, window_sum_transpose_slices
    from fconv.ops.pooling import PoolGeometry, _reduce_window, _window_sum_transpose_lax

    x = jnp.asarray(_input(cfg))
    geo = PoolGeometry(tuple(cfg["shape"][2:]), cfg["window"], cfg["stride"], tuple(cfg["pads"]))
    np.testing.assert_array_equal(
        reduce_window_slices(x, -jnp.inf, jax.lax.max, geo),
        _reduce_window(x, -jnp.inf, jax.lax.max, geo),
    )
    np.testing.assert_allclose(
        reduce_window_slices(x, 0.0, jax.lax.add, geo),
        _reduce_window(x, 0.0, jax.lax.add, geo),
        rtol=1e-12,
        atol=1e-12,
    )
    t = jnp.asarray(np.random.default_rng(2).standard_normal((*x.shape[:2], *geo.out_spatial)))
    np.testing.assert_allclose(
        window_sum_transpose_slices(t, geo),
        _window_sum_transpose_lax(t, geo),
        rtol=1e-12,
        atol=1e-12,
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pool_configs())
def test_polyphase_backward_routes_exactly_like_the_offset_loop(cfg):
    # CPU routes strided overlapping windows phase by phase (plain shifts, then one interleave),
    # other backends with the offset loop (strided pads): the same first-max routing, bit for bit.
    from fconv.ops.pooling import PoolGeometry, _max_pool_bwd_offsets, _max_pool_bwd_phases

    x = jnp.asarray(_input(cfg))
    geo = PoolGeometry(tuple(cfg["shape"][2:]), cfg["window"], cfg["stride"], tuple(cfg["pads"]))
    y = max_pool(x, cfg["window"], cfg["stride"], cfg["padding"], vjp="autodiff")
    g = jnp.asarray(np.random.default_rng(4).standard_normal(y.shape))
    np.testing.assert_array_equal(
        _max_pool_bwd_phases(x, y, g, geo), _max_pool_bwd_offsets(x, y, g, geo)
    )


def test_cpu_pools_use_the_slice_forms_and_the_autodiff_twins_keep_reduce_window():
    x = jnp.zeros((2, 3, 8, 8))
    for op in (max_pool, avg_pool):
        custom = str(jax.make_jaxpr(lambda x, op=op: jax.vjp(lambda x: op(x, 3, 2), x))(x))
        twin = str(jax.make_jaxpr(lambda x, op=op: op(x, 3, 2, vjp="autodiff"))(x))
        assert "reduce_window" in twin
        if jax.default_backend() == "cpu":
            assert "reduce_window" not in custom and "select_and_scatter" not in custom
