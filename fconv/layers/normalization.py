"""Normalization layers: ``BatchNorm`` (with running statistics), ``LayerNorm``, ``GroupNorm``.

Each normalizes, then applies a learned per-channel affine map ``y = scale * x_hat + b`` along
the channel ``axis`` (1 for ``(N, C, *spatial)`` and for ``(N, features)``; -1 for
channels-last). Params are ``{"scale": (C,), "b": (C,)}``, initialized to ones and zeros.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from fconv import ops
from fconv.layers import base
from fconv.ops import _canon

__all__ = ["BatchNorm", "GroupNorm", "LayerNorm"]


def _channel_axis(axis: int, shape: tuple[int, ...], where: str) -> int:
    if not -len(shape) < axis < len(shape) or axis % len(shape) == 0:
        raise ValueError(
            f"{where}: `axis` (={axis}) must name a non-batch axis of the input, got input shape "
            f"{shape}."
        )
    return axis % len(shape)


def _affine(x_hat: jax.Array, params: dict, ax: int) -> jax.Array:
    scale = _canon.per_channel(params["scale"], ax, x_hat.ndim, x_hat.dtype)
    return x_hat * scale + _canon.per_channel(params["b"], ax, x_hat.ndim, x_hat.dtype)


def _affine_init(where, axis, param_dtype, extra_check=None):
    def init(rng, input_shape):
        del rng
        shape = base.check_input_shape(input_shape, where)
        c = shape[_channel_axis(axis, shape, where)]
        if extra_check is not None:
            extra_check(c, shape)
        params = {"scale": jnp.ones((c,), param_dtype), "b": jnp.zeros((c,), param_dtype)}
        return shape, params

    return init


def _check_eps(eps: Any, where: str) -> float:
    eps = base.check_real(eps, "eps", where)
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"{where}: `eps` must be a finite number > 0, got {eps}.")
    return eps


def _normalized(x: jax.Array, axes: tuple[int, ...], eps: float) -> jax.Array:
    """``(x - mean) / sqrt(var + eps)`` over ``axes``, with the statistics taken in float32 for
    float16/bfloat16 ``x`` (squares of ``|x - mean| > 256`` overflow float16); x's dtype."""
    xa = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = jnp.mean(xa, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(xa - mean), axis=axes, keepdims=True)
    return ((xa - mean) * lax.rsqrt(var + jnp.asarray(eps, xa.dtype))).astype(x.dtype)


def BatchNorm(
    *,
    momentum: float = 0.9,
    eps: float = 1e-5,
    axis: int = 1,
    param_dtype: Any = jnp.float32,
    vjp: str | None = None,
) -> base.Layer:
    """Batch normalization with running statistics (Ioffe & Szegedy 2015).

    ``train=True`` normalizes with the batch's mean and (biased) variance over every axis but
    ``axis``; given a ``state`` it also returns the updated running statistics
    ``new = momentum * old + (1 - momentum) * batch`` (Flax's convention; PyTorch's
    ``momentum=0.1`` is ``momentum=0.9`` here). ``train=False`` normalizes with the running
    statistics, so it needs ``state``.

    Args:
      momentum: running-average decay, ``0 <= momentum < 1``. Default 0.9.
      eps: added to the variance, > 0. Default 1e-5.
      axis: the channel axis. Default 1 (``(N, C, *spatial)`` or ``(N, features)``).
      param_dtype: dtype of params and state. Default float32.
      vjp: backward of the training-mode normalization: ``"custom"`` (``ops.batch_norm``'s
        hand-written rule), ``"autodiff"`` or None (default: the current ``default_vjp``).

    Returns:
      A ``Layer`` with params ``{"scale": (C,), "b": (C,)}`` and state
      ``{"mean": zeros (C,), "var": ones (C,)}``.

    Raises:
      ValueError: bad ``momentum``/``eps``/``axis``; ``apply`` with ``train=False`` and no state.

    >>> import jax
    >>> bn = BatchNorm()
    >>> out_shape, params = bn.init(jax.random.key(0), (-1, 16, 8, 8))
    >>> out_shape, params["scale"].shape, bn.init_state((-1, 16, 8, 8))["var"].shape
    ((-1, 16, 8, 8), (16,), (16,))
    """
    momentum = base.check_real(momentum, "momentum", "BatchNorm")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"BatchNorm: `momentum` must be in [0, 1), got {momentum}.")
    eps = _check_eps(eps, "BatchNorm")
    axis = base.check_axis(axis, "BatchNorm")
    vjp = base.resolve_vjp(vjp)

    def init_state(input_shape):
        shape = base.check_input_shape(input_shape, "BatchNorm")
        c = shape[_channel_axis(axis, shape, "BatchNorm")]
        return {"mean": jnp.zeros((c,), param_dtype), "var": jnp.ones((c,), param_dtype)}

    def apply(params, x, *, rng=None, train=False, state=None):
        del rng
        if state is None and not train:
            raise ValueError(
                "BatchNorm needs its running statistics when train=False: pass "
                "state=layer.init_state(input_shape) (and keep the new state apply returns), or "
                "train=True to normalize with the batch statistics."
            )
        with jax.named_scope("fconv.BatchNorm"):
            ax = _channel_axis(axis, tuple(x.shape), "BatchNorm")
            if train:
                y, mean, var = ops.batch_norm(
                    x, params["scale"], params["b"], axis=ax, eps=eps, vjp=vjp
                )
            else:
                mean, var = state["mean"], state["var"]
                acc = jnp.promote_types(x.dtype, jnp.float32)  # as in training mode
                inv = _canon.per_channel(
                    lax.rsqrt(var.astype(acc) + jnp.asarray(eps, acc)), ax, x.ndim, acc
                )
                x_hat = (x.astype(acc) - _canon.per_channel(mean, ax, x.ndim, acc)) * inv
                y = _affine(x_hat.astype(x.dtype), params, ax)
        if state is None:
            return y
        if not train:
            return y, state

        def update(old, new):
            new = lax.stop_gradient(new).astype(old.dtype)
            return momentum * old + (1.0 - momentum) * new

        return y, {"mean": update(state["mean"], mean), "var": update(state["var"], var)}

    return base.Layer(_affine_init("BatchNorm", axis, param_dtype), apply, init_state)


def LayerNorm(*, eps: float = 1e-5, axis: int = 1, param_dtype: Any = jnp.float32) -> base.Layer:
    """Layer normalization (Ba et al. 2016): each example over all its non-batch axes.

    The mean and variance are taken over ``(C, *spatial)`` of each example (equal to
    ``GroupNorm(1)``); the learned affine map is per channel along ``axis``.

    Args:
      eps: added to the variance, > 0. Default 1e-5.
      axis: the channel axis of the affine map. Default 1.
      param_dtype: dtype of the params. Default float32.

    >>> import jax
    >>> LayerNorm().init(jax.random.key(0), (-1, 120))[1]["scale"].shape
    (120,)
    """
    eps = _check_eps(eps, "LayerNorm")
    axis = base.check_axis(axis, "LayerNorm")

    def fn(params, x, rng, train):
        x_hat = _normalized(x, tuple(range(1, x.ndim)), eps)
        return _affine(x_hat, params, _channel_axis(axis, tuple(x.shape), "LayerNorm"))

    return base.leaf("LayerNorm", _affine_init("LayerNorm", axis, param_dtype), fn)


def GroupNorm(
    num_groups: int, *, eps: float = 1e-5, axis: int = 1, param_dtype: Any = jnp.float32
) -> base.Layer:
    """Group normalization (Wu & He 2018): each example over each group of channels.

    The C channels along ``axis`` are split into ``num_groups`` consecutive groups of
    ``C / num_groups``; mean and variance are taken per example and group over its channels and
    all spatial positions. ``GroupNorm(1)`` is ``LayerNorm()``; ``GroupNorm(C)`` is instance norm.

    Args:
      num_groups: number of groups G; must divide C (checked at init).
      eps: added to the variance, > 0. Default 1e-5.
      axis: the channel axis. Default 1.
      param_dtype: dtype of the params. Default float32.

    >>> import jax
    >>> GroupNorm(4).init(jax.random.key(0), (-1, 16, 8, 8))[0]
    (-1, 16, 8, 8)
    """
    num_groups = base.check_int(num_groups, "num_groups", "GroupNorm")
    eps = _check_eps(eps, "GroupNorm")
    axis = base.check_axis(axis, "GroupNorm")

    def check_groups(c, shape):
        if c % num_groups:
            raise ValueError(
                f"GroupNorm: `num_groups` (={num_groups}) must divide the channels (={c}) of "
                f"input shape {shape}."
            )

    def fn(params, x, rng, train):
        ax = _channel_axis(axis, tuple(x.shape), "GroupNorm")
        xc = jnp.moveaxis(x, ax, 1)
        grouped = xc.reshape(xc.shape[0], num_groups, -1)
        x_hat = _normalized(grouped, (2,), eps).reshape(xc.shape)
        return _affine(jnp.moveaxis(x_hat, 1, ax), params, ax)

    return base.leaf("GroupNorm", _affine_init("GroupNorm", axis, param_dtype, check_groups), fn)
