"""Pooling layers: ``MaxPool``, ``AvgPool`` and the global pools that end a conv net."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from fconv import ops
from fconv.layers import base
from fconv.ops import _canon

__all__ = ["AvgPool", "GlobalAvgPool", "GlobalMaxPool", "MaxPool"]


def _pool(where, op, window, stride, padding, layout, vjp, **kwargs) -> base.Layer:
    window = base.check_ints(window, "window", where)
    stride = None if stride is None else base.check_ints(stride, "stride", where)
    padding = base.check_padding(padding, where)
    base.check_layout(layout, where)
    vjp = base.resolve_vjp(vjp)
    op = functools.partial(
        op, window=window, stride=stride, padding=padding, layout=layout, vjp=vjp, **kwargs
    )

    def fn(params, x, rng=None, train=False):
        return op(x)

    def init(rng, input_shape):
        input_shape = base.check_input_shape(input_shape, where, ranks=(3, 4, 5))
        return base.infer_shape(fn, {}, input_shape), {}

    return base.leaf(where, init, fn, _meta(where, window, stride, padding, layout))


def _meta(where, window, stride, padding, layout) -> dict:
    """Configuration for ``Layer.meta`` (read by ``fconv.receptive_field``)."""
    stride = window if stride is None else stride
    return {"kind": "pool", "name": where, "kernel": window, "stride": stride,
            "padding": padding, "dilation": 1, "layout": layout}  # fmt: skip


def MaxPool(
    window: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: _canon.Padding = "VALID",
    *,
    layout: str = "channels_first",
    vjp: str | None = None,
) -> base.Layer:
    """Max pooling layer: partial application of ``fconv.ops.max_pool``.

    Args:
      window: window size, an int (every spatial dim) or one per spatial dim.
      stride: an int or one per spatial dim. Default None: equal to ``window``.
      padding: ``"VALID"`` (default), ``"SAME"`` (output ``ceil(N / s)``, odd extra pad on the
        high side), ``"FULL"``, ints or ``(lo, hi)`` pairs; pads are ``-inf`` and must be smaller
        than the window.
      layout: ``"channels_first"`` (default, ``(N, C, *spatial)``) or ``"channels_last"``.
      vjp: ``"custom"``, ``"autodiff"`` or None (default: the current ``default_vjp``).

    Returns:
      A parameter-free ``Layer``.

    >>> MaxPool(2).init(None, (-1, 6, 28, 28))
    ((-1, 6, 14, 14), {})
    """
    return _pool("MaxPool", ops.max_pool, window, stride, padding, layout, vjp)


def AvgPool(
    window: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: _canon.Padding = "VALID",
    *,
    count_include_pad: bool = True,
    layout: str = "channels_first",
    vjp: str | None = None,
) -> base.Layer:
    """Average pooling layer: partial application of ``fconv.ops.avg_pool``.

    Args:
      window, stride, padding, layout, vjp: as for ``MaxPool`` (padding is zeros).
      count_include_pad: divide by the full window size (True, default, as PyTorch) or by the
        number of real input cells in each window (False).

    Returns:
      A parameter-free ``Layer``.

    >>> AvgPool(3, stride=1, padding="SAME").init(None, (-1, 6, 28, 28))
    ((-1, 6, 28, 28), {})
    """
    count_include_pad = base.check_bool(count_include_pad, "count_include_pad", "AvgPool")
    pool = ops.avg_pool
    return _pool(
        "AvgPool", pool, window, stride, padding, layout, vjp, count_include_pad=count_include_pad
    )


def _global(where: str, op, layout: str, vjp: str | None) -> base.Layer:
    last = base.check_layout(layout, where)
    vjp = base.resolve_vjp(vjp)

    def fn(params, x, rng=None, train=False):
        spatial = x.shape[1:-1] if last else x.shape[2:]
        y = op(x, spatial, layout=layout, vjp=vjp)
        return y.reshape(x.shape[0], x.shape[-1] if last else x.shape[1])

    def init(rng, input_shape):
        input_shape = base.check_input_shape(input_shape, where, ranks=(3, 4, 5))
        return base.infer_shape(fn, {}, input_shape), {}

    return base.leaf(where, init, fn, {"kind": "global_pool", "name": where, "layout": layout})


def GlobalAvgPool(*, layout: str = "channels_first", vjp: str | None = None) -> base.Layer:
    """Mean over every spatial position: ``(N, C, *spatial) -> (N, C)``.

    An ``avg_pool`` whose window is the whole feature map, then a reshape.

    >>> GlobalAvgPool().init(None, (-1, 64, 8, 8))
    ((-1, 64), {})
    """
    return _global("GlobalAvgPool", ops.avg_pool, layout, vjp)


def GlobalMaxPool(*, layout: str = "channels_first", vjp: str | None = None) -> base.Layer:
    """Max over every spatial position: ``(N, C, *spatial) -> (N, C)``.

    >>> GlobalMaxPool().init(None, (-1, 64, 8, 8))
    ((-1, 64), {})
    """
    return _global("GlobalMaxPool", ops.max_pool, layout, vjp)
