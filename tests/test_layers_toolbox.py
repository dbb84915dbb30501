"""Specification of the toolbox layers: LocallyConnected, TiledConv, Im2colConv and the pooling
family (LpPool, Maxout, AdaptiveAvgPool, AdaptiveMaxPool, SpatialPyramidPool, RoiMaxPool).

Each layer is checked for: its doctest (parameter and output shapes); exact values against
``Conv`` or hand-computed numbers; shape agreement (init's predicted shape == apply's real shape,
hypothesis); the whole layer's gradient (custom backward rules) against the same layer built on
the autodiff twins, in float64; the ``vjp`` switch; error messages.
"""

from __future__ import annotations

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fconv.init as fi
import fconv.layers.local
import fconv.layers.pooling_family
from fconv import layers as L
from fconv.testing import check_vjp

KEY = jax.random.key(0)
SETTINGS = settings(max_examples=8, deadline=None)


def _randn(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _run(layer, params, x):
    """``layer.apply`` jitted: one compile instead of one per primitive."""
    return jax.jit(layer.apply)(params, x)


def _unique(*shape, seed=0):
    """Distinct values in random order: every maximum is unambiguous."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(math.prod(shape), dtype=np.float64)).reshape(shape) / 7.0


@pytest.mark.parametrize("module", [fconv.layers.local, fconv.layers.pooling_family])
def test_doctests_print_param_and_output_shapes(module):
    result = doctest.testmod(module, extraglobs={"jax": jax, "jnp": jnp})
    assert result.attempted >= 6 and result.failed == 0, result


def test_layers_are_exported():
    for name in (
        "LocallyConnected",
        "TiledConv",
        "Im2colConv",
        "LpPool",
        "Maxout",
        "AdaptiveAvgPool",
        "AdaptiveMaxPool",
        "SpatialPyramidPool",
        "RoiMaxPool",
    ):
        assert name in L.__all__ and callable(getattr(L, name))


# ---------------------------------------------------------------------------------------------
# Exact values
# ---------------------------------------------------------------------------------------------


def test_locally_connected_with_one_kernel_everywhere_is_conv():
    x = _randn((2, 3, 6, 5))
    conv = L.Conv(4, (3, 2), stride=(1, 2), padding="SAME", bias=False)
    out_shape, cp = conv.init(KEY, x.shape)
    local = L.LocallyConnected(4, (3, 2), stride=(1, 2), padding="SAME")
    local_shape, lp = local.init(KEY, x.shape)
    assert local_shape == out_shape == (2, 4, 6, 3)
    assert lp["w"].shape == (6, 3, 4, 3, 3, 2) and lp["b"].shape == (6, 3, 4)
    w = np.broadcast_to(np.asarray(cp["w"]), lp["w"].shape)
    b = np.arange(6 * 3 * 4, dtype=np.float64).reshape(6, 3, 4)  # a different bias per position
    y = _run(local, {"w": w, "b": b}, x)
    expected = np.asarray(_run(conv, cp, x)) + np.moveaxis(b, -1, 0)[None]
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


def test_locally_connected_kernels_are_independent_per_position():
    def draw(layer, shape):  # one compiled init instead of eager per-op dispatch
        return jax.jit(lambda key: layer.init(key, shape)[1])(KEY)

    params = draw(L.LocallyConnected(2, 3), (-1, 1, 5, 5))
    w = np.asarray(params["w"]).reshape(9, -1)
    assert len({tuple(row) for row in w}) == 9  # one independent draw per output position
    # He normal per position: var 2 / fan_in, fan_in = C prod(K) = 9 (not 9 * the positions).
    big = draw(L.LocallyConnected(32, 3), (-1, 8, 5, 5))
    assert big["w"].shape == (3, 3, 32, 8, 3, 3)
    assert abs(float(np.var(big["w"])) - 2 / (8 * 9)) < 0.1 * 2 / (8 * 9)
    assert not np.any(params["b"])


def test_tiled_conv_tile_one_is_conv_and_full_tile_is_locally_connected():
    x = _randn((1, 2, 7, 6))
    w = _randn((3, 2, 3, 3), seed=1)
    tiled1 = L.TiledConv(3, 3, tile=1, padding=1, bias=False)
    conv = L.Conv(3, 3, padding=1, bias=False)
    assert L.output_shape(tiled1, x.shape) == L.output_shape(conv, x.shape) == (1, 3, 7, 6)
    np.testing.assert_allclose(
        _run(tiled1, {"w": w[None, None]}, x), _run(conv, {"w": w}, x), atol=1e-12
    )
    full = L.TiledConv(3, 3, tile=(7, 6), bias=False)
    assert L.output_shape(full, (1, 2, 9, 8)) == (1, 3, 7, 6)
    wp = {"w": _randn((7, 6, 3, 2, 3, 3), seed=2)}
    xs = _randn((1, 2, 9, 8), seed=3)
    local = L.LocallyConnected(3, 3, bias=False)
    np.testing.assert_allclose(_run(full, wp, xs), _run(local, wp, xs), atol=1e-12)


def test_tiled_conv_cycles_kernels_with_period_tile():
    # 1-D, ones input, kernel size 1: output position m is w[m mod 2], so y = [a, b, a, b, a].
    w = np.array([2.0, 5.0]).reshape(2, 1, 1, 1)
    layer = L.TiledConv(1, 1, tile=2, bias=False)
    assert layer.init(KEY, (1, 1, 5))[0] == (1, 1, 5)
    y = _run(layer, {"w": w}, np.ones((1, 1, 5)))
    np.testing.assert_array_equal(y[0, 0], [2.0, 5.0, 2.0, 5.0, 2.0])


def test_im2col_conv_has_conv_params_and_results():
    kw = {"stride": 2, "padding": "SAME", "dilation": 1, "groups": 2}
    conv, im2col = L.Conv(4, 3, **kw), L.Im2colConv(4, 3, **kw)
    shape = (2, 4, 7, 7)
    (cs, cp), (ims, ip) = conv.init(KEY, shape), im2col.init(KEY, shape)
    assert cs == ims == (2, 4, 4, 4)
    jax.tree.map(np.testing.assert_array_equal, cp, ip)  # same initializer, same draws
    x = _randn(shape)
    np.testing.assert_allclose(_run(im2col, ip, x), _run(conv, cp, x), rtol=1e-5, atol=1e-5)


def test_im2col_conv_ones_kernel_counts_taps_inside():
    layer = L.Im2colConv(1, 3, padding="SAME", w_init=fi.ones, b_init=fi.ones)
    _, params = layer.init(KEY, (1, 1, 4, 4))
    y = _run(layer, params, np.ones((1, 1, 4, 4), np.float32))
    np.testing.assert_array_equal(y[0, 0, 0], [5.0, 7.0, 7.0, 5.0])  # taps inside, plus bias 1


def test_lp_pool_exact_values():
    x = np.array([[3.0, -4.0, 1.0, 0.0], [0.0, 0.0, 2.0, -2.0]]).reshape(1, 1, 2, 4)
    y = _run(L.LpPool(2, 2), {}, x)
    np.testing.assert_allclose(y[0, 0], [[5.0, 3.0]])  # sqrt(9 + 16), sqrt(1 + 4 + 4)
    y1 = _run(L.LpPool(1, (1, 4)), {}, x)
    np.testing.assert_allclose(y1[0, 0, :, 0], [8.0, 4.0])  # sum of |x|


def test_maxout_exact_values_on_conv_and_dense_outputs():
    x = np.arange(8.0)[[3, 1, 4, 0, 7, 5, 2, 6]].reshape(1, 8)
    np.testing.assert_array_equal(_run(L.Maxout(2), {}, x), [[3.0, 4.0, 7.0, 6.0]])
    np.testing.assert_array_equal(_run(L.Maxout(4), {}, x), [[4.0, 7.0]])
    fmap = x.reshape(1, 8, 1, 1)
    assert L.Maxout(2).init(None, fmap.shape)[0] == (1, 4, 1, 1)
    np.testing.assert_array_equal(_run(L.Maxout(2), {}, fmap)[0, :, 0, 0], [3.0, 4.0, 7.0, 6.0])
    np.testing.assert_array_equal(_run(L.Maxout(2, axis=-1), {}, x), [[3.0, 4.0, 7.0, 6.0]])


def test_adaptive_pools_exact_values():
    x = np.arange(5.0).reshape(1, 1, 5)  # bins of 5 -> 2: [0, 3) and [2, 5)
    np.testing.assert_array_equal(_run(L.AdaptiveAvgPool(2), {}, x)[0, 0], [1.0, 3.0])
    np.testing.assert_array_equal(_run(L.AdaptiveMaxPool(2), {}, x)[0, 0], [2.0, 4.0])
    x2 = np.arange(16.0).reshape(1, 1, 4, 4)  # 2 divides 4: plain 2x2 pools
    np.testing.assert_array_equal(
        _run(L.AdaptiveAvgPool(2), {}, x2)[0, 0], [[2.5, 4.5], [10.5, 12.5]]
    )
    np.testing.assert_array_equal(_run(L.AdaptiveMaxPool((1, 2)), {}, x2)[0, 0], [[13.0, 15.0]])


def test_spatial_pyramid_pool_is_a_fixed_length_vector_for_any_size():
    layer = L.SpatialPyramidPool((1, 2), mode="avg")
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    y = _run(layer, {}, x)
    np.testing.assert_array_equal(y, [[7.5, 2.5, 4.5, 10.5, 12.5]])  # level 1, then level 2
    for hw in [(5, 7), (13, 9), (2, 3)]:
        assert L.SpatialPyramidPool().init(None, (-1, 3, *hw))[0] == (-1, 3 * (1 + 4 + 16))


def test_roi_max_pool_layer_on_features_and_boxes():
    x = np.arange(32.0).reshape(2, 1, 4, 4)
    boxes = np.array([[0.0, 0.0, 0.0, 3.0, 3.0], [1.0, 2.0, 2.0, 3.0, 3.0]])
    layer = L.RoiMaxPool(2)
    assert layer.init(None, (x.shape, boxes.shape)) == ((2, 1, 2, 2), {})
    y = _run(layer, {}, (x, boxes))
    np.testing.assert_array_equal(y[0, 0], [[5.0, 7.0], [13.0, 15.0]])
    np.testing.assert_array_equal(y[1, 0], [[26.0, 27.0], [30.0, 31.0]])


def test_roi_max_pool_composes_with_parallel():
    net = L.serial(L.parallel(L.Conv(2, 3, padding="SAME"), L.Identity()), L.RoiMaxPool(2, 0.5))
    out_shape, params = net.init(KEY, ((-1, 1, 8, 8), (-1, 5)))
    assert out_shape == (-1, 2, 2, 2)
    boxes = np.array([[0.0, 0.0, 0.0, 7.0, 7.0], [0.0, 2.0, 2.0, 5.0, 5.0], [0.0, 0, 0, 1, 1]])
    y = _run(net, params, (np.ones((1, 1, 8, 8), np.float32), boxes.astype(np.float32)))
    assert y.shape == (3, 2, 2, 2)


# ---------------------------------------------------------------------------------------------
# Shape agreement: init's output shape == apply's real output shape
# ---------------------------------------------------------------------------------------------


def _abstract_init(layer, input_shape):
    shapes = []

    def run(rng):
        out_shape, params = layer.init(rng, input_shape)
        shapes.append(out_shape)
        return params

    params = jax.eval_shape(run, KEY)
    return shapes[0], params


def _check_agreement(layer, x_shape):
    """init with batch -1 and with the real batch, and a real (jitted) apply, agree."""
    out_any = L.output_shape(layer, (-1, *x_shape[1:]))
    out_shape, abstract = _abstract_init(layer, x_shape)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(abstract))
    params = jax.tree.map(lambda a: np.full(a.shape, 0.1, a.dtype), abstract)
    x = _randn(x_shape).astype(np.float32)
    y = jax.jit(layer.apply)(params, x)
    assert tuple(y.shape) == out_shape
    assert out_any == (-1, *out_shape[1:])
    return out_shape


def _expected_size(n, k, s, d, padding):
    eff = d * (k - 1) + 1
    if padding == "SAME":
        return -(-n // s)
    lo, hi = {"VALID": (0, 0), "FULL": (eff - 1, eff - 1)}.get(padding, padding)
    return (n + lo + hi - eff) // s + 1


@st.composite
def local_configs(draw):
    rank = draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = draw(st.integers(1, 2))
    stride = draw(st.integers(1, 2))
    padding = draw(st.sampled_from(["VALID", "SAME", "FULL", (1, 0)]))
    spatial = tuple(draw(st.integers(dilation * (k - 1) + 1, 6)) for k in kernel)
    out = [_expected_size(n, k, stride, dilation, padding) for n, k in zip(spatial, kernel)]
    tile = tuple(draw(st.integers(1, m)) for m in out)
    return {
        "kind": draw(st.sampled_from(["local", "tiled", "im2col"])),
        "c_in": draw(st.integers(1, 2)),
        "c_out": draw(st.integers(1, 2)),
        "kernel": kernel,
        "stride": stride,
        "dilation": dilation,
        "padding": padding if isinstance(padding, str) else (padding,) * rank,
        "spatial": spatial,
        "tile": tile,
        "out": tuple(out),
    }


@SETTINGS
@given(local_configs())
def test_local_conv_layers_shape_agreement(cfg):
    kw = {"stride": cfg["stride"], "padding": cfg["padding"], "dilation": cfg["dilation"]}
    if cfg["kind"] == "local":
        layer = L.LocallyConnected(cfg["c_out"], cfg["kernel"], **kw)
    elif cfg["kind"] == "tiled":
        layer = L.TiledConv(cfg["c_out"], cfg["kernel"], tile=cfg["tile"], **kw)
    else:
        layer = L.Im2colConv(cfg["c_out"], cfg["kernel"], **kw)
    x_shape = (2, cfg["c_in"], *cfg["spatial"])
    assert _check_agreement(layer, x_shape) == (2, cfg["c_out"], *cfg["out"])


@st.composite
def pool_family_configs(draw):
    rank = draw(st.integers(1, 3))
    spatial = tuple(draw(st.integers(1, 5)) for _ in range(rank))
    kind = draw(st.sampled_from(["lp", "maxout", "adaptive_avg", "adaptive_max", "spp"]))
    window = tuple(draw(st.integers(1, n)) for n in spatial)
    return {
        "kind": kind,
        "spatial": spatial,
        "window": window,
        "stride": draw(st.sampled_from([None, 1, 2])),
        "p": draw(st.sampled_from([1, 2, 3.5])),
        "pieces": draw(st.integers(1, 3)),
        "output_size": tuple(draw(st.integers(1, 4)) for _ in range(rank)),
        "levels": tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2))),
        "mode": draw(st.sampled_from(["max", "avg"])),
    }


@SETTINGS
@given(pool_family_configs())
def test_pool_family_layers_shape_agreement(cfg):
    spatial, c = cfg["spatial"], 6
    kind = cfg["kind"]
    if kind == "lp":
        layer = L.LpPool(cfg["p"], cfg["window"], cfg["stride"])
        s = cfg["window"] if cfg["stride"] is None else (cfg["stride"],) * len(spatial)
        out = tuple((n - k) // si + 1 for n, k, si in zip(spatial, cfg["window"], s))
        expected = (2, c, *out)
    elif kind == "maxout":
        layer = L.Maxout(cfg["pieces"])
        expected = (2, c // cfg["pieces"], *spatial)
    elif kind in ("adaptive_avg", "adaptive_max"):
        make = L.AdaptiveAvgPool if kind == "adaptive_avg" else L.AdaptiveMaxPool
        layer = make(cfg["output_size"])
        expected = (2, c, *cfg["output_size"])
    else:
        layer = L.SpatialPyramidPool(cfg["levels"], cfg["mode"])
        expected = (2, c * sum(lv ** len(spatial) for lv in cfg["levels"]))
    assert _check_agreement(layer, (2, c, *spatial)) == expected


# ---------------------------------------------------------------------------------------------
# Whole-layer gradients: custom backward rules against the same layer on the autodiff twins
# ---------------------------------------------------------------------------------------------


def _grad_check(make, x, params=None, fd=False):
    """Gradients of ``apply(params, x)`` w.r.t. x and every parameter, custom vs autodiff."""
    custom, reference = make(vjp="custom"), make(vjp="autodiff")
    if params is None:
        params = custom.init(KEY, x.shape)[1]
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    leaves, treedef = jax.tree.flatten(params)

    def as_fn(layer):
        def f(x, *leaves):
            return layer.apply(jax.tree.unflatten(treedef, leaves), x)

        return jax.jit(f)

    report = check_vjp(as_fn(custom), as_fn(reference), x, *leaves, finite_differences=fd)
    assert max(report.rel_err) < 1e-12, report
    assert len(report.argnums) == 1 + len(leaves)
    return report


@pytest.mark.parametrize(
    "make, x_shape",
    [
        # untied bias, SAME padding, stride 2 (col2im with gaps), 2-D
        (lambda **kw: L.LocallyConnected(3, 3, stride=2, padding="SAME", **kw), (2, 2, 5, 6)),
        # 1-D, dilation 2, no bias
        (lambda **kw: L.LocallyConnected(2, 2, dilation=2, bias=False, **kw), (2, 3, 7)),
        # tile that does not divide the output (7 = 3 * 2 + 1), explicit pads
        (lambda **kw: L.TiledConv(2, 3, tile=(2, 3), padding=((1, 0), (0, 1)), **kw), (1, 2, 8, 7)),
        # 3-D tiled conv, tile 1 on one axis
        (lambda **kw: L.TiledConv(2, 2, tile=(1, 2, 2), **kw), (1, 1, 3, 4, 4)),
        # grouped, strided, dilated im2col
        (
            lambda **kw: L.Im2colConv(4, 3, stride=2, dilation=2, groups=2, padding=2, **kw),
            (2, 4, 7, 6),
        ),
    ],
)
def test_conv_family_layer_gradients_match_autodiff(make, x_shape):
    _grad_check(make, _randn(x_shape))


def test_locally_connected_gradient_against_finite_differences():
    report = _grad_check(
        lambda **kw: L.LocallyConnected(2, 2, stride=2, **kw), _randn((1, 2, 4, 4)), fd=True
    )
    assert max(report.fd_rel_err) < 1e-6


@pytest.mark.parametrize(
    "make, x",
    [
        (lambda **kw: L.LpPool(2, 2, 1, **kw), _randn((2, 2, 5, 4))),  # overlapping windows
        (lambda **kw: L.LpPool(3.5, (2, 3), padding=1, **kw), _randn((1, 2, 4, 5))),
        (lambda **kw: L.Maxout(3, **kw), _unique(2, 6, 3, 2)),
        (lambda **kw: L.Maxout(2, axis=-1, **kw), _unique(3, 8)),
        (lambda **kw: L.AdaptiveAvgPool((3, 2), **kw), _randn((2, 2, 5, 7))),  # overlapping bins
        (lambda **kw: L.AdaptiveMaxPool((3, 2), **kw), _unique(2, 2, 5, 7)),
        (lambda **kw: L.AdaptiveMaxPool(4, **kw), _unique(1, 2, 3)),  # more bins than cells
        (lambda **kw: L.SpatialPyramidPool((1, 3), "max", **kw), _unique(2, 2, 5, 4)),
        (lambda **kw: L.SpatialPyramidPool((1, 2), "avg", **kw), _randn((1, 2, 3, 4, 5))),
    ],
)
def test_pool_family_layer_gradients_match_autodiff(make, x):
    _grad_check(make, x)


def test_roi_max_pool_layer_gradient_matches_autodiff():
    x = _unique(2, 2, 6, 6)
    boxes = np.array([[0.0, 0.0, 0.0, 5.0, 5.0], [1.0, 1.0, 2.0, 4.0, 5.0], [1.0, 3, 3, 3, 3]])
    custom, reference = L.RoiMaxPool((2, 3), vjp="custom"), L.RoiMaxPool((2, 3), vjp="autodiff")
    report = check_vjp(
        jax.jit(lambda x: custom.apply({}, (x, boxes))),
        jax.jit(lambda x: reference.apply({}, (x, boxes))),
        x,
        finite_differences=False,
    )
    assert max(report.rel_err) < 1e-12, report


def _uses_custom_vjp(layer, x):
    return "custom_vjp_call" in str(jax.make_jaxpr(lambda x: layer.apply({}, x))(x))


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: L.LpPool(2, 2, **kw),
        lambda **kw: L.Maxout(2, **kw),
        lambda **kw: L.AdaptiveAvgPool(2, **kw),
        lambda **kw: L.AdaptiveMaxPool(2, **kw),
        lambda **kw: L.SpatialPyramidPool(**kw),
    ],
)
def test_default_vjp_switches_pool_family_layers(make):
    x = np.ones((1, 2, 4, 4), np.float32)
    assert _uses_custom_vjp(make(), x)
    assert not _uses_custom_vjp(make(vjp="autodiff"), x)
    with L.default_vjp("autodiff"):
        built_inside = make()
    assert not _uses_custom_vjp(built_inside, x)


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: L.LocallyConnected(2, 3, **kw),
        lambda **kw: L.TiledConv(2, 3, tile=2, **kw),
        lambda **kw: L.Im2colConv(2, 3, **kw),
    ],
)
def test_default_vjp_switches_conv_family_layers(make):
    x = np.ones((1, 2, 6, 6), np.float32)

    def uses(layer):
        _, params = layer.init(KEY, x.shape)
        return "custom_vjp_call" in str(jax.make_jaxpr(lambda p: layer.apply(p, x))(params))

    assert uses(make()) and not uses(make(vjp="autodiff"))
    with L.default_vjp("autodiff"):
        assert not uses(make())


# ---------------------------------------------------------------------------------------------
# Errors: message = argument, requirement, value
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: L.LocallyConnected(0, 3), ValueError, "LocallyConnected: `out_channels` must be"),
        (lambda: L.LocallyConnected(2, 3, stride=0), ValueError, "LocallyConnected: `stride` entr"),
        (lambda: L.LocallyConnected(2, 3, padding="half"), ValueError, "`padding` string must"),
        (lambda: L.TiledConv(2, 3, tile=0), ValueError, r"TiledConv: `tile` entries must be >= 1"),
        (lambda: L.TiledConv(2, 3), TypeError, "missing 1 required keyword-only argument: 'tile'"),
        (lambda: L.Im2colConv(3, 3, groups=2), ValueError, r"`groups` \(=2\) must divide `out_c"),
        (lambda: L.Im2colConv(2, "3"), TypeError, "Im2colConv: `kernel_size` must be an int"),
        (lambda: L.Im2colConv(2, 3, vjp="manual"), ValueError, "`vjp` must be 'custom'"),
        (
            lambda: L.LpPool(0.5, 2),
            ValueError,
            r"LpPool: `p` must be a finite number >= 1, got 0.5",
        ),
        (lambda: L.LpPool(float("inf"), 2), ValueError, "LpPool: `p` must be a finite number"),
        (lambda: L.LpPool("2", 2), TypeError, "LpPool: `p` must be a real number, got '2'"),
        (lambda: L.LpPool(2, 0), ValueError, "LpPool: `window` entries must be >= 1"),
        (lambda: L.Maxout(0), ValueError, "Maxout: `num_pieces` must be >= 1, got 0"),
        (lambda: L.Maxout(2.0), TypeError, "Maxout: `num_pieces` must be an int, got 2.0"),
        (lambda: L.AdaptiveAvgPool(0), ValueError, "AdaptiveAvgPool: `output_size` entries must"),
        (lambda: L.AdaptiveMaxPool("2"), TypeError, "AdaptiveMaxPool: `output_size` must be an"),
        (lambda: L.SpatialPyramidPool(mode="sum"), ValueError, "`mode` must be 'max' or 'avg'"),
        (lambda: L.SpatialPyramidPool(()), ValueError, "`levels` must be a non-empty sequence"),
        (lambda: L.SpatialPyramidPool((1, 0)), ValueError, "`levels` must be >= 1, got 0"),
        (lambda: L.RoiMaxPool(0), ValueError, "RoiMaxPool: `output_size` entries must be >= 1"),
        (lambda: L.RoiMaxPool(2, 0.0), ValueError, "`spatial_scale` must be a positive finite"),
        (lambda: L.RoiMaxPool(2, "1"), TypeError, "`spatial_scale` must be a real number"),
    ],
)
def test_constructor_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    "layer, shape, match",
    [
        (L.LocallyConnected(2, 5), (1, 1, 3, 3), "LocallyConnected: kernel of effective size 5"),
        (L.LocallyConnected(2, (3, 3)), (1, 1, 5), "LocallyConnected: `kernel_size` must have one"),
        (L.LocallyConnected(2, 3), (1, 4), "LocallyConnected: `input_shape` must have 3 or 4 or 5"),
        (L.TiledConv(2, 3, tile=3), (1, 1, 4, 4), r"TiledConv: `tile` \(3, 3\) must not exceed"),
        (L.TiledConv(2, 3, tile=(1, 2)), (1, 1, 5), "TiledConv: `tile` must have one entry per"),
        (L.Im2colConv(4, 3, groups=2), (1, 3, 5, 5), r"`groups` \(=2\) must divide the input ch"),
        (L.LpPool(2, 3), (1, 1, 2, 2), "window of effective size 3"),
        (L.Maxout(4), (1, 6, 2, 2), r"`num_pieces` \(=4\) must divide the channels"),
        (L.Maxout(2, axis=0), (4, 4), r"Maxout: `axis` \(=0\) must name a non-batch axis"),
        (L.Maxout(2, axis=3), (4, 4), r"Maxout: `axis` \(=3\) must name a non-batch axis"),
        (L.AdaptiveAvgPool((2, 2)), (1, 1, 5), "`output_size` must have one entry per spatial"),
        (L.SpatialPyramidPool(), (1, 8), "SpatialPyramidPool: `input_shape` must have 3 or 4"),
        (L.RoiMaxPool(2), (1, 1, 4, 4), r"RoiMaxPool: input must be a \(features, boxes\) pair"),
        (L.RoiMaxPool(2), ((1, 1, 4, 4), (3, 4)), r"boxes must have shape \(K, 5\)"),
        (L.RoiMaxPool(2), ((1, 1, 4), (3, 5)), "RoiMaxPool: `input_shape` must have 4 entries"),
    ],
)
def test_init_errors(layer, shape, match):
    with pytest.raises((ValueError, TypeError), match=match):
        layer.init(KEY, shape)
