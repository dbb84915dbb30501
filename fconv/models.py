"""Small classic conv nets built from ``fconv.layers``; each returns a ``Layer`` giving logits.

Every model function takes ``input_shape`` **without** the batch axis, ``(C, H, W)``, checks
at construction that the network fits it, and returns a ``Layer`` whose ``init`` and
``init_state`` default to ``(-1, *input_shape)``::

    >>> import jax, jax.numpy as jnp
    >>> model = lenet5(input_shape=(1, 8, 8))
    >>> out_shape, params = model.init(jax.random.key(0))
    >>> out_shape, model.apply(params, jnp.zeros((2, 1, 8, 8))).shape
    ((-1, 10), (2, 10))

``vjp="autodiff"`` builds the same network (same parameter tree, same init) on the ops'
autodiff twins, for gradient comparisons; ``vjp=None`` uses the current
``fconv.layers.default_vjp``. Models with ``BatchNorm`` (``resnet_small``, ``resnext_small``)
keep running statistics: ``apply(params, x, train=True, state=state)`` returns
``(logits, new_state)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from fconv.layers import (
    BatchNorm,
    Conv,
    Dense,
    Flatten,
    GlobalAvgPool,
    Identity,
    Layer,
    MaxPool,
    Relu,
    base,
    default_vjp,
    output_shape,
    residual,
    serial,
)

__all__ = [
    "all_conv_net",
    "lenet5",
    "resnet_small",
    "resnext_block",
    "resnext_small",
    "vgg_small",
]


def _check_model_args(where: str, num_classes: Any, input_shape: Any) -> tuple[int, ...]:
    base.check_int(num_classes, "num_classes", where)
    if (
        isinstance(input_shape, str)
        or not isinstance(input_shape, Sequence)
        or len(input_shape) != 3
        or not all(base.is_int(d) and d >= 1 for d in input_shape)
    ):
        raise ValueError(
            f"{where}: `input_shape` must be (C, H, W) without the batch axis, three positive "
            f"ints, got {input_shape!r}."
        )
    return tuple(int(d) for d in input_shape)


def _check_widths(where: str, widths: Any) -> tuple[int, ...]:
    if isinstance(widths, str) or not isinstance(widths, Sequence) or not widths:
        raise TypeError(f"{where}: `widths` must be a non-empty sequence of ints, got {widths!r}.")
    return tuple(base.check_int(w, "widths", where) for w in widths)


def _finish(where: str, net: Layer, input_shape: tuple[int, ...]) -> Layer:
    """Checks ``net`` fits ``input_shape`` now and defaults init's shape to it."""
    batch_shape = (-1, *input_shape)
    try:
        output_shape(net, batch_shape)
    except ValueError as e:
        raise ValueError(f"{where}: does not fit input_shape {input_shape}: {e}") from None

    def init(rng, input_shape=batch_shape):
        return net.init(rng, input_shape)

    def init_state(input_shape=batch_shape):
        return net.init_state(input_shape)

    return dataclasses.replace(net, init=init, init_state=init_state)  # keeps meta, children


def lenet5(
    num_classes: int = 10, input_shape: Sequence[int] = (1, 28, 28), *, vjp: str | None = None
) -> Layer:
    """LeNet-5 (LeCun et al. 1998) with ReLU and max pooling.

    ``conv5x5(6) - relu - maxpool2 - conv5x5(16) - relu - maxpool2 - fc120 - relu - fc84 - relu -
    fc(num_classes)``. The convs use ``"SAME"`` padding and the pools ``"SAME"`` (output
    ``ceil(H / 2)``), so any input from 1x1 up works: 28x28 MNIST (28 -> 14 -> 7) and 8x8
    scikit-learn digits (8 -> 4 -> 2) alike.

    Args:
      num_classes: output logits. Default 10.
      input_shape: ``(C, H, W)`` without the batch axis. Default ``(1, 28, 28)``.
      vjp: ``"custom"``, ``"autodiff"`` or None (the current ``default_vjp``).

    Returns:
      A ``Layer`` mapping ``(N, C, H, W)`` to logits ``(N, num_classes)``.
    """
    input_shape = _check_model_args("lenet5", num_classes, input_shape)
    with default_vjp(vjp):
        net = serial(
            Conv(6, 5, padding="SAME"), Relu(), MaxPool(2, padding="SAME"),
            Conv(16, 5, padding="SAME"), Relu(), MaxPool(2, padding="SAME"),
            Flatten(),
            Dense(120), Relu(),
            Dense(84), Relu(),
            Dense(num_classes),
        )  # fmt: skip
    return _finish("lenet5", net, input_shape)


def vgg_small(
    num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32), *, vjp: str | None = None
) -> Layer:
    """A two-stage VGG (Simonyan & Zisserman 2014), the benchmark network.

    ``conv3x3(32) - relu - conv3x3(32) - relu - maxpool2 - conv3x3(64) - relu - conv3x3(64) -
    relu - maxpool2 - flatten - fc256 - relu - fc(num_classes)``; convs ``"SAME"``, pools 2x2
    stride 2 ``"VALID"`` (32 -> 16 -> 8). Inputs need H, W >= 4.

    Args:
      num_classes: output logits. Default 10.
      input_shape: ``(C, H, W)``. Default ``(3, 32, 32)``.
      vjp: as for ``lenet5``.
    """
    input_shape = _check_model_args("vgg_small", num_classes, input_shape)
    with default_vjp(vjp):
        net = serial(
            Conv(32, 3, padding="SAME"), Relu(), Conv(32, 3, padding="SAME"), Relu(), MaxPool(2),
            Conv(64, 3, padding="SAME"), Relu(), Conv(64, 3, padding="SAME"), Relu(), MaxPool(2),
            Flatten(),
            Dense(256), Relu(),
            Dense(num_classes),
        )  # fmt: skip
    return _finish("vgg_small", net, input_shape)


def _conv_bn(channels: int, kernel: int, stride: int = 1, groups: int = 1) -> Layer:
    conv = Conv(channels, kernel, stride=stride, padding="SAME", groups=groups, bias=False)
    return serial(conv, BatchNorm())


def _shortcut(channels: int, stride: int) -> Layer:
    """Identity when the input already has ``channels`` and ``stride == 1``, else a projection.

    The projection is a strided 1x1 conv (no bias) and BatchNorm (He et al. 2016, option B);
    which one is used is decided from the input shape, at init and at apply alike.
    """
    identity = Identity()
    projection = _conv_bn(channels, 1, stride)

    def pick(shape) -> Layer:
        return identity if stride == 1 and shape[1] == channels else projection

    def apply(params, x, **kwargs):
        return pick(x.shape).apply(params, x, **kwargs)

    return Layer(
        lambda rng, shape: pick(shape).init(rng, shape),
        apply,
        lambda shape: pick(shape).init_state(shape),
    )


def _basic_block(channels: int, stride: int) -> Layer:
    block = serial(_conv_bn(channels, 3, stride), Relu(), _conv_bn(channels, 3))
    return serial(residual(block, _shortcut(channels, stride)), Relu())


def _stem_and_stages(widths, blocks_per_stage, make_block) -> list[Layer]:
    layers = [_conv_bn(widths[0], 3), Relu()]
    for i, width in enumerate(widths):
        for b in range(blocks_per_stage):
            layers.append(make_block(width, 2 if i > 0 and b == 0 else 1))
    return layers


def resnet_small(
    num_classes: int = 10,
    input_shape: Sequence[int] = (3, 32, 32),
    widths: Sequence[int] = (16, 32, 64),
    blocks_per_stage: int = 1,
    *,
    vjp: str | None = None,
) -> Layer:
    """A small ResNet (He et al. 2016) of basic blocks with BatchNorm.

    Stem ``conv3x3(widths[0]) - BN - relu``; then per stage ``i`` ``blocks_per_stage`` basic
    blocks ``relu(BN(conv3x3(relu(BN(conv3x3(x))))) + shortcut(x))``, the first block of every
    stage after the first with stride 2 and a strided 1x1 conv + BN projection shortcut; then
    global average pooling and ``fc(num_classes)``. Convs have no bias (BN follows).

    Args:
      num_classes: output logits. Default 10.
      input_shape: ``(C, H, W)``. Default ``(3, 32, 32)``.
      widths: channels per stage. Default ``(16, 32, 64)``.
      blocks_per_stage: basic blocks per stage. Default 1.
      vjp: as for ``lenet5``.
    """
    input_shape = _check_model_args("resnet_small", num_classes, input_shape)
    widths = _check_widths("resnet_small", widths)
    blocks_per_stage = base.check_int(blocks_per_stage, "blocks_per_stage", "resnet_small")
    with default_vjp(vjp):
        layers = _stem_and_stages(widths, blocks_per_stage, _basic_block)
        net = serial(*layers, GlobalAvgPool(), Dense(num_classes))
    return _finish("resnet_small", net, input_shape)


def all_conv_net(
    num_classes: int = 10,
    input_shape: Sequence[int] = (3, 32, 32),
    widths: Sequence[int] = (32, 64),
    *,
    vjp: str | None = None,
) -> Layer:
    """All-CNN-C (Springenberg et al. 2015) scaled down: strided convs instead of pooling.

    ``conv3x3(w0) x2 - conv3x3(w0, stride 2) - conv3x3(w1) x2 - conv3x3(w1, stride 2) -
    conv3x3(w1) - conv1x1(w1) - conv1x1(num_classes) - global average pool``, ReLU after every
    conv but the last, all ``"SAME"`` padding (the paper's widths are ``(96, 192)``; its dropout
    is left out so the model is deterministic; add ``Dropout`` layers with ``serial`` if wanted).

    Args:
      num_classes: output logits. Default 10.
      input_shape: ``(C, H, W)``. Default ``(3, 32, 32)``.
      widths: ``(w0, w1)`` channels of the two stages. Default ``(32, 64)``.
      vjp: as for ``lenet5``.
    """
    input_shape = _check_model_args("all_conv_net", num_classes, input_shape)
    widths = _check_widths("all_conv_net", widths)
    if len(widths) != 2:
        raise ValueError(f"all_conv_net: `widths` must have 2 entries, got {widths}.")
    w0, w1 = widths
    with default_vjp(vjp):
        net = serial(
            Conv(w0, 3, padding="SAME"), Relu(),
            Conv(w0, 3, padding="SAME"), Relu(),
            Conv(w0, 3, stride=2, padding="SAME"), Relu(),
            Conv(w1, 3, padding="SAME"), Relu(),
            Conv(w1, 3, padding="SAME"), Relu(),
            Conv(w1, 3, stride=2, padding="SAME"), Relu(),
            Conv(w1, 3, padding="SAME"), Relu(),
            Conv(w1, 1), Relu(),
            Conv(num_classes, 1),
            GlobalAvgPool(),
        )  # fmt: skip
    return _finish("all_conv_net", net, input_shape)


def resnext_block(
    channels: int,
    cardinality: int = 8,
    bottleneck_width: int = 4,
    stride: int = 1,
    *,
    vjp: str | None = None,
) -> Layer:
    """A ResNeXt bottleneck block (Xie et al. 2017, form (c): a grouped convolution).

    ``relu(BN(conv1x1(channels)(relu(BN(gconv3x3(D, stride, groups=cardinality)(relu(BN(
    conv1x1(D)(x))))))) + shortcut(x))`` with ``D = cardinality * bottleneck_width``. The shortcut
    is the identity when the input has ``channels`` channels and ``stride == 1``, otherwise a
    strided 1x1 conv + BN projection (chosen from the input shape at init).

    Args:
      channels: output channels.
      cardinality: groups of the 3x3 conv. Default 8.
      bottleneck_width: channels per group. Default 4.
      stride: stride of the 3x3 conv and of the projection. Default 1.
      vjp: as for ``lenet5``.

    Returns:
      A ``Layer`` mapping ``(N, C, H, W)`` to ``(N, channels, ceil(H / s), ceil(W / s))``.

    >>> import jax
    >>> resnext_block(64, stride=2).init(jax.random.key(0), (-1, 32, 8, 8))[0]
    (-1, 64, 4, 4)
    """
    channels = base.check_int(channels, "channels", "resnext_block")
    cardinality = base.check_int(cardinality, "cardinality", "resnext_block")
    bottleneck_width = base.check_int(bottleneck_width, "bottleneck_width", "resnext_block")
    stride = base.check_int(stride, "stride", "resnext_block")
    d = cardinality * bottleneck_width
    with default_vjp(vjp):
        block = serial(
            _conv_bn(d, 1), Relu(),
            _conv_bn(d, 3, stride, groups=cardinality), Relu(),
            _conv_bn(channels, 1),
        )  # fmt: skip
        return serial(residual(block, _shortcut(channels, stride)), Relu())


def resnext_small(
    num_classes: int = 10,
    input_shape: Sequence[int] = (3, 32, 32),
    widths: Sequence[int] = (32, 64),
    blocks_per_stage: int = 1,
    cardinality: int = 8,
    bottleneck_width: int = 4,
    *,
    vjp: str | None = None,
) -> Layer:
    """A small ResNeXt: ``resnet_small``'s layout with ``resnext_block`` stages.

    Stem ``conv3x3(widths[0]) - BN - relu``; per stage ``blocks_per_stage`` ResNeXt blocks (the
    first of every later stage with stride 2); global average pooling; ``fc(num_classes)``.

    Args:
      num_classes: output logits. Default 10.
      input_shape: ``(C, H, W)``. Default ``(3, 32, 32)``.
      widths: output channels per stage. Default ``(32, 64)``.
      blocks_per_stage: blocks per stage. Default 1.
      cardinality, bottleneck_width: as for ``resnext_block`` (defaults 8 and 4).
      vjp: as for ``lenet5``.
    """
    input_shape = _check_model_args("resnext_small", num_classes, input_shape)
    widths = _check_widths("resnext_small", widths)
    blocks_per_stage = base.check_int(blocks_per_stage, "blocks_per_stage", "resnext_small")

    def make_block(width, stride):
        return resnext_block(width, cardinality, bottleneck_width, stride)

    with default_vjp(vjp):
        layers = _stem_and_stages(widths, blocks_per_stage, make_block)
        net = serial(*layers, GlobalAvgPool(), Dense(num_classes))
    return _finish("resnext_small", net, input_shape)
