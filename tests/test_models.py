"""Tests for fconv.models: shapes, gradients (custom vs autodiff twin), BatchNorm state, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fconv import models
from fconv.layers import default_vjp

KEY = jax.random.key(0)

# (name, kwargs, uses BatchNorm): small configurations, so each gradient compiles quickly. The
# two BatchNorm models take ~5 s each to compile twice on 2 CPU cores: marked slow.
SMALL = [
    pytest.param("lenet5", {"input_shape": (1, 8, 8)}, False, id="lenet5"),
    pytest.param("vgg_small", {"input_shape": (3, 8, 8)}, False, id="vgg_small"),
    pytest.param(
        "resnet_small",
        {"input_shape": (3, 8, 8), "widths": (4, 8)},
        True,
        marks=pytest.mark.slow,
        id="resnet_small",
    ),
    pytest.param(
        "all_conv_net", {"input_shape": (3, 8, 8), "widths": (4, 8)}, False, id="all_conv_net"
    ),
    pytest.param(
        "resnext_small",
        {"input_shape": (3, 8, 8), "widths": (8, 16), "cardinality": 2, "bottleneck_width": 2},
        True,
        marks=pytest.mark.slow,
        id="resnext_small",
    ),
]
NAMES = ["lenet5", "vgg_small", "resnet_small", "all_conv_net", "resnext_small"]


def _randn(shape, seed=1):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _apply_shape(model, params, x_shape, state):
    """Output shape of the real apply, traced (no compile)."""
    x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
    if state is None:
        return jax.eval_shape(lambda p, x: model.apply(p, x), params, x).shape
    return jax.eval_shape(lambda p, x: model.apply(p, x, state=state)[0], params, x).shape


def _abstract_init(model, input_shape=None):
    """``model.init`` traced abstractly: (output shape, params as ShapeDtypeStructs)."""
    shapes = []

    def run(rng):
        s, p = model.init(rng) if input_shape is None else model.init(rng, input_shape)
        shapes.append(s)
        return p

    params = jax.eval_shape(run, KEY)
    return shapes[0], params


def _numpy_params(abstract, seed=3):
    """He-scaled numpy parameters of init's shapes: no eager random draws (each new shape would
    compile a sampler, which costs more than the gradient itself in these small models)."""
    rng = np.random.default_rng(seed)

    def fill(path, a):
        name = path[-1].key
        noise = rng.standard_normal(a.shape).astype(a.dtype)
        if name == "w":
            fan_in = a.shape[0] if len(a.shape) == 2 else math.prod(a.shape[1:])
            return jnp.asarray(noise * np.sqrt(2.0 / fan_in, dtype=a.dtype))
        return jnp.asarray((1.0 if name == "scale" else 0.0) + 0.1 * noise)

    return jax.tree_util.tree_map_with_path(fill, abstract)


@pytest.mark.parametrize("name", NAMES)
def test_model_default_shapes_agree(name):
    model = getattr(models, name)()
    out_shape, params = _abstract_init(model)
    assert out_shape == (-1, 10)
    default_input = {"lenet5": (1, 28, 28)}.get(name, (3, 32, 32))
    state = model.init_state()
    assert _apply_shape(model, params, (2, *default_input), state) == (2, 10)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(params))


# Smallest spatial size each model accepts (vgg_small's two VALID 2x2 pools need 4).
MIN_SIZE = {"lenet5": 1, "vgg_small": 4, "resnet_small": 1, "all_conv_net": 1, "resnext_small": 1}


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from(NAMES),
    st.integers(1, 3),
    st.integers(0, 20),
    st.integers(0, 20),
    st.integers(1, 3),
    st.integers(1, 12),
)
def test_model_shape_agreement_property(name, channels, dh, dw, batch, num_classes):
    h, w = MIN_SIZE[name] + dh, MIN_SIZE[name] + dw
    model = getattr(models, name)(num_classes=num_classes, input_shape=(channels, h, w))
    out_shape, params = _abstract_init(model, (batch, channels, h, w))
    state = model.init_state((batch, channels, h, w))
    assert out_shape == (batch, num_classes)
    assert _apply_shape(model, params, (batch, channels, h, w), state) == (batch, num_classes)


@pytest.mark.parametrize("hw", [28, 8, 5, 1])
def test_lenet5_runs_on_mnist_digits_and_tiny_inputs(hw):
    model = models.lenet5(num_classes=3, input_shape=(1, hw, hw))
    out_shape, abstract = _abstract_init(model)
    params = _numpy_params(abstract)
    y = jax.jit(model.apply)(params, _randn((2, 1, hw, hw)))
    assert y.shape == (2, 3) and out_shape == (-1, 3)
    flat = {28: 16 * 7 * 7, 8: 16 * 2 * 2, 5: 16 * 2 * 2, 1: 16}[hw]
    assert params[7]["w"].shape == (flat, 120)  # the pools use SAME: ceil(H / 2) twice


def _relative_errors(custom, reference):
    def err(a, b):
        scale = float(jnp.max(jnp.abs(b)))
        diff = float(jnp.max(jnp.abs(a - b)))
        return diff / scale if scale > 0 else diff

    return jax.tree.leaves(jax.tree.map(err, custom, reference))


@pytest.mark.parametrize("name, kwargs, batchnorm", SMALL)
def test_model_gradients_custom_equal_autodiff(name, kwargs, batchnorm):
    custom = getattr(models, name)(**kwargs)
    reference = getattr(models, name)(vjp="autodiff", **kwargs)
    out_shape, abstract = _abstract_init(custom)
    assert _abstract_init(reference) == (out_shape, abstract)  # the same parameter tree
    params = _numpy_params(abstract)
    x = _randn((2, *kwargs["input_shape"]))
    c = _randn((1, 10), seed=2)  # a random projection of the logits as the loss
    state = custom.init_state() if batchnorm else None

    def loss(model):
        def f(p):
            if state is None:
                y, new_state = model.apply(p, x), None
            else:  # train=True with state: exercises BatchNorm's batch statistics
                y, new_state = model.apply(p, x, train=True, state=state)
            return jnp.sum(y * c), (y, new_state)

        return jax.jit(jax.grad(f, has_aux=True))

    grads, (y, new_state) = loss(custom)(params)
    grads_ref, (y_ref, _) = loss(reference)(params)
    assert y.shape == (2, 10) and out_shape == (-1, 10)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    errors = _relative_errors(grads, grads_ref)
    assert max(errors) <= 1e-5, errors
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads))
    if batchnorm:
        assert jax.tree.structure(new_state) == jax.tree.structure(state)


def test_model_init_draws_float32_params_for_the_default_input_shape():
    model = models.lenet5(input_shape=(1, 8, 8))
    out_shape, params = model.init(KEY)  # input_shape defaults to (-1, 1, 8, 8)
    assert out_shape == (-1, 10)
    same_shape, same = model.init(KEY, (-1, 1, 8, 8))
    assert same_shape == out_shape
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), params, same))
    assert [p["w"].shape for p in params if p] == [
        (6, 1, 5, 5),
        (16, 6, 5, 5),
        (64, 120),
        (120, 84),
        (84, 10),
    ]
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(params))
    assert model.init_state() == ((),) * len(params)
    y, state = model.apply(params, _randn((2, 1, 8, 8)), state=model.init_state())
    assert y.shape == (2, 10) and state == model.init_state()


def test_models_built_under_default_vjp_use_the_autodiff_twins():
    x = jnp.ones((1, 1, 8, 8), jnp.float32)

    def uses_custom(model):
        params = _abstract_init(model)[1]  # make_jaxpr takes ShapeDtypeStructs
        return "custom_vjp_call" in str(jax.make_jaxpr(lambda p: model.apply(p, x))(params))

    assert uses_custom(models.lenet5(input_shape=(1, 8, 8)))
    assert not uses_custom(models.lenet5(input_shape=(1, 8, 8), vjp="autodiff"))
    with default_vjp("autodiff"):
        model = models.lenet5(input_shape=(1, 8, 8))
    assert not uses_custom(model)


def test_resnet_batchnorm_state_updates_and_eval_path():
    model = models.resnet_small(input_shape=(3, 8, 8), widths=(4, 8))
    params = _numpy_params(_abstract_init(model)[1])
    state = model.init_state()
    x = _randn((4, 3, 8, 8))
    step = jax.jit(lambda p, x, s: model.apply(p, x, train=True, state=s))
    y_train, new_state = step(params, x, state)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new_state, state)
    assert all(jax.tree.leaves(changed))  # every BatchNorm's running mean and var moved
    y_eval, same = jax.jit(lambda p, x, s: model.apply(p, x, state=s))(params, x, new_state)
    assert y_eval.shape == y_train.shape == (4, 10)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), same, new_state))
    with pytest.raises(ValueError, match="BatchNorm needs its running statistics"):
        model.apply(params, x)


def test_resnext_block_grouped_conv_and_shortcuts():
    block = models.resnext_block(16, cardinality=4, bottleneck_width=2, stride=2)
    out_shape, params = _abstract_init(block, (-1, 8, 6, 6))
    assert out_shape == (-1, 16, 3, 3)
    main, shortcut = params[0][1]  # serial(residual(...), Relu()): residual's parallel
    assert main[2][0]["w"].shape == (8, 2, 3, 3)  # D = 8 channels in 4 groups of 2
    assert shortcut[0]["w"].shape == (16, 8, 1, 1)  # strided 1x1 projection
    same = models.resnext_block(8)
    params = _numpy_params(_abstract_init(same, (-1, 8, 4, 4))[1])
    assert params[0][1][1] == {}  # identity shortcut when shapes already agree
    y = jax.jit(lambda p, x: same.apply(p, x, train=True))(params, _randn((2, 8, 4, 4)))
    assert y.shape == (2, 8, 4, 4)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: models.lenet5(num_classes=0), ValueError, "`num_classes` must be >= 1"),
        (lambda: models.lenet5(input_shape=(28, 28)), ValueError, r"must be \(C, H, W\)"),
        (lambda: models.vgg_small(input_shape=(3, 2, 2)), ValueError, "vgg_small: does not fit"),
        (lambda: models.resnet_small(widths=()), TypeError, "`widths` must be a non-empty"),
        (lambda: models.all_conv_net(widths=(8,)), ValueError, "`widths` must have 2 entries"),
        (lambda: models.resnext_block(8, cardinality=0), ValueError, "`cardinality` must be"),
        (lambda: models.lenet5(vjp="fast"), ValueError, "`vjp` must be 'custom', 'autodiff'"),
    ],
)
def test_model_constructor_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()
