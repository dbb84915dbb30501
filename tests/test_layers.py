"""Tests for fconv.layers: contract, shapes, exact values, state, rng, the vjp switch, errors."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fconv.init as fi
from fconv import layers as L

KEY = jax.random.key(0)
SETTINGS = settings(max_examples=25, deadline=None)


def _randn(shape, seed=0):
    """Standard-normal float32 input from numpy (an eager jax.random draw compiles per shape)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _ones_conv(*args, **kwargs):
    return L.Conv(*args, w_init=fi.ones, b_init=fi.ones, **kwargs)


# ---------------------------------------------------------------------------------------------
# The contract
# ---------------------------------------------------------------------------------------------


def test_layer_unpacks_stax_style_and_is_frozen():
    layer = L.Conv(8, 3)
    init, apply = layer
    assert init is layer.init and apply is layer.apply
    with pytest.raises(dataclasses.FrozenInstanceError):
        layer.init = None


def test_layer_params_are_named_float32_dicts_even_with_x64():
    out_shape, params = L.Conv(8, 3).init(KEY, (-1, 3, 16, 16))
    assert out_shape == (-1, 8, 14, 14)
    assert set(params) == {"w", "b"}
    assert params["w"].shape == (8, 3, 3, 3) and params["w"].dtype == jnp.float32
    assert params["b"].dtype == jnp.float32
    assert L.Relu().init(KEY, (-1, 3))[1] == {}
    assert L.Conv(8, 3, bias=False).init(KEY, (1, 3, 4, 4))[1].keys() == {"w"}


def test_stateless_layer_returns_state_unchanged_when_given_one():
    layer = L.serial(L.Conv(2, 3), L.Relu())
    _, params = layer.init(KEY, (2, 1, 5, 5))
    state = layer.init_state((2, 1, 5, 5))
    assert state == ((), ())
    x = jnp.ones((2, 1, 5, 5), jnp.float32)
    y, new_state = layer.apply(params, x, state=state)
    np.testing.assert_array_equal(y, layer.apply(params, x))
    assert new_state == state


def test_output_shape_traces_without_drawing_params():
    net = L.serial(L.Conv(4, 3, padding="SAME"), L.MaxPool(2), L.Flatten(), L.Dense(5))
    assert L.output_shape(net, (-1, 1, 8, 8)) == (-1, 5)
    assert L.output_shape(net, (3, 1, 8, 8)) == (3, 5)


def test_apply_runs_inside_named_scope():
    layer = L.serial(L.Conv(2, 3), L.Relu(), L.MaxPool(2))
    _, params = layer.init(KEY, (1, 1, 6, 6))
    jaxpr = jax.make_jaxpr(lambda x: layer.apply(params, x))(jnp.ones((1, 1, 6, 6), jnp.float32))
    stacks = {str(e.source_info.name_stack) for e in jaxpr.jaxpr.eqns}
    assert any(s.startswith("fconv.Conv") for s in stacks)
    assert "fconv.Relu" in stacks
    assert any(s.startswith("fconv.MaxPool") for s in stacks)


def test_default_initializers_scale_with_fan_in():
    # He normal: var = 2 / fan_in, fan_in = C / groups * prod(K) = 16 / 4 * 9 = 36.
    _, params = L.Conv(64, 3, groups=4).init(KEY, (1, 16, 8, 8))
    assert params["w"].shape == (64, 4, 3, 3)
    assert abs(float(jnp.var(params["w"])) - 2 / 36) < 0.15 * 2 / 36
    # ConvTranspose: fan_in = C_in / groups * prod(K) = 32 / 2 * 4 = 64.
    _, params = L.ConvTranspose(64, 2, groups=2).init(KEY, (1, 32, 4, 4))
    assert params["w"].shape == (32, 32, 2, 2)
    assert abs(float(jnp.var(params["w"])) - 2 / 64) < 0.15 * 2 / 64
    _, params = L.Dense(256).init(KEY, (1, 128))
    assert abs(float(jnp.var(params["w"])) - 2 / 128) < 0.1 * 2 / 128


# ---------------------------------------------------------------------------------------------
# Exact values with ones weights
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rank, bias, expected",
    [
        (1, False, 3.0),  # 3 taps
        (1, True, 4.0),
        (2, False, 9.0),  # 3x3 taps
        (2, True, 10.0),
        (3, True, 28.0),  # 27 taps + 1
    ],
)
def test_conv_ones_kernel_valid_on_ones(rank, bias, expected):
    layer = _ones_conv(1, 3, bias=bias)
    shape = (2, 1) + (5,) * rank
    out_shape, params = layer.init(KEY, shape)
    y = layer.apply(params, jnp.ones(shape, jnp.float32))
    assert y.shape == out_shape == (2, 1) + (3,) * rank
    np.testing.assert_array_equal(y, np.full(y.shape, expected))


def test_conv_ones_kernel_same_padding_counts_taps_inside():
    layer = _ones_conv(1, 3, padding="SAME", bias=False)
    _, params = layer.init(KEY, (1, 1, 4, 4))
    y = layer.apply(params, jnp.ones((1, 1, 4, 4), jnp.float32))[0, 0]
    np.testing.assert_array_equal(
        y, [[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]]
    )  # corners see 2x2 inputs, edges 2x3, the interior 3x3


def test_conv_groups_keep_channels_apart():
    layer = _ones_conv(2, 1, groups=2, bias=False)
    _, params = layer.init(KEY, (1, 2, 1, 1))
    x = jnp.array([1.0, 10.0], jnp.float32).reshape(1, 2, 1, 1)
    np.testing.assert_array_equal(layer.apply(params, x).ravel(), [1.0, 10.0])


def test_conv_channels_last_equals_channels_first():
    first = L.Conv(4, (3, 2), stride=2, padding="SAME")
    last = L.Conv(4, (3, 2), stride=2, padding="SAME", layout="channels_last")
    _, params = first.init(KEY, (2, 3, 7, 6))
    x = _randn((2, 3, 7, 6))
    y = first.apply(params, x)
    params_last = {"w": jnp.transpose(params["w"], (2, 3, 1, 0)), "b": params["b"]}
    out_shape, _ = last.init(KEY, (2, 7, 6, 3))
    y_last = last.apply(params_last, jnp.moveaxis(x, 1, -1))
    assert out_shape == y_last.shape == (2, 4, 3, 4)
    np.testing.assert_allclose(jnp.moveaxis(y_last, -1, 1), y, rtol=1e-5, atol=1e-5)


def test_conv_transpose_ones_kernel_overlaps_add_up():
    layer = L.ConvTranspose(1, 3, w_init=fi.ones, bias=False)
    out_shape, params = layer.init(KEY, (1, 1, 3))
    assert params["w"].shape == (1, 1, 3)
    y = layer.apply(params, jnp.ones((1, 1, 3), jnp.float32))
    assert y.shape == out_shape == (1, 1, 5)
    np.testing.assert_array_equal(y.ravel(), [1, 2, 3, 2, 1])


def test_conv_transpose_stride_equal_kernel_tiles_the_output():
    layer = L.ConvTranspose(3, 2, stride=2, w_init=fi.ones, b_init=fi.ones)
    out_shape, params = layer.init(KEY, (1, 2, 3, 3))
    assert params["w"].shape == (2, 3, 2, 2)  # PyTorch layout (C_in, C_out / groups, *K)
    y = layer.apply(params, jnp.ones((1, 2, 3, 3), jnp.float32))
    assert y.shape == out_shape == (1, 3, 6, 6)
    np.testing.assert_array_equal(y, np.full(y.shape, 3.0))  # 2 input channels + bias


def test_dense_flatten_ones():
    net = L.serial(L.Flatten(), L.Dense(3, w_init=fi.ones, b_init=fi.ones))
    out_shape, params = net.init(KEY, (2, 2, 2, 2))
    assert params[1]["w"].shape == (8, 3)  # (in, out)
    y = net.apply(params, jnp.ones((2, 2, 2, 2), jnp.float32))
    assert y.shape == out_shape == (2, 3)
    np.testing.assert_array_equal(y, np.full((2, 3), 9.0))


def test_reshape_infers_minus_one():
    out_shape, _ = L.Reshape((4, -1)).init(KEY, (-1, 2, 4, 4))
    assert out_shape == (-1, 4, 8)
    y = L.Reshape((4, -1)).apply({}, jnp.arange(64.0).reshape(2, 2, 4, 4))
    assert y.shape == (2, 4, 8)


def test_pools_exact_values():
    x = jnp.arange(16.0, dtype=jnp.float32).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(L.MaxPool(2).apply({}, x)[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(L.AvgPool(2).apply({}, x)[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    # count_include_pad=False divides the corner window (one real cell and three pads) by 1.
    y = L.AvgPool(2, stride=2, padding=1, count_include_pad=False).apply({}, x)[0, 0]
    assert float(y[0, 0]) == 0.0 and float(y[2, 2]) == 15.0
    np.testing.assert_array_equal(L.GlobalAvgPool().apply({}, x), [[7.5]])
    np.testing.assert_array_equal(L.GlobalMaxPool().apply({}, x), [[15.0]])


def test_global_pools_channels_last_and_3d():
    x = jnp.arange(24.0, dtype=jnp.float32).reshape(1, 2, 3, 4)
    assert L.GlobalAvgPool().init(None, (-1, 2, 3, 4)) == ((-1, 2), {})
    np.testing.assert_allclose(L.GlobalAvgPool().apply({}, x), [[5.5, 17.5]])
    y = L.GlobalMaxPool(layout="channels_last").apply({}, jnp.moveaxis(x, 1, -1))
    np.testing.assert_array_equal(y, [[11.0, 23.0]])
    x3 = jnp.ones((2, 3, 2, 2, 2), jnp.float32)
    assert L.GlobalAvgPool().apply({}, x3).shape == (2, 3)


@pytest.mark.parametrize(
    "layer, fn",
    [
        (L.Relu(), jax.nn.relu),
        (L.LeakyRelu(0.2), lambda x: jax.nn.leaky_relu(x, 0.2)),
        (L.Elu(0.5), lambda x: jax.nn.elu(x, 0.5)),
        (L.Gelu(), lambda x: jax.nn.gelu(x, approximate=False)),
        (L.Gelu(approximate=True), lambda x: jax.nn.gelu(x, approximate=True)),
        (L.Sigmoid(), jax.nn.sigmoid),
        (L.Tanh(), jnp.tanh),
        (L.Softplus(), jax.nn.softplus),
        (L.LogSoftmax(), jax.nn.log_softmax),
        (L.Softmax(axis=1), lambda x: jax.nn.softmax(x, axis=1)),
    ],
)
def test_activations_match_jax_nn(layer, fn):
    x = jnp.linspace(-3.0, 3.0, 24, dtype=jnp.float32).reshape(2, 3, 4)
    out_shape, params = layer.init(KEY, (-1, 3, 4))
    assert out_shape == (-1, 3, 4) and params == {}
    np.testing.assert_allclose(layer.apply(params, x), fn(x), rtol=1e-6)


def test_leaky_relu_default_slope():
    np.testing.assert_allclose(L.LeakyRelu().apply({}, jnp.array([-2.0, 3.0])), [-0.02, 3.0])


# ---------------------------------------------------------------------------------------------
# Shape agreement: init's output shape == apply's real output shape == the textbook formula
# ---------------------------------------------------------------------------------------------


def _abstract_init(layer, input_shape):
    """``layer.init`` traced abstractly: its output shape and its params' ShapeDtypeStructs."""
    shapes = []

    def run(rng):
        out_shape, params = layer.init(rng, input_shape)
        shapes.append(out_shape)
        return params

    params = jax.eval_shape(run, KEY)
    return shapes[0], params


def _check_agreement(layer, x_shape):
    """init (batch -1 and real batch) and a real apply agree on the output shape.

    Params are numpy arrays of init's param shapes and dtypes (no eager random draws: each new
    shape would compile a sampler), so the only compiled program is the layer's own op.
    """
    out_any = L.output_shape(layer, (-1, *x_shape[1:]))
    out_shape, abstract = _abstract_init(layer, x_shape)
    params = jax.tree.map(lambda a: np.full(a.shape, 0.1, a.dtype), abstract)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(abstract))
    x = np.random.default_rng(0).standard_normal(x_shape).astype(np.float32)
    y = jax.jit(layer.apply)(params, x)  # one compile instead of one per primitive
    assert tuple(y.shape) == out_shape
    assert out_any == (-1, *out_shape[1:])
    return out_shape


def _pads(padding, size, window, stride):
    """Independent (lo, hi) of one spatial dim, for the expected-shape formulas."""
    if padding == "VALID":
        return 0, 0
    if padding == "FULL":
        return window - 1, window - 1
    if padding == "SAME":
        total = max((math.ceil(size / stride) - 1) * stride + window - size, 0)
        return total // 2, total - total // 2
    return padding


@st.composite
def conv_configs(draw):
    rank = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2, 3]))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = draw(st.integers(1, 2))
    dilated = [dilation * (k - 1) + 1 for k in kernel]
    spatial = tuple(draw(st.integers(k, k + 4)) for k in dilated)
    pad_kind = draw(st.sampled_from(["VALID", "SAME", "FULL", "pairs"]))
    pairs = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(rank))
    return {
        "rank": rank,
        "c_in": groups * draw(st.integers(1, 2)),
        "c_out": groups * draw(st.integers(1, 2)),
        "kernel": kernel,
        "stride": draw(st.integers(1, 3)),
        "padding": pairs if pad_kind == "pairs" else pad_kind,
        "dilation": dilation,
        "groups": groups,
        "spatial": spatial,
        "batch": draw(st.integers(1, 2)),
        "layout": draw(st.sampled_from(["channels_first", "channels_last"])),
    }


@SETTINGS
@given(conv_configs())
def test_conv_shape_agreement(cfg):
    layer = L.Conv(
        cfg["c_out"],
        cfg["kernel"],
        stride=cfg["stride"],
        padding=cfg["padding"],
        dilation=cfg["dilation"],
        groups=cfg["groups"],
        layout=cfg["layout"],
    )
    last = cfg["layout"] == "channels_last"
    c_in, spatial = cfg["c_in"], cfg["spatial"]
    x_shape = (cfg["batch"], *spatial, c_in) if last else (cfg["batch"], c_in, *spatial)
    out_shape = _check_agreement(layer, x_shape)
    expected = []
    for i, (n, k) in enumerate(zip(spatial, cfg["kernel"])):
        kd = cfg["dilation"] * (k - 1) + 1
        pad = cfg["padding"][i] if isinstance(cfg["padding"], tuple) else cfg["padding"]
        lo, hi = _pads(pad, n, kd, cfg["stride"])
        expected.append((n + lo + hi - kd) // cfg["stride"] + 1)
    c_out = cfg["c_out"]
    assert out_shape == (
        (cfg["batch"], *expected, c_out) if last else (cfg["batch"], c_out, *expected)
    )


@st.composite
def conv_transpose_configs(draw):
    rank = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2]))
    stride = draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["VALID", "SAME", 0, 1]))
    return {
        "rank": rank,
        "c_in": groups * draw(st.integers(1, 2)),
        "c_out": groups * draw(st.integers(1, 2)),
        "kernel": draw(st.integers(1, 3)),
        "stride": stride,
        "padding": padding,
        "output_padding": 0 if padding == "SAME" else draw(st.integers(0, stride - 1)),
        "dilation": draw(st.integers(1, 2)),
        "groups": groups,
        "spatial": tuple(draw(st.integers(1, 4)) for _ in range(rank)),
    }


@SETTINGS
@given(conv_transpose_configs())
def test_conv_transpose_shape_agreement(cfg):
    k, s, d, op = cfg["kernel"], cfg["stride"], cfg["dilation"], cfg["output_padding"]
    pad = {"VALID": 0, "SAME": None}.get(cfg["padding"], cfg["padding"])
    if pad is None:  # SAME: exactly M * s
        expected = tuple(m * s for m in cfg["spatial"])
    else:
        expected = tuple((m - 1) * s - 2 * pad + d * (k - 1) + op + 1 for m in cfg["spatial"])
    layer = L.ConvTranspose(
        cfg["c_out"],
        k,
        stride=s,
        padding=cfg["padding"],
        output_padding=op,
        dilation=d,
        groups=cfg["groups"],
    )
    x_shape = (2, cfg["c_in"], *cfg["spatial"])
    if min(expected) < 1:
        with pytest.raises(ValueError, match="output size"):
            layer.init(KEY, x_shape)
        return
    assert _check_agreement(layer, x_shape) == (2, cfg["c_out"], *expected)


@st.composite
def pool_configs(draw):
    rank = draw(st.integers(1, 3))
    window = draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["VALID", "SAME", "int"]))
    return {
        "kind": draw(st.sampled_from(["max", "avg"])),
        "window": window,
        "stride": draw(st.sampled_from([None, 1, 2, 3])),
        "padding": draw(st.integers(0, window - 1)) if padding == "int" else padding,
        "spatial": tuple(draw(st.integers(window, window + 4)) for _ in range(rank)),
    }


@SETTINGS
@given(pool_configs())
def test_pool_shape_agreement(cfg):
    make = L.MaxPool if cfg["kind"] == "max" else L.AvgPool
    layer = make(cfg["window"], cfg["stride"], cfg["padding"])
    k = cfg["window"]
    s = k if cfg["stride"] is None else cfg["stride"]
    expected = []
    for n in cfg["spatial"]:
        pad = cfg["padding"]
        lo, hi = (pad, pad) if isinstance(pad, int) else _pads(pad, n, k, s)
        expected.append((n + lo + hi - k) // s + 1)
    assert _check_agreement(layer, (2, 3, *cfg["spatial"])) == (2, 3, *expected)


@SETTINGS
@given(
    st.lists(st.integers(1, 4), min_size=1, max_size=4),
    st.integers(1, 5),
    st.booleans(),
)
def test_flatten_dense_shape_agreement(rest, features, bias):
    layer = L.serial(L.Flatten(), L.Dense(features, bias=bias))
    assert _check_agreement(layer, (3, *rest)) == (3, features)


# ---------------------------------------------------------------------------------------------
# Combinators
# ---------------------------------------------------------------------------------------------


def test_fan_out_parallel_fan_in():
    net = L.serial(
        L.FanOut(2),
        L.parallel(_ones_conv(2, 1, bias=False), L.Identity()),
        L.FanInConcat(axis=1),
    )
    out_shape, params = net.init(KEY, (-1, 1, 3, 3))
    assert out_shape == (-1, 3, 3, 3)
    x = jnp.full((2, 1, 3, 3), 2.0, jnp.float32)
    np.testing.assert_array_equal(net.apply(params, x), jnp.full((2, 3, 3, 3), 2.0))
    summed = L.serial(L.FanOut(3), L.FanInSum())
    assert summed.init(KEY, (-1, 4)) == ((-1, 4), ({}, {}))  # FanOut and FanInSum: no params
    np.testing.assert_array_equal(summed.apply(({}, {}), jnp.ones((2, 4))), jnp.full((2, 4), 3.0))


def test_residual_adds_block_and_shortcut():
    net = L.residual(_ones_conv(1, 3, padding="SAME", bias=False))
    out_shape, params = net.init(KEY, (1, 1, 3, 3))
    assert out_shape == (1, 1, 3, 3)
    y = net.apply(params, jnp.ones((1, 1, 3, 3), jnp.float32))
    assert float(y[0, 0, 1, 1]) == 10.0 and float(y[0, 0, 0, 0]) == 5.0  # 9 + 1 and 4 + 1


def test_serial_splits_rng_among_children():
    net = L.serial(L.Dropout(0.5), L.Dropout(0.5))
    _, params = net.init(KEY, (1, 1000))
    x = jnp.ones((1, 1000), jnp.float32)
    # Each dropout draws its own mask: survivors of both are scaled by 4.
    y = net.apply(params, x, rng=jax.random.key(1), train=True)
    assert set(np.unique(np.asarray(y)).tolist()) == {0.0, 4.0}
    assert 0.15 < float(jnp.mean(y == 4.0)) < 0.35
    first = net.apply(params, x, rng=jax.random.key(1), train=True)
    np.testing.assert_array_equal(y, first)  # deterministic given the key


def test_serial_threads_batchnorm_state_per_child():
    net = L.serial(L.Conv(2, 1), L.BatchNorm(), L.Relu(), L.parallel(L.BatchNorm()))
    with pytest.raises(TypeError, match="tuple of branch shapes"):
        net.init(KEY, (4, 1, 2, 2))
    net = L.serial(L.Conv(2, 1), L.BatchNorm(), L.Relu())
    _, params = net.init(KEY, (4, 1, 2, 2))
    state = net.init_state((4, 1, 2, 2))
    assert state[0] == () and state[2] == () and set(state[1]) == {"mean", "var"}
    x = _randn((4, 1, 2, 2))
    _, new_state = net.apply(params, x, train=True, state=state)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert not np.allclose(new_state[1]["mean"], state[1]["mean"])


# ---------------------------------------------------------------------------------------------
# Dropout and normalization
# ---------------------------------------------------------------------------------------------


def test_dropout_rate_is_the_drop_probability():
    layer = L.Dropout(0.9)
    x = jnp.ones((100, 1000), jnp.float32)
    y = layer.apply({}, x, rng=jax.random.key(3), train=True)
    zeros = float(jnp.mean(y == 0.0))
    assert 0.88 < zeros < 0.92  # about 90% dropped, not 10%
    survivors = np.asarray(y)[np.asarray(y) != 0.0]
    np.testing.assert_allclose(survivors, 1.0 / (1.0 - 0.9), rtol=1e-6)
    assert abs(float(jnp.mean(y)) - 1.0) < 0.05  # expectation preserved


def test_dropout_is_identity_without_training():
    x = _randn((4, 8))
    np.testing.assert_array_equal(L.Dropout(0.5).apply({}, x), x)
    np.testing.assert_array_equal(L.Dropout(0.0).apply({}, x, train=True), x)


def test_batchnorm_train_normalizes_and_updates_running_stats():
    bn = L.BatchNorm(momentum=0.9)
    _, params = bn.init(KEY, (8, 3, 4, 4))
    state = bn.init_state((8, 3, 4, 4))
    x = 2.0 + 3.0 * _randn((8, 3, 4, 4))
    y, new_state = bn.apply(params, x, train=True, state=state)
    np.testing.assert_allclose(jnp.mean(y, axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.var(y, axis=(0, 2, 3)), 1.0, rtol=1e-3)
    batch_mean, batch_var = jnp.mean(x, axis=(0, 2, 3)), jnp.var(x, axis=(0, 2, 3))
    np.testing.assert_allclose(new_state["mean"], 0.1 * batch_mean, rtol=1e-5)
    np.testing.assert_allclose(new_state["var"], 0.9 + 0.1 * batch_var, rtol=1e-5)
    # With state=None, train=True uses batch statistics and returns y only.
    np.testing.assert_allclose(bn.apply(params, x, train=True), y, rtol=1e-6)


def test_batchnorm_eval_uses_running_stats():
    bn = L.BatchNorm(eps=1e-5)
    params = {"scale": jnp.array([2.0, 1.0]), "b": jnp.array([0.5, -1.0])}
    state = {"mean": jnp.array([1.0, -1.0]), "var": jnp.array([4.0, 0.25])}
    x = jnp.ones((3, 2), jnp.float32)
    y, same_state = bn.apply(params, x, state=state)
    expected = (np.array([1.0, 1.0]) - [1.0, -1.0]) / np.sqrt(np.array([4.0, 0.25]) + 1e-5)
    # float32: the GPU's rsqrt is within a few ulp (1.2e-7 relative seen on an H200).
    want = np.broadcast_to(expected * [2.0, 1.0] + [0.5, -1.0], (3, 2))
    np.testing.assert_allclose(y, want, rtol=1e-6)
    assert same_state is state


def test_layernorm_and_groupnorm_values():
    x = _randn((2, 4, 3, 3))
    _, params = L.LayerNorm().init(KEY, x.shape)
    y = L.LayerNorm().apply(params, x)
    flat = x.reshape(2, -1)
    ref = (flat - flat.mean(1, keepdims=True)) / jnp.sqrt(flat.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y.reshape(2, -1), ref, atol=1e-5)
    np.testing.assert_allclose(L.GroupNorm(1).apply(params, x), y, atol=1e-6)
    g = L.GroupNorm(2).apply(params, x).reshape(2, 2, -1)
    np.testing.assert_allclose(g.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(g.var(-1), 1.0, rtol=1e-3)


# ---------------------------------------------------------------------------------------------
# The vjp switch
# ---------------------------------------------------------------------------------------------


def _uses_custom_vjp(layer, shape):
    _, params = layer.init(KEY, shape)
    x = jnp.ones(shape, jnp.float32)
    return "custom_vjp_call" in str(jax.make_jaxpr(lambda p: layer.apply(p, x))(params))


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: L.Conv(2, 3, **kw),
        lambda **kw: L.ConvTranspose(2, 3, **kw),
        lambda **kw: L.MaxPool(2, **kw),
        lambda **kw: L.AvgPool(2, **kw),
        lambda **kw: L.GlobalAvgPool(**kw),
        lambda **kw: L.GlobalMaxPool(**kw),
    ],
)
def test_default_vjp_switches_every_op_layer(make):
    shape = (1, 2, 6, 6)
    assert _uses_custom_vjp(make(), shape)
    assert not _uses_custom_vjp(make(vjp="autodiff"), shape)
    with L.default_vjp("autodiff"):
        built_inside = make()
        assert _uses_custom_vjp(make(vjp="custom"), shape)  # the keyword wins
    assert not _uses_custom_vjp(built_inside, shape)  # read at construction time
    assert _uses_custom_vjp(make(), shape)  # the default is restored


def test_default_vjp_none_leaves_the_default():
    with L.default_vjp("autodiff"), L.default_vjp(None):
        assert not _uses_custom_vjp(L.Conv(2, 3), (1, 1, 4, 4))


# ---------------------------------------------------------------------------------------------
# Errors: message = argument, requirement, value
# ---------------------------------------------------------------------------------------------


def test_dropout_without_rng_in_training_explains_the_fix():
    with pytest.raises(
        ValueError, match=r"pass rng=jax.random.key\(...\) to apply when train=True"
    ):
        L.Dropout(0.5).apply({}, jnp.ones((2, 3)), train=True)


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_dropout_rate_out_of_range(rate):
    with pytest.raises(ValueError, match=r"Dropout: `rate` is the probability of dropping"):
        L.Dropout(rate)


def test_dropout_rate_type():
    with pytest.raises(TypeError, match="`rate` must be a real number, got '0.5'"):
        L.Dropout("0.5")


def test_batchnorm_eval_without_state_explains_the_fix():
    bn = L.BatchNorm()
    _, params = bn.init(KEY, (2, 3))
    with pytest.raises(ValueError, match="needs its running statistics when train=False"):
        bn.apply(params, jnp.ones((2, 3)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"momentum": 1.0}, r"`momentum` must be in \[0, 1\), got 1.0"),
        ({"eps": 0.0}, "`eps` must be a finite number > 0, got 0.0"),
        ({"eps": float("nan")}, "`eps` must be a finite number > 0, got nan"),
        ({"axis": 0}, r"`axis` \(=0\) must name a non-batch axis"),
    ],
)
def test_batchnorm_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        L.BatchNorm(**kwargs).init(KEY, (2, 3))


@pytest.mark.parametrize("make", [L.LayerNorm, lambda **kw: L.GroupNorm(1, **kw)])
def test_norm_layers_reject_non_finite_eps(make):
    for eps in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="`eps` must be a finite number > 0"):
            make(eps=eps)


@pytest.mark.parametrize(
    "make", [L.LayerNorm, lambda: L.GroupNorm(2), L.BatchNorm], ids=["layer", "group", "batch"]
)
def test_norm_layers_normalize_large_float16_inputs(make):
    # |x - mean| > 256: squares overflow float16, so the statistics are taken in float32.
    layer = make()
    x = (jax.random.normal(KEY, (2, 4, 3, 3)) * 300).astype(jnp.float16)
    _, params = layer.init(KEY, x.shape)
    state = layer.init_state(x.shape)
    y = layer.apply(params, x, train=True, state=state)
    y = y[0] if isinstance(y, tuple) else y
    assert y.dtype == jnp.float16 and bool(jnp.all(jnp.isfinite(y)))
    assert float(jnp.std(y.astype(jnp.float32))) > 0.5  # normalized, not collapsed to 0


def test_dense_without_flatten_says_add_flatten():
    with pytest.raises(ValueError, match=r"add Flatten\(\) before Dense"):
        L.Dense(10).init(KEY, (2, 3, 4, 4))
    _, params = L.Dense(10).init(KEY, (2, 48))
    with pytest.raises(ValueError, match=r"got shape \(2, 3, 4, 4\); add Flatten\(\)"):
        L.Dense(10).apply(params, jnp.ones((2, 3, 4, 4)))


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: L.Conv(0, 3), ValueError, r"Conv: `out_channels` must be >= 1, got 0"),
        (lambda: L.Conv(4.0, 3), TypeError, r"Conv: `out_channels` must be an int, got 4.0"),
        (lambda: L.Conv(6, 3, groups=4), ValueError, r"`groups` \(=4\) must divide `out_chan"),
        (lambda: L.Conv(4, "3"), TypeError, r"Conv: `kernel_size` must be an int or a sequence"),
        (lambda: L.Conv(4, 3, stride=0), ValueError, r"Conv: `stride` entries must be >= 1"),
        (lambda: L.Conv2D(4, (3, 3, 3)), ValueError, r"Conv2D: `kernel_size` must be an int or 2"),
        (lambda: L.Conv(4, 3, padding="same-ish"), ValueError, "must be 'VALID', 'SAME' or"),
        (lambda: L.Conv(4, 3, layout="NCHW"), ValueError, r"Conv: `layout` must be one of"),
        (lambda: L.Conv(4, 3, vjp="manual"), ValueError, r"`vjp` must be 'custom', 'autodiff'"),
        (lambda: L.ConvTranspose(4, 3, output_padding=-1), ValueError, "`output_padding` entr"),
        (lambda: L.MaxPool(0), ValueError, r"MaxPool: `window` entries must be >= 1"),
        (lambda: L.AvgPool(2, padding="full!"), ValueError, r"AvgPool: `padding` string"),
        (lambda: L.GroupNorm(0), ValueError, r"GroupNorm: `num_groups` must be >= 1, got 0"),
        (lambda: L.FanOut(0), ValueError, r"FanOut: `n` must be >= 1, got 0"),
        (lambda: L.Reshape((2, -1, -1)), ValueError, "at most one -1"),
        (lambda: L.Reshape("23"), TypeError, "Reshape: `shape` must be a sequence of ints"),
        (lambda: L.LeakyRelu("0.1"), TypeError, "`negative_slope` must be a real number"),
        (lambda: L.AvgPool(2, count_include_pad="no"), TypeError, "`count_include_pad` must be"),
        (lambda: L.Gelu(approximate="tanh"), TypeError, "Gelu: `approximate` must be a bool"),
        (lambda: L.serial(L.Relu(), L.Relu), TypeError, r"argument 1 must be a Layer \(call"),
    ],
)
def test_constructor_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    "layer, shape, match",
    [
        (L.Conv(4, 3, groups=2), (1, 3, 8, 8), r"`groups` \(=2\) must divide the input channels"),
        (L.Conv(4, (3, 3)), (1, 3, 8), r"`kernel_size` must have one entry per spatial dim"),
        (L.Conv(4, 5), (1, 3, 3, 3), "kernel of effective size 5 .* larger than the padded"),
        (L.Conv(4, 3), (1, 3), r"input must be 3-, 4- or 5-D"),
        (L.Conv2D(4, 3), (1, 3, 8), r"Conv2D expects a 4-D input \(N, C, H, W\)"),
        (L.Conv3D(4, 3), (1, 3, 8, 8), r"Conv3D expects a 5-D input"),
        (L.ConvTranspose(4, 2, stride=2, output_padding=2), (1, 3, 4), "`output_padding` must"),
        (L.MaxPool(3), (1, 2, 2, 2), "window of effective size 3"),
        (L.GroupNorm(3), (1, 4, 2, 2), r"`num_groups` \(=3\) must divide the channels \(=4\)"),
        (L.Reshape((3, 3)), (1, 2, 4), r"cannot reshape examples of shape \(2, 4\)"),
        (L.Conv(4, 3), (1, 0, 8, 8), "`input_shape` entries must be >= 1"),
        (L.FanInSum(), ((1, 2), (1, 3)), "FanInSum: branch output shapes must be equal"),
        (L.FanInConcat(), ((1, 2, 3), (1, 2, 4)), "must agree except along axis 1"),
        (L.parallel(L.Relu()), ((1, 2), (1, 2)), "expected 1 input branches, got 2"),
        (L.Softmax(axis=5), (1, 10), r"Softmax: `axis` \(=5\) is out of range .* -2 <= axis < 2"),
        (L.LogSoftmax(axis=-3), (1, 10), r"LogSoftmax: `axis` \(=-3\) is out of range"),
    ],
)
def test_init_errors(layer, shape, match):
    with pytest.raises((ValueError, TypeError), match=match):
        layer.init(KEY, shape)


def test_apply_errors_name_the_layer_and_what_it_expected():
    dense = L.Dense(4)
    _, params = dense.init(KEY, (-1, 5))
    with pytest.raises(ValueError, match="Dense: the input has 6 features .* initialised for 5"):
        dense.apply(params, jnp.ones((2, 6)))
    pair = L.parallel(L.Relu(), L.Relu())
    with pytest.raises(ValueError, match="parallel: expected a tuple of 2 input branches, got 1"):
        pair.apply(((), ()), (jnp.ones(2),))


def test_tuple_input_to_a_leaf_layer_is_a_type_error():
    with pytest.raises(TypeError, match=r"Conv: `input_shape` must be a sequence of ints"):
        L.Conv(4, 3).init(KEY, ((1, 2, 4, 4), (1, 2, 4, 4)))


def test_residual_shape_mismatch_says_use_a_projection():
    net = L.residual(L.Conv(8, 3, padding="SAME"))
    with pytest.raises(
        ValueError, match="residual: branch output shapes must be equal.*projection"
    ):
        net.init(KEY, (1, 4, 8, 8))
