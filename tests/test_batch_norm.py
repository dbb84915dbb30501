"""Specification of fconv.ops.batch_norm: training-mode statistics and the hand-written VJP."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fconv.ops import DTypeError, batch_norm
from fconv.testing import check_vjp


@st.composite
def bn_configs(draw):
    """Random input rank 2-5, any non-batch channel axis, batch 1-4 (M >= 2 entries)."""
    rank = draw(st.integers(2, 5))
    shape = [draw(st.integers(1, 4))] + [draw(st.integers(1, 4)) for _ in range(rank - 1)]
    axis = draw(st.integers(1, rank - 1))
    if np.prod(shape) // shape[axis] < 2:  # a variance needs two entries per channel
        shape[0] = 2
    negative = draw(st.booleans())
    return tuple(shape), axis - rank if negative else axis


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bn_configs())
def test_forward_and_vjp_of_all_three_outputs_match_autodiff(cfg):
    shape, axis = cfg
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) * 3.0 + 1.0
    c = shape[axis]
    scale, bias = rng.standard_normal(c), rng.standard_normal(c)
    outs, pullbacks = {}, {}
    for vjp in ("custom", "autodiff"):
        f = functools.partial(batch_norm, axis=axis, vjp=vjp)
        outs[vjp], pullbacks[vjp] = jax.vjp(f, x, scale, bias)
    ax = axis % len(shape)
    reduce = tuple(i for i in range(len(shape)) if i != ax)
    mean, var = x.mean(reduce, keepdims=True), x.var(reduce, keepdims=True)
    y = (x - mean) / np.sqrt(var + 1e-5) * np.expand_dims(scale, reduce)
    np.testing.assert_allclose(outs["custom"][0], y + np.expand_dims(bias, reduce), atol=1e-12)
    np.testing.assert_allclose(outs["custom"][1], mean.reshape(c), atol=1e-12)
    np.testing.assert_allclose(outs["custom"][2], var.reshape(c), atol=1e-12)
    # Cotangents on y and on the returned mean and variance (all three paths of the rule).
    cts = (rng.standard_normal(shape), rng.standard_normal(c), rng.standard_normal(c))
    chex.assert_trees_all_close(
        pullbacks["custom"](cts), pullbacks["autodiff"](cts), rtol=1e-10, atol=1e-10
    )


def test_check_vjp_against_finite_differences_and_grad_of_grad():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 5, 5))
    scale, bias = rng.standard_normal(3), rng.standard_normal(3)
    report = check_vjp(
        lambda x, s, b: batch_norm(x, s, b)[0],
        lambda x, s, b: batch_norm(x, s, b, vjp="autodiff")[0],
        x,
        scale,
        bias,
    )
    assert report.ok

    def hvp(vjp):
        loss = lambda x: (jnp.tanh(batch_norm(x, scale, bias, vjp=vjp)[0]) ** 2).sum()  # noqa: E731
        return jax.grad(lambda x: jnp.vdot(jax.grad(loss)(x), x))(x)

    chex.assert_trees_all_close(hvp("custom"), hvp("autodiff"), rtol=1e-9, atol=1e-9)


def test_normalized_output_has_zero_mean_unit_variance_and_gradient_sums_to_zero():
    # With scale 1, bias 0: every channel of y has mean 0 and variance v / (v + eps); the input
    # gradient through y is orthogonal to the constant per channel (shifting x changes nothing).
    x = jax.random.normal(jax.random.key(0), (8, 4, 6, 6), jnp.float32) * 5 + 2
    ones, zeros = jnp.ones(4), jnp.zeros(4)
    y, mean, var = jax.jit(batch_norm)(x, ones, zeros)
    np.testing.assert_allclose(y.mean((0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var((0, 2, 3)), var / (var + 1e-5), rtol=1e-5)
    g = jax.random.normal(jax.random.key(1), x.shape, jnp.float32)
    dx = jax.vjp(lambda x: batch_norm(x, ones, zeros)[0], x)[1](g)[0]
    np.testing.assert_allclose(dx.sum((0, 2, 3)), 0.0, atol=1e-3)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dtypes_follow_the_input_and_the_params(dtype):
    x = jax.random.normal(jax.random.key(0), (4, 3, 4, 4), dtype)
    scale, bias = jnp.ones(3, jnp.float32), jnp.zeros(3, jnp.float32)
    (y, mean, var), pullback = jax.vjp(batch_norm, x, scale, bias)
    assert y.dtype == dtype
    dx, ds, db = pullback((jnp.ones_like(y), jnp.zeros_like(mean), jnp.zeros_like(var)))
    assert (dx.dtype, ds.dtype, db.dtype) == (dtype, jnp.float32, jnp.float32)


def test_float16_statistics_are_taken_in_float32():
    # Squares of |x - mean| > 256 overflow float16: the statistics are float32, y is float16.
    x = (jax.random.normal(jax.random.key(0), (2, 4, 3, 3)) * 300).astype(jnp.float16)
    ones, zeros = jnp.ones(4, jnp.float32), jnp.zeros(4, jnp.float32)
    y, mean, var = batch_norm(x, ones, zeros)
    assert y.dtype == jnp.float16 and mean.dtype == var.dtype == jnp.float32
    x32 = np.asarray(x, np.float32)
    want = (x32 - x32.mean((0, 2, 3), keepdims=True)) / np.sqrt(
        x32.var((0, 2, 3), keepdims=True) + 1e-5
    )
    np.testing.assert_allclose(np.asarray(y, np.float32), want, atol=2e-3)
    np.testing.assert_allclose(var, x32.var((0, 2, 3)), rtol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_backward_matches_autodiff_of_the_float32_statistics(dtype):
    # x near 500: a half-precision x - mean would lose the digits the mean cancels; the rule
    # recomputes it in float32, as the forward does, so it agrees with autodiff of the forward.
    x = (500 + 2 * jax.random.normal(jax.random.key(0), (16, 3, 8, 8))).astype(dtype)
    g = jax.random.normal(jax.random.key(1), x.shape).astype(dtype)
    ones, zeros = jnp.ones(3), jnp.zeros(3)
    dx = {
        vjp: np.asarray(
            jax.vjp(lambda x, v=vjp: batch_norm(x, ones, zeros, vjp=v)[0], x)[1](g)[0], np.float32
        )
        for vjp in ("custom", "autodiff")
    }
    # (a half-precision x - mean gave 0.14% (float16) and 0.38% (bfloat16) here)
    assert np.linalg.norm(dx["custom"] - dx["autodiff"]) < 1e-5 * np.linalg.norm(dx["autodiff"])


def test_float16_backward_stays_finite_with_many_entries_and_large_gradients():
    # M = 64 * 32 * 32 = 65536 exceeds float16's range: the rule only ever divides by M and
    # keeps its sums in float32, so the gradient stays finite and close to autodiff's.
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((64, 2, 32, 32)), jnp.float16)
    g = jnp.asarray(rng.standard_normal(x.shape) * 64, jnp.float16)
    ones, zeros = jnp.ones(2, jnp.float32), jnp.zeros(2, jnp.float32)
    cts = (g, jnp.zeros(2, jnp.float32), jnp.zeros(2, jnp.float32))  # float32 statistics
    grads = {
        vjp: jax.vjp(functools.partial(batch_norm, vjp=vjp), x, ones, zeros)[1](cts)
        for vjp in ("custom", "autodiff")
    }
    dx = np.asarray(grads["custom"][0], np.float32)
    assert np.isfinite(dx).all()
    want = np.asarray(grads["autodiff"][0], np.float32)
    np.testing.assert_allclose(dx, want, atol=0.05 * np.abs(want).max())


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: batch_norm(jnp.ones((2, 3)), jnp.ones(3), jnp.ones(3), axis=0), "non-batch"),
        (lambda: batch_norm(jnp.ones((2, 3)), jnp.ones(3), jnp.ones(3), axis=2), "non-batch"),
        (lambda: batch_norm(jnp.ones((2, 3)), jnp.ones(4), jnp.ones(3)), r"`scale`.*\(3,\)"),
        (lambda: batch_norm(jnp.ones((2, 3)), jnp.ones(3), jnp.ones(3), eps=0.0), "eps"),
        (lambda: batch_norm(jnp.ones((2, 3)), jnp.ones(3), jnp.ones(3), vjp="x"), "vjp"),
    ],
)
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_integer_input_raises():
    with pytest.raises(DTypeError):
        batch_norm(jnp.ones((2, 3), jnp.int32), jnp.ones(3), jnp.ones(3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(axis=1.0), "`axis` must be an int"),
        (dict(eps=jnp.float32(1e-5)), "`eps` must be a Python or NumPy number"),
    ],
)
def test_malformed_arguments_raise_type_error(kwargs, match):
    with pytest.raises(TypeError, match=match):
        batch_norm(jnp.ones((2, 3)), jnp.ones(3), jnp.zeros(3), **kwargs)


def test_scale_and_bias_may_be_lists():
    y, _, _ = batch_norm(jnp.arange(6.0).reshape(2, 3), [1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(y, [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], atol=1e-5)


def test_batchnorm_layer_trains_through_the_hand_written_rule():
    from fconv.layers import BatchNorm, default_vjp

    x = jnp.ones((4, 3, 2, 2))
    for vjp, expected in (("custom", True), ("autodiff", False)):
        with default_vjp(vjp):
            layer = BatchNorm()
        _, params = layer.init(jax.random.key(0), x.shape)

        def loss(params, layer=layer):
            return layer.apply(params, x, train=True, state=layer.init_state(x.shape))[0].sum()

        jaxpr = str(jax.make_jaxpr(loss)(params))
        assert ("custom_vjp_call" in jaxpr) == expected, vjp
