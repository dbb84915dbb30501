"""Tests for fconv.init: fans, empirical moments of every initializer, bounds, dtypes, errors."""

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fconv.init as fi

KEY = jax.random.key(0)

# Shapes with 200k elements so sample variances are within ~1% of the truth. All have the same
# size because the samplers compile once per element count (see fconv.init._flat).
DENSE = (400, 500)  # (in, out): fan_in 400, fan_out 500
CONV2D = (50, 40, 10, 10)  # OIHW: fan_in 40*100, fan_out 50*100
SMALL = (4, 3, 3, 3)


# ----------------------------------------------------------------------------------------------
# compute_fans
# ----------------------------------------------------------------------------------------------


def test_compute_fans_dense_in_out():
    assert fi.compute_fans((256, 128)) == (256.0, 128.0)


@pytest.mark.parametrize(
    "shape, expected",
    [
        ((8, 3, 5), (15.0, 40.0)),  # conv1d (O, I, k)
        ((8, 3, 5, 7), (105.0, 280.0)),  # conv2d (O, I, kh, kw)
        ((8, 3, 2, 3, 4), (72.0, 192.0)),  # conv3d (O, I, kd, kh, kw)
        ((8, 3, 1, 1), (3.0, 8.0)),  # 1x1 conv behaves like dense
    ],
)
def test_compute_fans_conv_oihw(shape, expected):
    assert fi.compute_fans(shape) == expected


def test_compute_fans_grouped_conv_divides_fan_out_only():
    # Conv with in_channels=32, out_channels=64, groups=4: kernel (64, 32 // 4, 3, 3).
    shape = (64, 8, 3, 3)
    # groups=1 reading is PyTorch's: fan_out = O * prod(k) regardless of groups.
    assert fi.compute_fans(shape) == (8 * 9.0, 64 * 9.0)
    # Connectivity-correct: each input channel feeds only its group's 64 / 4 outputs.
    assert fi.compute_fans(shape, groups=4) == (8 * 9.0, 64 * 9.0 / 4)


def test_compute_fans_depthwise_conv():
    assert fi.compute_fans((16, 1, 3, 3), groups=16) == (9.0, 9.0)


def test_compute_fans_explicit_axes():
    # Dense stored (out, in) as in PyTorch's Linear.
    assert fi.compute_fans((10, 20), in_axis=1, out_axis=0) == (20.0, 10.0)
    # HWIO conv kernel (TensorFlow/Flax layout), negative axes.
    assert fi.compute_fans((3, 3, 16, 32), in_axis=-2, out_axis=-1) == (144.0, 288.0)


def test_compute_fans_rank1_is_its_size():
    assert fi.compute_fans((10,)) == (10.0, 10.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(shape=()), r"`shape` must have rank >= 1"),
        (dict(shape=(3, 4), in_axis=2), r"`in_axis` \(=2\) is out of range for a shape of rank 2"),
        (dict(shape=(3, 4), out_axis=-3), r"`out_axis` \(=-3\) is out of range"),
        (dict(shape=(3, 4), in_axis=1, out_axis=-1), r"`in_axis` and `out_axis` must differ"),
        (dict(shape=(6, 2, 3), groups=4), r"`groups` \(=4\) must be a positive divisor"),
        (dict(shape=(6, 2, 3), groups=0), r"`groups` \(=0\) must be a positive divisor"),
        (dict(shape=(3, -1)), r"`shape` must contain non-negative sizes"),
    ],
)
def test_compute_fans_bad_values_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fi.compute_fans(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(shape=5), r"`shape` must be a sequence of ints"),
        (dict(shape=(3, 2.0)), r"`shape` must contain only ints"),
        (dict(shape=(3, 4), groups=1.0), r"`groups` must be an int"),
        (dict(shape=(3, 4), in_axis=0.0), r"`in_axis` must be an int"),
    ],
)
def test_compute_fans_bad_types_raise(kwargs, match):
    with pytest.raises(TypeError, match=match):
        fi.compute_fans(**kwargs)


# ----------------------------------------------------------------------------------------------
# Empirical moments
# ----------------------------------------------------------------------------------------------


def _fans(shape):
    if len(shape) == 2:
        return shape[0], shape[1]
    rf = math.prod(shape[2:])
    return shape[1] * rf, shape[0] * rf


PRESETS = [
    # (factory, variance as a function of (fan_in, fan_out))
    (fi.glorot_uniform, lambda i, o: 2.0 / (i + o)),
    (fi.glorot_normal, lambda i, o: 2.0 / (i + o)),
    (fi.he_uniform, lambda i, o: 2.0 / i),
    (fi.he_normal, lambda i, o: 2.0 / i),
    (fi.lecun_uniform, lambda i, o: 1.0 / i),
    (fi.lecun_normal, lambda i, o: 1.0 / i),
]


@pytest.mark.parametrize("shape", [DENSE, CONV2D], ids=["dense", "conv2d"])
@pytest.mark.parametrize("factory, variance", PRESETS, ids=[p[0].__name__ for p in PRESETS])
def test_preset_empirical_variance(factory, variance, shape):
    x = np.asarray(factory()(KEY, shape), np.float64)
    target = variance(*_fans(shape))
    assert abs(x.mean()) < 0.02 * math.sqrt(target)
    assert x.var() == pytest.approx(target, rel=0.02)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["normal", "truncated_normal", "uniform"])
def test_variance_scaling_empirical_variance(mode, distribution):
    fan_in, fan_out = _fans(CONV2D)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    x = np.asarray(fi.variance_scaling(3.0, mode, distribution)(KEY, CONV2D), np.float64)
    assert x.var() == pytest.approx(3.0 / n, rel=0.02)


def test_variance_scaling_groups_changes_fan_out_variance():
    shape = (80, 25, 10, 10)  # groups=4 conv, in_channels=100
    x = np.asarray(fi.variance_scaling(1.0, "fan_out", "normal", groups=4)(KEY, shape), np.float64)
    assert x.var() == pytest.approx(1.0 / (80 * 100 / 4), rel=0.02)


def test_variance_scaling_explicit_axes_hwio():
    shape = (10, 10, 40, 50)  # HWIO: fan_in 4000
    init = fi.he_normal(in_axis=2, out_axis=3)
    x = np.asarray(init(KEY, shape), np.float64)
    assert x.var() == pytest.approx(2.0 / 4000, rel=0.02)


def test_normal_empirical_moments():
    x = np.asarray(fi.normal(0.3)(KEY, DENSE), np.float64)
    assert abs(x.mean()) < 0.003
    assert x.std() == pytest.approx(0.3, rel=0.01)


def test_uniform_bounds_and_moments():
    x = np.asarray(fi.uniform(0.5)(KEY, DENSE), np.float64)
    assert x.min() >= 0.0 and x.max() < 0.5
    assert x.mean() == pytest.approx(0.25, rel=0.01)
    assert x.var() == pytest.approx(0.5**2 / 12, rel=0.02)


def test_variance_scaling_uniform_bounds():
    # U[-limit, limit] with limit = sqrt(3 * scale / n); samples reach close to the limit.
    limit = math.sqrt(3.0 * 2.0 / 400)
    x = np.asarray(fi.he_uniform()(KEY, DENSE), np.float64)
    assert np.all(np.abs(x) <= limit)
    assert np.abs(x).max() > 0.999 * limit


def test_variance_scaling_truncated_within_two_sigma():
    variance = 1.0 / 400
    sigma0 = math.sqrt(variance) / 0.87962566103423978  # pre-truncation sigma
    x = np.asarray(fi.variance_scaling(1.0, "fan_in", "truncated_normal")(KEY, DENSE), np.float64)
    assert np.all(np.abs(x) <= 2 * sigma0 * (1 + 1e-6))
    assert np.abs(x).max() > 0.99 * 2 * sigma0
    assert x.std() == pytest.approx(math.sqrt(variance), rel=0.01)


@pytest.mark.parametrize("lower, upper", [(-2.0, 2.0), (-1.0, 3.0), (-0.5, 0.5)])
def test_truncated_normal_has_requested_stddev_and_bounds(lower, upper):
    stddev = 0.1
    x = np.asarray(fi.truncated_normal(stddev, lower=lower, upper=upper)(KEY, DENSE), np.float64)
    assert x.std() == pytest.approx(stddev, rel=0.01)
    sigma0 = stddev / fi._truncated_std(lower, upper)
    assert x.min() >= lower * sigma0 * (1 + 1e-6)
    assert x.max() <= upper * sigma0 * (1 + 1e-6)


@pytest.mark.parametrize("lower, upper", [(-5e-5, 5e-5), (0.0, 1e-4)])
def test_truncated_normal_accepts_narrow_bounds_near_zero(lower, upper):
    x = np.asarray(fi.truncated_normal(1.0, lower=lower, upper=upper)(KEY, DENSE), np.float64)
    assert x.std() == pytest.approx(1.0, rel=0.02)


def test_truncated_normal_far_in_a_tail_is_a_clear_error():
    # [10, 11] sigma: erf rounds both bounds to 1 (float64 erf too: the mass needs erfc).
    assert fi._truncated_std(10.0, 11.0) == pytest.approx(0.0971, rel=0.01)
    with pytest.raises(ValueError, match=r"too far in one tail to sample in float32"):
        fi.truncated_normal(0.5, lower=10.0, upper=11.0)(KEY, DENSE)
    with pytest.raises(ValueError, match="mass there underflows float64"):
        fi.truncated_normal(0.5, lower=-41.0, upper=-40.0)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: fi.he_normal(groups=0), ValueError, "`groups` must be >= 1, got 0"),
        (lambda: fi.he_normal(groups="2"), TypeError, "`groups` must be an int"),
        (lambda: fi.glorot_uniform(in_axis=1.0), TypeError, "`in_axis` must be an int or None"),
        (lambda: fi.constant("a"), TypeError, "`value` must be a number, got 'a'"),
        (lambda: fi.constant(None), TypeError, "`value` must be a number, got None"),
    ],
)
def test_initializer_arguments_are_checked_at_construction(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_truncated_std_matches_jax_constant():
    assert fi._truncated_std(-2.0, 2.0) == pytest.approx(0.87962566103423978, rel=1e-12)


# ----------------------------------------------------------------------------------------------
# Constants, dtypes, determinism, jit
# ----------------------------------------------------------------------------------------------


def test_constant_zeros_ones_values():
    np.testing.assert_array_equal(fi.constant(0.1)(KEY, (2, 3)), np.full((2, 3), 0.1, np.float32))
    np.testing.assert_array_equal(fi.zeros(KEY, (4,)), np.zeros(4, np.float32))
    np.testing.assert_array_equal(fi.ones(None, (1, 2)), np.ones((1, 2), np.float32))


RANDOM_INITS = [
    fi.uniform(),
    fi.normal(),
    fi.truncated_normal(),
    fi.glorot_uniform(),
    fi.glorot_normal(),
    fi.he_normal(),
    fi.lecun_uniform(),
    fi.variance_scaling(1.0, "fan_avg", "truncated_normal"),
]


@pytest.mark.parametrize("init", RANDOM_INITS)
def test_random_initializers_default_float32_under_x64(init):
    # conftest enables x64; the default must still be float32.
    x = init(KEY, SMALL)
    assert x.dtype == jnp.float32
    assert x.shape == SMALL


@pytest.mark.parametrize(
    "init, dtype",
    [
        # Each sampler (uniform, normal, truncated normal) meets two non-default dtypes.
        (fi.uniform(), jnp.float16),
        (fi.glorot_uniform(), jnp.float64),
        (fi.normal(), jnp.bfloat16),
        (fi.he_normal(), jnp.float64),
        (fi.truncated_normal(), jnp.float16),
        (fi.variance_scaling(1.0, "fan_in", "truncated_normal"), jnp.bfloat16),
    ],
)
def test_random_initializers_respect_dtype(init, dtype):
    x = init(KEY, SMALL, dtype)
    assert x.dtype == dtype
    assert np.all(np.isfinite(np.asarray(x, np.float64)))


@pytest.mark.parametrize("init", [fi.zeros, fi.ones, fi.constant(3)])
def test_constant_initializers_accept_int_dtype(init):
    assert init(KEY, (2,), jnp.int32).dtype == jnp.int32


def test_aliases_are_the_same_functions():
    assert fi.xavier_uniform is fi.glorot_uniform
    assert fi.xavier_normal is fi.glorot_normal
    assert fi.kaiming_uniform is fi.he_uniform
    assert fi.kaiming_normal is fi.he_normal


def test_same_key_same_values_different_key_different_values():
    init = fi.he_normal()
    a, b = init(KEY, SMALL), init(KEY, SMALL)
    c = init(jax.random.key(1), SMALL)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_legacy_uint32_key_accepted():
    x = fi.glorot_uniform()(jax.random.PRNGKey(0), (3, 4))
    assert x.shape == (3, 4)


def test_initializer_under_jit():
    init = fi.he_uniform()
    eager = init(KEY, (6, 3, 3, 3))
    jitted = jax.jit(lambda k: init(k, (6, 3, 3, 3)))(KEY)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: fi.variance_scaling(1.0, "fan_sum", "normal"), ValueError, r"`mode` must be one"),
        (lambda: fi.variance_scaling(1.0, "fan_in", "cauchy"), ValueError, r"`distribution`"),
        (lambda: fi.variance_scaling(0.0, "fan_in", "normal"), ValueError, r"`scale` must be > 0"),
        (lambda: fi.normal(-1.0), ValueError, r"`stddev` must be > 0, got -1.0"),
        (lambda: fi.uniform(0), ValueError, r"`scale` must be > 0"),
        (lambda: fi.truncated_normal(lower=1.0, upper=1.0), ValueError, r"`lower` \(=1.0\)"),
        (lambda: fi.truncated_normal(float("nan")), ValueError, r"`stddev` must be finite"),
        (lambda: fi.normal("0.1"), TypeError, r"`stddev` must be a real number"),
    ],
)
def test_factory_bad_arguments_raise(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_variance_scaling_rank0_shape_raises_on_call():
    with pytest.raises(ValueError, match=r"`shape` must have rank >= 1"):
        fi.glorot_uniform()(KEY, ())


def test_random_initializer_int_dtype_raises():
    with pytest.raises(TypeError, match=r"`dtype` must be a floating-point dtype"):
        fi.he_normal()(KEY, (3, 3), jnp.int32)


def test_bad_groups_raise_on_call():
    with pytest.raises(ValueError, match=r"`groups` \(=3\) must be a positive divisor"):
        fi.he_normal(groups=3)(KEY, (8, 2, 3, 3))


def test_docstring_examples():
    result = doctest.testmod(fi, extraglobs={"jax": jax, "jnp": jnp})
    assert result.attempted > 0 and result.failed == 0
