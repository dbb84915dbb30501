"""Convolution layers: ``Conv`` and ``ConvTranspose`` (1-, 2- or 3-D from the input's rank).

``Conv1D``/``Conv2D``/``Conv3D`` (and the ``ConvTranspose`` variants) are ``functools.partial``
of the N-d constructor with ``rank`` fixed, so they check the input's rank at ``init``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fconv import init as initializers
from fconv import ops
from fconv.layers import base
from fconv.ops import _canon

__all__ = [
    "Conv",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "ConvTranspose",
    "ConvTranspose1D",
    "ConvTranspose2D",
    "ConvTranspose3D",
]

_SPATIAL_NAMES = {1: "(N, C, W)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}


def _check_common(
    where, out_channels, kernel_size, stride, dilation, groups, padding, layout, rank
):
    out_channels = base.check_int(out_channels, "out_channels", where)
    groups = base.check_int(groups, "groups", where)
    if out_channels % groups:
        raise ValueError(
            f"{where}: `groups` (={groups}) must divide `out_channels` (={out_channels})."
        )
    kernel_size = base.check_ints(kernel_size, "kernel_size", where)
    stride = base.check_ints(stride, "stride", where)
    dilation = base.check_ints(dilation, "dilation", where)
    padding = base.check_padding(padding, where)
    last = base.check_layout(layout, where)
    if rank is not None and rank not in (1, 2, 3):
        raise ValueError(f"{where}: `rank` must be 1, 2, 3 or None, got {rank!r}.")
    for name, value in (("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation)):
        if rank is not None and isinstance(value, tuple) and len(value) != rank:
            raise ValueError(
                f"{where}: `{name}` must be an int or {rank} ints (one per spatial dimension), "
                f"got {value}."
            )
    return out_channels, groups, kernel_size, stride, dilation, padding, last


def _spatial_rank(input_shape: tuple[int, ...], where: str, rank: int | None) -> int:
    n = len(input_shape) - 2
    if rank is not None and n != rank:
        raise ValueError(
            f"{where} expects a {rank + 2}-D input {_SPATIAL_NAMES[rank]} (batch and channels "
            f"first, or last with layout='channels_last'), got input_shape {input_shape}."
        )
    if n not in (1, 2, 3):
        raise ValueError(
            f"{where}: input must be 3-, 4- or 5-D (batch, channels, 1 to 3 spatial dims), got "
            f"input_shape {input_shape}."
        )
    return n


def _layer(
    name, where, op, rank, last, groups, kernel_size, kernel_shape, draw, meta=None
) -> base.Layer:
    """The Layer both constructors return; ``kernel_shape(c_in, k)`` gives the weight's shape."""

    def fn(params, x, rng=None, train=False):
        return op(x, params["w"], params.get("b"))

    def init(rng, input_shape):
        input_shape = base.check_input_shape(input_shape, where)
        n = _spatial_rank(input_shape, where, rank)
        c_in = input_shape[-1] if last else input_shape[1]
        if c_in % groups:
            raise ValueError(
                f"{where}: `groups` (={groups}) must divide the input channels (={c_in}) of "
                f"input_shape {input_shape}."
            )
        params = draw(rng, kernel_shape(c_in, _canon.ntuple(kernel_size, n, "kernel_size")))
        return base.infer_shape(fn, params, input_shape), params

    return base.leaf(name, init, fn, meta)


def _meta(kind, where, kernel_size, stride, padding, dilation, layout) -> dict:
    """Configuration for ``Layer.meta`` (read by ``fconv.receptive_field``)."""
    return {
        "kind": kind,
        "name": where,
        "kernel": kernel_size,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "layout": layout,
    }


def _drawer(w_init, b_init, bias: bool, out_channels: int, dtype: Any):
    def draw(rng, w_shape) -> dict[str, jax.Array]:
        k_w, k_b = jax.random.split(rng)
        params = {"w": w_init(k_w, w_shape, dtype)}
        if bias:
            params["b"] = b_init(k_b, (out_channels,), dtype)
        return params

    return draw


def Conv(
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: _canon.Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    bias: bool = True,
    layout: str = "channels_first",
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer = initializers.zeros,
    param_dtype: Any = jnp.float32,
    precision: Any = None,
    vjp: str | None = None,
    rank: int | None = None,
) -> base.Layer:
    """N-d convolution layer: partial application of ``fconv.ops.conv``.

    The number of spatial dims (1, 2 or 3) is read from the input's rank at ``init``; an int
    ``kernel_size``/``stride``/``dilation`` is broadcast to every spatial dim.

    Args:
      out_channels: output channels O.
      kernel_size: kernel size K, an int or one per spatial dim.
      stride: an int or one per spatial dim. Default 1.
      padding: ``"VALID"`` (default, no padding), ``"SAME"`` (output ``ceil(N / s)``; the odd
        extra pixel goes on the high side, as in XLA/TF), ``"FULL"`` (``K' - 1`` each side), an
        int, ints per dim, or ``(lo, hi)`` pairs per dim.
      dilation: kernel dilation, an int or one per spatial dim. Default 1.
      groups: feature groups; must divide ``out_channels`` and the input channels. Default 1.
      bias: add a learned ``(O,)`` bias. Default True.
      layout: ``"channels_first"`` (default: input ``(N, C, *spatial)``, kernel
        ``(O, C / groups, *K)``) or ``"channels_last"`` (``(N, *spatial, C)``, ``(*K, C / groups,
        O)``).
      w_init: kernel initializer ``(rng, shape, dtype)``. Default ``he_normal()`` (variance
        ``2 / fan_in`` with ``fan_in = C / groups * prod(K)``), because fconv's models are ReLU
        nets; pass ``fconv.init.lecun_normal()`` for linear/tanh/SELU layers.
      b_init: bias initializer. Default zeros.
      param_dtype: dtype of the parameters. Default float32.
      precision: forwarded to ``lax.conv_general_dilated``.
      vjp: ``"custom"`` (hand-written backward rule), ``"autodiff"`` (the op's autodiff twin) or
        None (default: the current ``default_vjp``, read now).
      rank: expected number of spatial dims (None: any of 1, 2, 3); set by ``Conv1D``/``2D``/``3D``.

    Returns:
      A ``Layer`` with params ``{"w": kernel, "b": (O,)}`` (no ``"b"`` when ``bias=False``).

    Raises:
      ValueError: non-positive sizes, ``groups`` not dividing ``out_channels`` (now) or the input
        channels (at init), unknown padding string or layout, wrong input rank, a kernel larger
        than the padded input (at init).
      TypeError: non-int sizes.

    >>> import jax
    >>> out_shape, params = Conv(8, 3, padding="SAME").init(jax.random.key(0), (-1, 3, 32, 32))
    >>> out_shape, params["w"].shape, params["b"].shape
    ((-1, 8, 32, 32), (8, 3, 3, 3), (8,))
    """
    where = "Conv" if rank is None else f"Conv{rank}D"
    out_channels, groups, kernel_size, stride, dilation, padding, last = _check_common(
        where, out_channels, kernel_size, stride, dilation, groups, padding, layout, rank
    )
    if w_init is None:
        w_init = (
            initializers.he_normal(in_axis=-2, out_axis=-1) if last else initializers.he_normal()
        )
    op = functools.partial(
        ops.conv,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        layout=layout,
        precision=precision,
        vjp=base.resolve_vjp(vjp),
    )

    def kernel_shape(c_in, k):  # OIHW, or HWIO channels-last
        return (*k, c_in // groups, out_channels) if last else (out_channels, c_in // groups, *k)

    draw = _drawer(w_init, b_init, bias, out_channels, param_dtype)
    meta = _meta("conv", where, kernel_size, stride, padding, dilation, layout)
    return _layer("Conv", where, op, rank, last, groups, kernel_size, kernel_shape, draw, meta)


def ConvTranspose(
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: _canon.Padding = "VALID",
    output_padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    bias: bool = True,
    layout: str = "channels_first",
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer = initializers.zeros,
    param_dtype: Any = jnp.float32,
    precision: Any = None,
    vjp: str | None = None,
    rank: int | None = None,
) -> base.Layer:
    """N-d transposed convolution layer: partial application of ``fconv.ops.conv_transpose``.

    PyTorch semantics and weight layout: the kernel is ``(C_in, C_out / groups, *K)``
    (channels-last: ``(*K, C_out / groups, C_in)``), and the output size per spatial dim is
    ``(M - 1) s - (lo + hi) + d (K - 1) + output_padding + 1``.

    Args:
      out_channels: output channels C_out.
      kernel_size: an int or one per spatial dim.
      stride: upsampling factor, an int or one per spatial dim. Default 1.
      padding: padding of the convolution being transposed (the output is cropped by it):
        ``"VALID"`` (default, 0), ``"SAME"`` (output exactly ``M s``), ``"FULL"``, an int, ints
        or ``(lo, hi)`` pairs.
      output_padding: extra rows at the high end, ``0 <= output_padding < stride``. Default 0.
      dilation, groups, bias, layout, b_init, param_dtype, precision, vjp, rank: as for ``Conv``.
      w_init: kernel initializer. Default He normal with ``fan_in = C_in / groups * prod(K)``
        (the inputs one output position can see at stride 1).

    Returns:
      A ``Layer`` with params ``{"w": (C_in, C_out / groups, *K), "b": (C_out,)}``.

    Raises:
      ValueError / TypeError: as for ``Conv``; ``output_padding >= stride`` at init.

    >>> import jax
    >>> layer = ConvTranspose(4, 2, stride=2)
    >>> out_shape, params = layer.init(jax.random.key(0), (-1, 8, 5, 5))
    >>> out_shape, params["w"].shape
    ((-1, 4, 10, 10), (8, 4, 2, 2))
    """
    where = "ConvTranspose" if rank is None else f"ConvTranspose{rank}D"
    out_channels, groups, kernel_size, stride, dilation, padding, last = _check_common(
        where, out_channels, kernel_size, stride, dilation, groups, padding, layout, rank
    )
    output_padding = base.check_ints(output_padding, "output_padding", where, minimum=0)
    if w_init is None:
        # variance_scaling's fan_in here is C_in * prod(K); scaling by `groups` turns the
        # variance 2 groups / (C_in prod K) into 2 / (C_in / groups * prod K).
        axes = {"in_axis": -1, "out_axis": -2} if last else {"in_axis": 0, "out_axis": 1}
        w_init = initializers.variance_scaling(2.0 * groups, "fan_in", "normal", **axes)
    op = functools.partial(
        ops.conv_transpose,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
        layout=layout,
        precision=precision,
        vjp=base.resolve_vjp(vjp),
    )

    def kernel_shape(c_in, k):  # PyTorch's (C_in, C_out / groups, *K), or its channels-last
        c_out_g = out_channels // groups
        return (*k, c_out_g, c_in) if last else (c_in, c_out_g, *k)

    draw = _drawer(w_init, b_init, bias, out_channels, param_dtype)
    meta = _meta("conv_transpose", where, kernel_size, stride, padding, dilation, layout)
    meta["output_padding"] = output_padding
    return _layer(
        "ConvTranspose", where, op, rank, last, groups, kernel_size, kernel_shape, draw, meta
    )


Conv1D = functools.partial(Conv, rank=1)
Conv2D = functools.partial(Conv, rank=2)
Conv3D = functools.partial(Conv, rank=3)
ConvTranspose1D = functools.partial(ConvTranspose, rank=1)
ConvTranspose2D = functools.partial(ConvTranspose, rank=2)
ConvTranspose3D = functools.partial(ConvTranspose, rank=3)
for _n, _f in ((1, Conv1D), (2, Conv2D), (3, Conv3D)):
    _f.__doc__ = f"``Conv`` with ``rank={_n}``: a {_n}-D convolution; init checks the input rank."
for _n, _f in ((1, ConvTranspose1D), (2, ConvTranspose2D), (3, ConvTranspose3D)):
    _f.__doc__ = f"``ConvTranspose`` with ``rank={_n}``; init checks the input rank."
del _n, _f
