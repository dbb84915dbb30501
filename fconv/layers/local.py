"""Layers for the other kinds of connectivity: ``LocallyConnected``, ``TiledConv``, ``Im2colConv``.

Thin partial applications of ``fconv.ops.locally_connected``, ``fconv.ops.tiled_conv`` and
``fconv.ops.conv_im2col`` (Goodfellow ch. 9, "Kinds of connectivity": local connection, tiled
convolution, convolution; and the "serialisation" way of computing a convolution). The ops are
channels-first, so these layers take ``(N, C, *spatial)`` inputs with 1 to 3 spatial dims.

Kernel layouts (one OIHW kernel per output position / per tile):

* ``LocallyConnected``: ``w`` is ``(*out_spatial, O, C, *K)``, ``b`` is ``(*out_spatial, O)``
  (nothing is shared, the bias included);
* ``TiledConv``: ``w`` is ``(*tile, O, C, *K)``, ``b`` is ``(O,)``;
* ``Im2colConv``: ``w`` is ``(O, C / groups, *K)``, ``b`` is ``(O,)``: the same parameters as
  ``Conv``, so the two are interchangeable.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fconv import init as initializers
from fconv import ops
from fconv.layers import base
from fconv.layers.conv import _check_common, _drawer, _layer, _meta
from fconv.ops import _canon

__all__ = ["Im2colConv", "LocallyConnected", "TiledConv"]


def _per_dim(value: Any, n: int, name: str, where: str, minimum: int = 1) -> tuple[int, ...]:
    try:
        return _canon.ntuple(value, n, name, minimum=minimum)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{where}: {e}") from None


def _out_spatial(where, in_spatial, kernel, stride, padding, dilation) -> tuple[int, ...]:
    """Output size ``floor((N + lo + hi - K') / s) + 1`` per dim, as ``fconv.ops.conv`` has it."""
    n = len(in_spatial)
    k = _per_dim(kernel, n, "kernel_size", where)
    s = _per_dim(stride, n, "stride", where)
    d = _per_dim(dilation, n, "dilation", where)
    eff = [di * (ki - 1) + 1 for ki, di in zip(k, d)]
    try:
        pads = _canon.resolve_padding(padding, in_spatial, eff, s)
        _canon.check_window_fits(in_spatial, eff, pads, "kernel")
    except (TypeError, ValueError) as e:
        raise type(e)(f"{where}: {e}") from None
    return tuple(_canon.output_size(*args) for args in zip(in_spatial, eff, s, pads))


def _spatial_input(input_shape: Any, where: str) -> tuple[int, ...]:
    return base.check_input_shape(input_shape, where, ranks=(3, 4, 5))


def _per_position_draw(w_init, b_init, bias: bool, dtype: Any):
    """Draws ``(*lead, O, C, *K)`` as ``prod(lead)`` independent OIHW kernels ``(O, C, *K)``.

    ``w_init`` sees one position's kernel shape, so any conv initializer computes the right fans
    (``fan_in = C prod(K)``); the keys are split per position.
    """

    def draw(rng, lead, kernel_shape, bias_shape) -> dict[str, jax.Array]:
        k_w, k_b = jax.random.split(rng)
        keys = jax.random.split(k_w, math.prod(lead))
        w = jax.vmap(lambda key: w_init(key, kernel_shape, dtype))(keys)
        params = {"w": w.reshape(*lead, *kernel_shape)}
        if bias:
            params["b"] = b_init(k_b, bias_shape, dtype)
        return params

    return draw


def _check_unshared(where, out_channels, kernel_size, stride, padding, dilation):
    out_channels = base.check_int(out_channels, "out_channels", where)
    kernel_size = base.check_ints(kernel_size, "kernel_size", where)
    stride = base.check_ints(stride, "stride", where)
    dilation = base.check_ints(dilation, "dilation", where)
    padding = base.check_padding(padding, where)
    return out_channels, kernel_size, stride, padding, dilation


def LocallyConnected(
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: _canon.Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    bias: bool = True,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer = initializers.zeros,
    param_dtype: Any = jnp.float32,
    precision: Any = None,
    vjp: str | None = None,
) -> base.Layer:
    """Unshared convolution ("local connection"): partial application of
    ``fconv.ops.locally_connected``.

    The windows are those of ``Conv`` with the same stride/padding/dilation, but every output
    position has its own kernel and its own bias. Parameters: ``M_1...M_n O C K_1...K_n`` weights,
    where ``M`` is the output size, fixed by the input size at ``init``.

    Args:
      out_channels: output channels O.
      kernel_size: kernel size K, an int or one per spatial dim.
      stride: an int or one per spatial dim. Default 1.
      padding: as for ``Conv``: ``"VALID"`` (default), ``"SAME"`` (odd extra pixel on the high
        side), ``"FULL"``, an int, ints per dim or ``(lo, hi)`` pairs; zero padding.
      dilation: an int or one per spatial dim. Default 1.
      bias: add a learned per-position bias ``(*out_spatial, O)``. Default True.
      w_init: initializer of ONE position's OIHW kernel ``(O, C, *K)``, called once per output
        position with independent keys (under ``jax.vmap``, so it must be traceable, as every
        ``fconv.init`` initializer is). Default ``he_normal()`` (``fan_in = C prod(K)``).
      b_init: initializer of the ``(*out_spatial, O)`` bias. Default zeros.
      param_dtype: dtype of the parameters. Default float32.
      precision: forwarded to ``lax.dot_general``.
      vjp: ``"custom"`` (hand-written backward rule), ``"autodiff"`` (the op's autodiff twin) or
        None (default: the current ``default_vjp``, read now).

    Returns:
      A ``Layer`` mapping ``(N, C, *spatial)`` to ``(N, O, *out_spatial)``, params
      ``{"w": (*out_spatial, O, C, *K), "b": (*out_spatial, O)}`` (no ``"b"`` if ``bias=False``).

    Raises:
      ValueError: non-positive sizes or unknown padding (now); an input that is not 3- to 5-D or
        a kernel larger than the padded input (at init).
      TypeError: non-int sizes.

    >>> import jax
    >>> out_shape, params = LocallyConnected(4, 3).init(jax.random.key(0), (-1, 2, 6, 6))
    >>> out_shape, params["w"].shape, params["b"].shape
    ((-1, 4, 4, 4), (4, 4, 4, 2, 3, 3), (4, 4, 4))
    """
    where = "LocallyConnected"
    out_channels, kernel_size, stride, padding, dilation = _check_unshared(
        where, out_channels, kernel_size, stride, padding, dilation
    )
    draw = _per_position_draw(
        initializers.he_normal() if w_init is None else w_init, b_init, bias, param_dtype
    )
    op = functools.partial(
        ops.locally_connected,
        stride=stride,
        padding=padding,
        dilation=dilation,
        precision=precision,
        vjp=base.resolve_vjp(vjp),
    )

    def fn(params, x, rng=None, train=False):
        return op(x, params["w"], params.get("b"))

    def init(rng, input_shape):
        input_shape = _spatial_input(input_shape, where)
        n = len(input_shape) - 2
        out = _out_spatial(where, input_shape[2:], kernel_size, stride, padding, dilation)
        k = _per_dim(kernel_size, n, "kernel_size", where)
        params = draw(rng, out, (out_channels, input_shape[1], *k), (*out, out_channels))
        return base.infer_shape(fn, params, input_shape), params

    meta = _meta("conv", where, kernel_size, stride, padding, dilation, "channels_first")
    return base.leaf(where, init, fn, meta)


def TiledConv(
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    tile: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: _canon.Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    bias: bool = True,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer = initializers.zeros,
    param_dtype: Any = jnp.float32,
    precision: Any = None,
    vjp: str | None = None,
) -> base.Layer:
    """Tiled convolution: partial application of ``fconv.ops.tiled_conv``.

    ``t`` kernels per spatial dim, cycled across the output positions: position ``m`` uses kernel
    ``w[m mod t]``. ``tile=1`` is ``Conv`` (one kernel shared everywhere); ``tile`` equal to the
    output size is ``LocallyConnected`` without its per-position bias.

    Args:
      out_channels: output channels O.
      kernel_size: kernel size K, an int or one per spatial dim.
      tile: the period t (required), an int or one per spatial dim; ``1 <= t <= M`` (the output
        size, checked at init).
      stride, padding, dilation, precision, vjp: as for ``LocallyConnected``.
      bias: add a learned ``(O,)`` bias shared by all positions. Default True.
      w_init: initializer of ONE tile's OIHW kernel ``(O, C, *K)``, called once per tile.
        Default ``he_normal()``.
      b_init: bias initializer. Default zeros.
      param_dtype: dtype of the parameters. Default float32.

    Returns:
      A ``Layer`` mapping ``(N, C, *spatial)`` to ``(N, O, *out_spatial)``, params
      ``{"w": (*tile, O, C, *K), "b": (O,)}``.

    Raises:
      ValueError: non-positive sizes (now); a tile larger than the output, a wrong input rank or
        a kernel larger than the padded input (at init).
      TypeError: non-int sizes.

    >>> import jax
    >>> out_shape, params = TiledConv(4, 3, tile=2).init(jax.random.key(0), (-1, 2, 6, 6))
    >>> out_shape, params["w"].shape, params["b"].shape
    ((-1, 4, 4, 4), (2, 2, 4, 2, 3, 3), (4,))
    """
    where = "TiledConv"
    out_channels, kernel_size, stride, padding, dilation = _check_unshared(
        where, out_channels, kernel_size, stride, padding, dilation
    )
    tile = base.check_ints(tile, "tile", where)
    draw = _per_position_draw(
        initializers.he_normal() if w_init is None else w_init, b_init, bias, param_dtype
    )
    op = functools.partial(
        ops.tiled_conv,
        tile=tile,
        stride=stride,
        padding=padding,
        dilation=dilation,
        precision=precision,
        vjp=base.resolve_vjp(vjp),
    )

    def init(rng, input_shape):
        input_shape = _spatial_input(input_shape, where)
        n = len(input_shape) - 2
        out = _out_spatial(where, input_shape[2:], kernel_size, stride, padding, dilation)
        t = _per_dim(tile, n, "tile", where)
        if any(ti > mi for ti, mi in zip(t, out)):
            raise ValueError(
                f"{where}: `tile` {t} must not exceed the output size {out} of input_shape "
                f"{input_shape} (kernels beyond it would never be used)."
            )
        k = _per_dim(kernel_size, n, "kernel_size", where)
        params = draw(rng, t, (out_channels, input_shape[1], *k), (out_channels,))
        return base.infer_shape(fn, params, input_shape), params

    def fn(params, x, rng=None, train=False):
        return op(x, params["w"], params.get("b"))

    meta = _meta("conv", where, kernel_size, stride, padding, dilation, "channels_first")
    return base.leaf(where, init, fn, meta)


def Im2colConv(
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: _canon.Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    bias: bool = True,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer = initializers.zeros,
    param_dtype: Any = jnp.float32,
    precision: Any = None,
    vjp: str | None = None,
) -> base.Layer:
    """``Conv`` computed by serialisation: partial application of ``fconv.ops.conv_im2col``.

    Same parameters, initializer and results as ``Conv`` (channels-first); the forward pass is
    one large dot product of unrolled patches with the kernel read as a matrix, and the backward
    rule is ``dW = g patchesᵀ``, ``dx = col2im(Wᵀ g)``. The patches take ``prod(K)`` times the
    input's memory.

    Args:
      out_channels, kernel_size, stride, padding, dilation, groups, bias, b_init, param_dtype,
        precision, vjp: as for ``Conv``.
      w_init: kernel initializer. Default ``he_normal()`` (``fan_in = C / groups * prod(K)``).

    Returns:
      A ``Layer`` with params ``{"w": (O, C / groups, *K), "b": (O,)}``.

    Raises:
      ValueError / TypeError: as for ``Conv``.

    >>> import jax
    >>> out_shape, params = Im2colConv(8, 3, padding="SAME").init(jax.random.key(0), (-1, 3, 8, 8))
    >>> out_shape, params["w"].shape, params["b"].shape
    ((-1, 8, 8, 8), (8, 3, 3, 3), (8,))
    """
    where = "Im2colConv"
    out_channels, groups, kernel_size, stride, dilation, padding, _ = _check_common(
        where, out_channels, kernel_size, stride, dilation, groups, padding, "channels_first", None
    )
    op = functools.partial(
        ops.conv_im2col,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        precision=precision,
        vjp=base.resolve_vjp(vjp),
    )

    def kernel_shape(c_in, k):  # OIHW
        return (out_channels, c_in // groups, *k)

    w_init = initializers.he_normal() if w_init is None else w_init
    draw = _drawer(w_init, b_init, bias, out_channels, param_dtype)
    meta = _meta("conv", where, kernel_size, stride, padding, dilation, "channels_first")
    return _layer(where, where, op, None, False, groups, kernel_size, kernel_shape, draw, meta)
