"""Specification of fconv.receptive_field: the lecture's recurrence on hand-computed networks,
checked against the real support of a unit's input gradient, and read off fconv models.

r_out = r_in + (k' - 1) j_in,  j_out = j_in s,  start_out = start_in + ((k' - 1) / 2 - pad_lo) j_in.
"""

from __future__ import annotations

import dataclasses
import doctest
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fconv.init as fi
import fconv.receptive_field as rf_module
from fconv import layers as L
from fconv import models
from fconv.receptive_field import LayerSpec, format_table, receptive_field, specs_from_model

HAS_META = "meta" in {f.name for f in dataclasses.fields(L.Layer)}
NEEDS_META = pytest.mark.skipif(
    not HAS_META,
    reason="fconv.layers.Layer does not record its configuration yet (no `meta`/`children` "
    "fields): the proposed metadata change to layers/base.py, conv.py, pooling.py, "
    "combinators.py and models.py is not applied; the specs_from_model walker is covered by "
    "the tests on tagged stand-ins.",
)

# VGG-small: conv3 x2, pool2, conv3 x2, pool2 (SAME convs, VALID 2x2 pools).
VGG_SPECS = [
    LayerSpec("conv1", 3, 1, 1),
    LayerSpec("conv2", 3, 1, 1),
    LayerSpec("pool1", 2, 2, 0),
    LayerSpec("conv3", 3, 1, 1),
    LayerSpec("conv4", 3, 1, 1),
    LayerSpec("pool2", 2, 2, 0),
]
VGG_RF = [3, 5, 6, 10, 14, 16]
VGG_JUMP = [1, 1, 2, 2, 2, 4]
VGG_START = [0.0, 0.0, 0.5, 0.5, 0.5, 1.5]

# LeNet-5 on 28x28: conv5 SAME (pad 2 each side), pool2 SAME (no pad on even sizes), twice.
LENET_SPECS = [
    LayerSpec("conv1", 5, 1, 2, out_size=(28, 28)),
    LayerSpec("pool1", 2, 2, 0, out_size=(14, 14)),
    LayerSpec("conv2", 5, 1, 2, out_size=(14, 14)),
    LayerSpec("pool2", 2, 2, 0, out_size=(7, 7)),
]
LENET_RF = [5, 6, 14, 16]
LENET_JUMP = [1, 2, 2, 4]
LENET_START = [0.0, 0.5, 0.5, 1.5]


def _column(rows, field):
    """One value per row, asserting it is the same in both spatial dims."""
    values = [getattr(r, field) for r in rows]
    assert all(len(set(v)) == 1 for v in values), values
    return [v[0] for v in values]


def test_doctests():
    result = doctest.testmod(rf_module)
    assert result.attempted >= 3 and result.failed == 0, result


def test_vgg_small_hand_computed():
    rows = receptive_field(VGG_SPECS)
    assert _column(rows, "rf") == VGG_RF
    assert _column(rows, "jump") == VGG_JUMP
    assert _column(rows, "start") == VGG_START


def test_lenet5_hand_computed():
    rows = receptive_field(LENET_SPECS)
    assert _column(rows, "rf") == LENET_RF
    assert _column(rows, "jump") == LENET_JUMP
    assert _column(rows, "start") == LENET_START
    assert [r.out_size for r in rows] == [(28, 28), (14, 14), (14, 14), (7, 7)]


def test_half_kernel_padding_centres_unit_x_at_stride_times_x():
    # The lecture: pad floor(F / 2) for every (odd) filter F, and the response at (x, y) has its
    # receptive field centred at (S x, S y) on the image, S the product of the strides.
    specs = [LayerSpec("a", 3, 1, 1), LayerSpec("b", 3, 2, 1), LayerSpec("c", 5, 2, 2)]
    last = receptive_field(specs)[-1]
    assert last.start == (0.0, 0.0) and last.jump == (4, 4)
    assert last.center((2, 3)) == (8.0, 12.0)
    assert last.rf == (13, 13)  # 1 + 2 + 2 * 1 + 4 * 2


def test_dilation_and_per_dim_sizes():
    rows = receptive_field(
        [LayerSpec("dil", (3, 1), 1, (2, 0), dilation=(2, 1)), LayerSpec("pool", (2, 1), (2, 1))]
    )
    assert rows[0].kernel == (5, 1) and rows[0].rf == (5, 1) and rows[0].start == (0.0, 0.0)
    assert rows[1].rf == (6, 1) and rows[1].jump == (2, 1) and rows[1].start == (0.5, 0.0)
    one_d = receptive_field([LayerSpec("c", 3)], ndim=1)
    assert one_d[0].rf == (3,) and one_d[0].start == (1.0,)  # VALID: unit 0 centred on pixel 1


def test_format_table():
    rows = receptive_field(VGG_SPECS[:3]) + receptive_field([LayerSpec("tall", (3, 1))])
    table = format_table(rows).splitlines()
    assert [c.strip() for c in table[0].strip("|").split("|")] == [
        "layer",
        "k'",
        "s",
        "pad lo",
        "RF",
        "jump",
        "start",
        "size",
        "note",
    ]
    assert set(table[1]) == {"|", "-"}
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    assert cells[2][:7] == ["pool1", "2", "2", "0", "6", "2", "0.5"]
    assert cells[3][1] == "3×1" and cells[3][4] == "3×1"
    assert len({len(line) for line in table}) == 1  # columns aligned


@pytest.mark.parametrize(
    "specs, kwargs, error, match",
    [
        ([LayerSpec("a", (3, 3)), LayerSpec("b", (3, 3, 3))], {}, ValueError, "same number of"),
        ([LayerSpec("a", (3, 3))], {"ndim": 3}, ValueError, r"`ndim` \(=3\) disagrees"),
        ([LayerSpec("a", 0)], {}, ValueError, "LayerSpec 'a': `kernel` entries must be >= 1"),
        ([LayerSpec("a", 3, padding_lo=-1)], {}, ValueError, "`padding_lo` entries must be >= 0"),
        ([LayerSpec("a", 3, stride=1.5)], {}, TypeError, "LayerSpec 'a': `stride` must be an int"),
        ([("a", 3)], {}, TypeError, "`specs` entry 0 must be a LayerSpec"),
    ],
)
def test_errors(specs, kwargs, error, match):
    with pytest.raises(error, match=match):
        receptive_field(specs, **kwargs)


# ---------------------------------------------------------------------------------------------
# The recurrence against the real thing: the support of d unit / d input.
# ---------------------------------------------------------------------------------------------


def _support(net, size, unit):
    """Per spatial dim, the (first, last) input index that unit ``unit`` of ``net`` depends on.

    All-ones kernels and average pooling: every path adds a positive amount, so the support of
    the gradient is exactly the part of the receptive field inside the image.
    """
    x = jnp.ones((1, 1, size, size), jnp.float64)
    _, params = net.init(jax.random.key(0), x.shape)
    y, pullback = jax.vjp(jax.jit(lambda x: net.apply(params, x)), x)
    g = jnp.zeros_like(y).at[(0, 0, *unit)].set(1.0)
    (dx,) = pullback(g)
    nz = np.nonzero(np.asarray(dx[0, 0]) > 0)
    return [(int(idx.min()), int(idx.max())) for idx in nz]


def _expected_support(row, unit, size):
    return [
        (max(0, round(c - (r - 1) / 2)), min(size - 1, round(c + (r - 1) / 2)))
        for c, r in zip(row.center(unit), row.rf)
    ]


def _ones_conv(k, **kw):
    return L.Conv(1, k, bias=False, w_init=fi.ones, **kw)


@pytest.mark.parametrize(
    "layers, specs, size, units",
    [
        # VGG-small geometry (avg pools for a positive gradient everywhere): interior and border
        (
            [
                _ones_conv(3, padding="SAME"),
                _ones_conv(3, padding="SAME"),
                L.AvgPool(2),
                _ones_conv(3, padding="SAME"),
                _ones_conv(3, padding="SAME"),
                L.AvgPool(2),
            ],
            VGG_SPECS,
            32,
            [(3, 4), (0, 0), (7, 2)],
        ),
        # strided SAME convs: total pad 1 goes on the high side, so pad_lo = 0 and start shifts
        (
            [_ones_conv(3, stride=2, padding="SAME"), _ones_conv(3, stride=2, padding="SAME")],
            [LayerSpec("s2", 3, 2, 0), LayerSpec("s2", 3, 2, 0)],
            16,
            [(1, 2), (0, 3)],
        ),
        # dilation, explicit asymmetric padding, overlapping pool
        (
            [_ones_conv(3, dilation=2, padding=((3, 1), (3, 1))), L.AvgPool(3, 2)],
            [LayerSpec("dil", 3, 1, 3, dilation=2), LayerSpec("pool", 3, 2)],
            15,
            [(2, 3), (0, 6)],
        ),
    ],
)
def test_recurrence_matches_gradient_support(layers, specs, size, units):
    net = L.serial(*layers)
    last = receptive_field(specs)[-1]
    for unit in units:
        assert _support(net, size, unit) == _expected_support(last, unit, size), unit
    interior = _support(net, size, units[0])
    assert [hi - lo + 1 for lo, hi in interior] == list(last.rf)  # a whole RF, unclipped


# ---------------------------------------------------------------------------------------------
# specs_from_model
# ---------------------------------------------------------------------------------------------


def _tag(layer, **meta):
    """A stand-in carrying the proposed metadata around a real layer (init/apply unchanged)."""
    children = meta.pop("children", ())
    return SimpleNamespace(init=layer.init, apply=layer.apply, meta=meta, children=children)


def _tagged_serial(*pairs):
    """``serial`` of (real layer, tagged stand-in) pairs: the real serial, tagged children."""
    real = L.serial(*(r for r, _ in pairs))
    return real, _tag(real, kind="serial", children=tuple(t for _, t in pairs))


def _plain(layer):
    return layer, layer


def _tagged_vgg():
    def conv(c):
        layer = L.Conv(c, 3, padding="SAME")
        meta = {"kernel": 3, "stride": 1, "padding": "SAME", "dilation": 1}
        return layer, _tag(layer, kind="conv", name="Conv", **meta)

    def pool():
        layer = L.MaxPool(2)
        return layer, _tag(layer, kind="pool", name="MaxPool", kernel=2, stride=2, padding="VALID")

    relu = _plain(L.Relu())
    pairs = [conv(8), relu, conv(8), relu, pool(), conv(16), relu, conv(16), relu, pool()]
    return _tagged_serial(*pairs, _plain(L.Flatten()), _plain(L.Dense(10)))[1]


def _rows(model, shape):
    return receptive_field(specs_from_model(model, shape))


def test_specs_from_tagged_stand_ins_match_the_hand_list():
    rows = _rows(_tagged_vgg(), (-1, 3, 32, 32))
    names = ["0:Conv", "2:Conv", "4:MaxPool", "5:Conv", "7:Conv", "9:MaxPool"]
    assert [r.name for r in rows] == names
    assert _column(rows, "rf") == VGG_RF and _column(rows, "jump") == VGG_JUMP
    assert _column(rows, "start") == VGG_START
    assert [r.out_size for r in rows] == [(32, 32)] * 2 + [(16, 16)] * 3 + [(8, 8)]


def test_specs_from_model_follows_the_residual_main_branch():
    conv_real = L.Conv(4, 3, stride=2, padding="SAME")
    conv = _tag(conv_real, kind="conv", kernel=3, stride=2, padding="SAME")
    block_real, block = _tagged_serial((conv_real, conv), _plain(L.Relu()))
    res_real = L.residual(block_real, L.Conv(4, 1, stride=2))
    res = _tag(res_real, kind="residual", children=(block, None))
    _, net = _tagged_serial((res_real, res), _plain(L.Relu()))
    (spec,) = specs_from_model(net, (-1, 4, 16, 16))
    assert spec.note == "residual main branch" and spec.name == "0.main.0:conv"
    assert spec.padding_lo == (0, 0) and spec.out_size == (8, 8)  # SAME, odd pad on the high side


def test_specs_from_model_errors():
    with pytest.raises(TypeError, match="needs layers that record their configuration"):
        specs_from_model(SimpleNamespace(init=None, meta=None), (-1, 1, 8, 8))
    _, net = _tagged_serial((L.MaxPool(2), _tag(L.MaxPool(2), kind=None)))
    with pytest.raises(ValueError, match="changes the spatial size .* no receptive-field metadata"):
        specs_from_model(net, (-1, 1, 8, 8))
    up = L.ConvTranspose(1, 2, stride=2)
    _, net = _tagged_serial((up, _tag(up, kind="conv_transpose")))
    with pytest.raises(NotImplementedError, match="kind 'conv_transpose'"):
        specs_from_model(net, (-1, 1, 4, 4))
    branches = _tag(L.parallel(L.Relu()), kind="parallel", children=(L.Relu(),))
    with pytest.raises(NotImplementedError, match="parallel branches"):
        specs_from_model(branches, ((-1, 1, 4, 4),))


@NEEDS_META
def test_specs_from_model_lenet5_and_vgg_small():
    lenet = _rows(models.lenet5(), (-1, 1, 28, 28))
    assert _column(lenet, "rf") == LENET_RF and _column(lenet, "jump") == LENET_JUMP
    assert _column(lenet, "start") == LENET_START
    assert [r.out_size for r in lenet] == [(28, 28), (14, 14), (14, 14), (7, 7)]
    vgg = _rows(models.vgg_small(), (-1, 3, 32, 32))
    assert _column(vgg, "rf") == VGG_RF and _column(vgg, "jump") == VGG_JUMP
    assert _column(vgg, "start") == VGG_START


@NEEDS_META
def test_specs_from_model_strided_nets():
    # all_conv_net on 32: SAME stride-2 convs pad (0, 1), shifting start by j_in each time;
    # the global average pool then spans the 8x8 map.
    acn = _rows(models.all_conv_net(), (-1, 3, 32, 32))
    assert _column(acn, "rf") == [3, 5, 7, 11, 15, 19, 27, 27, 27, 55]
    assert _column(acn, "jump") == [1, 1, 2, 2, 2, 4, 4, 4, 4, 4]
    assert _column(acn, "start") == [0, 0, 1, 1, 1, 3, 3, 3, 3, 17]
    # resnet_small: stem, then each block's main branch (rows marked), then the global pool.
    res = _rows(models.resnet_small(), (-1, 3, 32, 32))
    assert _column(res, "rf") == [3, 5, 7, 9, 13, 17, 25, 53]
    assert _column(res, "jump") == [1, 1, 1, 2, 2, 4, 4, 4]
    assert sum("residual main branch" in r.note for r in res) == 6
