"""Layers for the wider pooling family: Lp, maxout, adaptive, spatial pyramid and ROI pooling.

Each is a parameter-free partial application of the op of the same name in
``fconv.ops.pooling_family``; the ops are channels-first, ``(N, C, *spatial)``. (Global pooling
layers are ``GlobalAvgPool`` / ``GlobalMaxPool`` in ``fconv.layers.pooling``.)

``RoiMaxPool`` is the one layer with two inputs: it applies to a ``(features, boxes)`` pair, the
tuple convention of ``FanOut`` / ``parallel``, so a detector head reads
``serial(parallel(backbone, Identity()), RoiMaxPool(7, 1 / 16), Flatten(), Dense(...))``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fconv import ops
from fconv.layers import base, pooling
from fconv.ops import _canon

__all__ = [
    "AdaptiveAvgPool",
    "AdaptiveMaxPool",
    "LpPool",
    "Maxout",
    "RoiMaxPool",
    "SpatialPyramidPool",
]


def _pool_layer(
    where: str, op, ranks: Sequence[int] | None = (3, 4, 5), meta: dict | None = None
) -> base.Layer:
    """A parameter-free layer ``y = op(x)``; init checks the rank and traces the shape."""

    def fn(params, x, rng=None, train=False):
        return op(x)

    def init(rng, input_shape):
        input_shape = base.check_input_shape(input_shape, where, ranks=ranks)
        return base.infer_shape(fn, {}, input_shape), {}

    return base.leaf(where, init, fn, meta)


def LpPool(
    p: float,
    window: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: _canon.Padding = "VALID",
    *,
    vjp: str | None = None,
) -> base.Layer:
    """Lp pooling layer ``y = (sum_window |x|^p)^(1/p)``: partial application of
    ``fconv.ops.lp_pool``. ``p=2`` is the lectures' L2-norm pooling; ``p=1`` sums ``|x|``.

    Args:
      p: the norm's order, a finite number ``>= 1``.
      window: window size, an int (every spatial dim) or one per spatial dim.
      stride: an int or one per spatial dim. Default None: equal to ``window``.
      padding: as for ``MaxPool`` (zero padding here, each pad smaller than the window).
        Default ``"VALID"``.
      vjp: ``"custom"``, ``"autodiff"`` or None (default: the current ``default_vjp``).

    Returns:
      A parameter-free ``Layer`` on ``(N, C, *spatial)``, 1 to 3 spatial dims.

    Raises:
      ValueError: ``p`` not finite or ``< 1``; bad window, stride or padding.
      TypeError: ``p`` not a number; non-int sizes.

    >>> out_shape, params = LpPool(2, 2).init(None, (-1, 6, 28, 28))
    >>> out_shape, params
    ((-1, 6, 14, 14), {})
    """
    where = "LpPool"
    p = base.check_real(p, "p", where)
    if not (p >= 1 and p != float("inf")):
        raise ValueError(f"{where}: `p` must be a finite number >= 1, got {p!r}.")
    window = base.check_ints(window, "window", where)
    stride = None if stride is None else base.check_ints(stride, "stride", where)
    padding = base.check_padding(padding, where)
    op = functools.partial(
        ops.lp_pool, p=p, window=window, stride=stride, padding=padding, vjp=base.resolve_vjp(vjp)
    )
    meta = pooling._meta(where, window, stride, padding, "channels_first")
    return _pool_layer(where, op, meta=meta)


def Maxout(num_pieces: int, *, axis: int = 1, vjp: str | None = None) -> base.Layer:
    """Maxout layer (cross-channel pooling): partial application of ``fconv.ops.maxout``.

    ``y[:, j] = max(x[:, j k], ..., x[:, j k + k - 1])`` with ``k = num_pieces``; the gradient
    goes to the first maximum. Works after a ``Conv`` (``(N, C, H, W)``) or a ``Dense``
    (``(N, F)``) alike.

    Args:
      num_pieces: k >= 1; must divide the input's size on ``axis`` (checked at init).
      axis: the channel axis. Default 1.
      vjp: ``"custom"``, ``"autodiff"`` or None (default: the current ``default_vjp``).

    Returns:
      A parameter-free ``Layer`` dividing the size on ``axis`` by ``num_pieces``.

    Raises:
      ValueError: ``num_pieces < 1`` (now); ``num_pieces`` not dividing the channels, or ``axis``
        out of range or the batch axis (at init).
      TypeError: ``num_pieces`` or ``axis`` not an int.

    >>> out_shape, params = Maxout(4).init(None, (-1, 32, 8, 8))
    >>> out_shape, params
    ((-1, 8, 8, 8), {})
    """
    where = "Maxout"
    num_pieces = base.check_int(num_pieces, "num_pieces", where)
    axis = base.check_axis(axis, where)
    op = functools.partial(ops.maxout, num_pieces=num_pieces, axis=axis, vjp=base.resolve_vjp(vjp))
    layer = _pool_layer(where, op, ranks=None)

    def init(rng, input_shape):
        input_shape = base.check_input_shape(input_shape, where)
        rank = len(input_shape)
        if not -rank < axis < rank or axis % rank == 0:
            raise ValueError(
                f"{where}: `axis` (={axis}) must name a non-batch axis of input_shape "
                f"{input_shape}."
            )
        return layer.init(rng, input_shape)

    return base.Layer(init, layer.apply)


def _adaptive(where: str, op, output_size: Any, vjp: str | None) -> base.Layer:
    output_size = base.check_ints(output_size, "output_size", where)
    op = functools.partial(op, output_size=output_size, vjp=base.resolve_vjp(vjp))
    meta = {"kind": "adaptive_pool", "name": where, "output_size": output_size}
    return _pool_layer(where, op, meta=meta)


def AdaptiveAvgPool(output_size: int | Sequence[int], *, vjp: str | None = None) -> base.Layer:
    """Average pooling to a fixed output size: partial application of
    ``fconv.ops.adaptive_avg_pool`` (PyTorch ``AdaptiveAvgPoolNd`` bins: output ``i`` of ``M``
    averages input cells ``floor(i N / M) <= j < ceil((i + 1) N / M)``).

    Args:
      output_size: M, an int (every spatial dim) or one per spatial dim.
      vjp: ``"custom"``, ``"autodiff"`` or None (default: the current ``default_vjp``).

    Returns:
      A parameter-free ``Layer``: ``(N, C, *spatial) -> (N, C, *output_size)`` for any spatial
      size, so a classifier head after it accepts any image size.

    Raises:
      ValueError / TypeError: ``output_size`` entries not ints ``>= 1`` (now), or the wrong
        number of them for the input (at init).

    >>> out_shape, params = AdaptiveAvgPool((2, 3)).init(None, (-1, 16, 13, 9))
    >>> out_shape, params
    ((-1, 16, 2, 3), {})
    """
    return _adaptive("AdaptiveAvgPool", ops.adaptive_avg_pool, output_size, vjp)


def AdaptiveMaxPool(output_size: int | Sequence[int], *, vjp: str | None = None) -> base.Layer:
    """Max pooling to a fixed output size: partial application of ``fconv.ops.adaptive_max_pool``.

    Bins as for ``AdaptiveAvgPool``; each output's gradient goes to the first maximum of its bin
    (row-major), overlapping bins add up.

    Args:
      output_size: M, an int or one per spatial dim.
      vjp: ``"custom"``, ``"autodiff"`` or None (default: the current ``default_vjp``).

    Returns:
      A parameter-free ``Layer``: ``(N, C, *spatial) -> (N, C, *output_size)``.

    Raises:
      ValueError / TypeError: as for ``AdaptiveAvgPool``.

    >>> out_shape, params = AdaptiveMaxPool(4).init(None, (-1, 16, 13, 9))
    >>> out_shape, params
    ((-1, 16, 4, 4), {})
    """
    return _adaptive("AdaptiveMaxPool", ops.adaptive_max_pool, output_size, vjp)


def SpatialPyramidPool(
    levels: Sequence[int] = (1, 2, 4), mode: str = "max", *, vjp: str | None = None
) -> base.Layer:
    """Spatial pyramid pooling (SPP-net): partial application of
    ``fconv.ops.spatial_pyramid_pool``.

    For each level ``l``, an adaptive pool to ``l`` bins per spatial dim, flattened and
    concatenated: a fixed-length vector from any input size, ready for ``Dense``.

    Args:
      levels: positive ints, the bins per dim at each level. Default ``(1, 2, 4)``.
      mode: ``"max"`` (default) or ``"avg"``.
      vjp: ``"custom"``, ``"autodiff"`` or None (default: the current ``default_vjp``).

    Returns:
      A parameter-free ``Layer``: ``(N, C, *spatial) -> (N, C * sum(l^n for l in levels))``.

    Raises:
      ValueError: unknown ``mode``, empty ``levels`` or a level ``< 1``.
      TypeError: non-int levels.

    >>> out_shape, params = SpatialPyramidPool().init(None, (-1, 3, 13, 9))
    >>> out_shape, params
    ((-1, 63), {})
    """
    where = "SpatialPyramidPool"
    if mode not in ("max", "avg"):
        raise ValueError(f"{where}: `mode` must be 'max' or 'avg', got {mode!r}.")
    if isinstance(levels, str) or not isinstance(levels, Sequence) or not levels:
        raise ValueError(
            f"{where}: `levels` must be a non-empty sequence of ints >= 1, got {levels!r}."
        )
    levels = tuple(base.check_int(lv, "levels", where) for lv in levels)
    op = functools.partial(
        ops.spatial_pyramid_pool, levels=levels, mode=mode, vjp=base.resolve_vjp(vjp)
    )
    return _pool_layer(where, op, meta={"kind": "spp", "name": where, "levels": levels})


def RoiMaxPool(
    output_size: int | Sequence[int], spatial_scale: float = 1.0, *, vjp: str | None = None
) -> base.Layer:
    """ROI max pooling (Fast R-CNN) on a ``(features, boxes)`` pair: partial application of
    ``fconv.ops.roi_max_pool`` (torchvision ``roi_pool`` quantisation).

    The input is a 2-tuple, as ``parallel`` produces: ``features`` ``(N, C, H, W)`` and
    ``boxes`` ``(K, 5)`` floating rows ``(batch_index, x1, y1, x2, y2)`` in input coordinates.
    The output's leading axis is the ROI count K, not the batch size. The boxes get a zero
    gradient (their coordinates are quantised).

    Args:
      output_size: ``(PH, PW)`` or an int for both.
      spatial_scale: factor from box coordinates to feature cells (e.g. ``1 / 16``). Default 1.
      vjp: ``"custom"``, ``"autodiff"`` or None (default: the current ``default_vjp``).

    Returns:
      A parameter-free ``Layer``: ``((N, C, H, W), (K, 5)) -> (K, C, PH, PW)``.

    Raises:
      ValueError: ``output_size`` entries ``< 1`` or ``spatial_scale <= 0`` (now); input shapes
        that are not a ``((N, C, H, W), (K, 5))`` pair (at init).
      TypeError: non-int ``output_size``, non-number ``spatial_scale``.

    >>> out_shape, params = RoiMaxPool(7, 1 / 16).init(None, ((-1, 256, 14, 14), (-1, 5)))
    >>> out_shape, params
    ((-1, 256, 7, 7), {})
    """
    where = "RoiMaxPool"
    output_size = base.check_ints(output_size, "output_size", where)
    spatial_scale = base.check_real(spatial_scale, "spatial_scale", where)
    if not (0 < spatial_scale < float("inf")):
        raise ValueError(
            f"{where}: `spatial_scale` must be a positive finite number, got {spatial_scale!r}."
        )
    vjp = base.resolve_vjp(vjp)

    def fn(params, inputs, rng=None, train=False):
        x, boxes = inputs
        return ops.roi_max_pool(x, boxes, output_size, spatial_scale, vjp=vjp)

    def init(rng, input_shape):
        if (
            not isinstance(input_shape, (tuple, list))
            or len(input_shape) != 2
            or not all(isinstance(s, (tuple, list)) for s in input_shape)
        ):
            raise TypeError(
                f"{where}: input must be a (features, boxes) pair with shapes "
                f"((N, C, H, W), (K, 5)), e.g. from parallel(backbone, Identity()), got "
                f"{input_shape!r}."
            )
        x_shape = base.check_input_shape(input_shape[0], where, ranks=(4,))
        b_shape = base.check_input_shape(input_shape[1], where, ranks=(2,))
        if b_shape[1] != 5:
            raise ValueError(
                f"{where}: boxes must have shape (K, 5) with rows (batch_index, x1, y1, x2, y2), "
                f"got {b_shape}."
            )
        concrete = [(1 if s[0] == -1 else s[0], *s[1:]) for s in (x_shape, b_shape)]
        args = [jax.ShapeDtypeStruct(s, jnp.float32) for s in concrete]
        out = tuple(jax.eval_shape(lambda x, b: fn({}, (x, b)), *args).shape)
        return (b_shape[0], *out[1:]), {}

    meta = {"kind": "roi_pool", "name": where, "output_size": output_size}
    return base.leaf(where, init, fn, meta)
