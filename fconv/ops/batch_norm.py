"""Training-mode batch normalization with a hand-written backward rule, and its autodiff twin.

Per channel c (the ``axis``), over the M = N * spatial other entries:
``mu = mean(x)``, ``v = mean((x - mu)^2)`` (biased), ``inv = (v + eps)^(-1/2)``,
``x_hat = (x - mu) inv`` and ``y = scale x_hat + bias`` (Ioffe & Szegedy 2015).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fconv.ops import _canon

__all__ = ["batch_norm"]


# The statistics are taken in float32 for float16/bfloat16 inputs (squares of |x - mean| > 256
# overflow float16), and returned in float32 then; y has x's dtype.
def _forward(x, scale, bias, ax: int, eps: float):
    acc = jnp.promote_types(x.dtype, jnp.float32)
    reduce = tuple(i for i in range(x.ndim) if i != ax)
    xa = x.astype(acc)
    mean = jnp.mean(xa, axis=reduce)
    centred = xa - _canon.per_channel(mean, ax, x.ndim, acc)
    var = jnp.mean(jnp.square(centred), axis=reduce)
    inv = lax.rsqrt(var + jnp.asarray(eps, acc))
    y = centred * _canon.per_channel(inv * scale.astype(acc), ax, x.ndim, acc)
    y = (y + _canon.per_channel(bias.astype(acc), ax, x.ndim, acc)).astype(x.dtype)
    return (y, mean, var), (x, mean, inv)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _batch_norm_p(x, scale, bias, ax, eps):
    return _forward(x, scale, bias, ax, eps)[0]


def _batch_norm_p_fwd(x, scale, bias, ax, eps):
    out, (x, mean, inv) = _forward(x, scale, bias, ax, eps)
    return out, (x, mean, inv, scale, bias)


# Backward, with S = sum over the M entries of one channel and x_hat recomputed from (x, mu, inv):
#   d bias  = S g                      d scale = S (g x_hat)
#   dx      = scale inv (g - d bias / M - x_hat d scale / M)     (through y; the mean and the
#             variance of x_hat are fixed, hence the two projections)
#           + g_mu / M + 2 g_v (x - mu) / M                       (through the returned mu, v)
# Two reductions (fused into one pass over g and x) and one elementwise pass; autodiff of the
# forward takes four reductions and keeps x - mu, its square and x_hat alive. For float16/bfloat16
# inputs the whole rule runs in float32, as the forward's statistics do (M alone can exceed
# float16's range, and a half-precision x - mu loses the digits the mean cancels), and M only
# ever divides.
def _batch_norm_p_bwd(ax, eps, res, cts):
    del eps
    x, mean, inv, scale, bias = res
    g, g_mean, g_var = cts
    acc = jnp.promote_types(x.dtype, jnp.float32)
    reduce = tuple(i for i in range(x.ndim) if i != ax)
    m = x.size // x.shape[ax]
    centred = x.astype(acc) - _canon.per_channel(mean, ax, x.ndim, acc)  # as the forward
    x_hat = centred * _canon.per_channel(inv, ax, x.ndim, acc)
    g = g.astype(acc)
    d_bias = jnp.sum(g, axis=reduce)
    d_scale = jnp.sum(g * x_hat, axis=reduce)
    gain = scale.astype(acc) * inv.astype(acc)
    dx = _canon.per_channel(gain, ax, x.ndim, acc) * (
        g
        - _canon.per_channel(d_bias / m, ax, x.ndim, acc)
        - x_hat * _canon.per_channel(d_scale / m, ax, x.ndim, acc)
    )
    dx = dx + _canon.per_channel(g_mean.astype(acc) / m, ax, x.ndim, acc)
    dx = dx + centred * _canon.per_channel(2.0 * g_var.astype(acc) / m, ax, x.ndim, acc)
    return dx.astype(x.dtype), d_scale.astype(scale.dtype), d_bias.astype(bias.dtype)


_batch_norm_p.defvjp(_batch_norm_p_fwd, _batch_norm_p_bwd)


def batch_norm(
    x: jax.Array,
    scale: jax.Array,
    bias: jax.Array,
    *,
    axis: int = 1,
    eps: float = 1e-5,
    vjp: str = "custom",
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Batch normalization with the batch's statistics (training mode).

    Args:
      x: ``(N, C, *spatial)`` or ``(N, C)`` (``axis=1``), or any array with the channels at
        ``axis``; statistics are taken over every other axis.
      scale: ``(C,)`` multiplier.
      bias: ``(C,)`` offset.
      axis: the channel axis (not the batch axis 0). Default 1.
      eps: added to the variance, > 0. Default 1e-5.
      vjp: ``"custom"`` (default, the hand-written rule) or ``"autodiff"``.

    Returns:
      ``(y, mean, var)``: ``y`` shaped like ``x`` (its dtype), and the batch mean and biased
      variance ``(C,)`` (for running statistics; they are differentiable too), computed and
      returned in float32 for float16/bfloat16 ``x``.

    Raises:
      ValueError: ``axis`` names the batch axis or is out of range, ``scale``/``bias`` are not
        ``(C,)``, or ``eps <= 0``.
      TypeError: integer ``x``, ``scale`` or ``bias`` (``DTypeError``), a non-int ``axis``, or an
        ``eps`` that is not a static number.
    """
    _canon.check_vjp_mode(vjp)
    x = _canon.check_float_array(x, "x")
    scale = _canon.check_float_array(scale, "scale")
    bias = _canon.check_float_array(bias, "bias")
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"`axis` must be an int, got {axis!r}.")
    if not isinstance(eps, (int, float, np.integer, np.floating)) or isinstance(eps, bool):
        raise TypeError(f"`eps` must be a Python or NumPy number (static), got {eps!r}.")
    if x.ndim < 2 or not -x.ndim < axis < x.ndim or axis % x.ndim == 0:
        raise ValueError(
            f"`axis` (={axis}) must name a non-batch axis of `x`, got x.shape = {tuple(x.shape)}."
        )
    ax = axis % x.ndim
    c = x.shape[ax]
    for name, v in (("scale", scale), ("bias", bias)):
        if tuple(jnp.shape(v)) != (c,):
            raise ValueError(
                f"`{name}` must have shape ({c},) (the channels of x at axis {axis}), got "
                f"{tuple(jnp.shape(v))}."
            )
    if not eps > 0:
        raise ValueError(f"`eps` must be > 0, got {eps}.")
    eps = float(eps)
    with jax.named_scope("fconv.batch_norm"):
        if vjp == "custom":
            return _batch_norm_p(x, scale, bias, ax, eps)
        return _forward(x, scale, bias, ax, eps)[0]
