"""Fully connected layer and the reshapes around it: ``Dense``, ``Flatten``, ``Reshape``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fconv import init as initializers
from fconv.layers import base

__all__ = ["Dense", "Flatten", "Reshape"]


def _check_features(shape: tuple[int, ...], where: str) -> None:
    if len(shape) != 2:
        raise ValueError(
            f"{where} expects a 2-D input (N, features), got shape {shape}; add Flatten() before "
            f"{where} to flatten (N, C, H, W) feature maps."
        )


def Dense(
    out_features: int,
    *,
    bias: bool = True,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer = initializers.zeros,
    param_dtype: Any = jnp.float32,
    precision: Any = None,
) -> base.Layer:
    """Fully connected layer ``y = x @ w + b``.

    Args:
      out_features: output features F_out.
      bias: add a learned ``(F_out,)`` bias. Default True.
      w_init: initializer of the ``(F_in, F_out)`` weight. Default ``he_normal()`` (variance
        ``2 / F_in``, for ReLU nets).
      b_init: bias initializer. Default zeros.
      param_dtype: dtype of the parameters. Default float32.
      precision: forwarded to ``jnp.matmul``.

    Returns:
      A ``Layer`` mapping ``(N, F_in)`` to ``(N, F_out)``, params ``{"w": (F_in, F_out),
      "b": (F_out,)}``.

    Raises:
      ValueError: ``out_features < 1``; an input that is not 2-D (add ``Flatten()`` first).

    >>> import jax
    >>> out_shape, params = Dense(10).init(jax.random.key(0), (-1, 84))
    >>> out_shape, params["w"].shape, params["b"].shape
    ((-1, 10), (84, 10), (10,))
    """
    out_features = base.check_int(out_features, "out_features", "Dense")
    w_init = initializers.he_normal() if w_init is None else w_init

    def init(rng, input_shape):
        input_shape = base.check_input_shape(input_shape, "Dense")
        _check_features(input_shape, "Dense")
        k_w, k_b = jax.random.split(rng)
        params = {"w": w_init(k_w, (input_shape[1], out_features), param_dtype)}
        if bias:
            params["b"] = b_init(k_b, (out_features,), param_dtype)
        return (input_shape[0], out_features), params

    def fn(params, x, rng, train):
        _check_features(tuple(x.shape), "Dense")
        if x.shape[1] != params["w"].shape[0]:
            raise ValueError(
                f"Dense: the input has {x.shape[1]} features (shape {tuple(x.shape)}), but the "
                f"parameters were initialised for {params['w'].shape[0]}: check the input shape "
                "given to init (e.g. the image size before Flatten)."
            )
        y = jnp.matmul(x, params["w"], precision=precision)
        return y if "b" not in params else y + params["b"].reshape(1, -1)

    return base.leaf("Dense", init, fn)


def Flatten() -> base.Layer:
    """Flattens every axis but the batch axis: ``(N, *rest) -> (N, prod(rest))``.

    >>> Flatten().init(None, (-1, 16, 5, 5))
    ((-1, 400), {})
    """

    def shape_fn(shape):
        return (shape[0], math.prod(shape[1:]))

    return base.parameter_free("Flatten", lambda x: x.reshape(x.shape[0], -1), shape_fn)


def Reshape(shape: Sequence[int]) -> base.Layer:
    """Reshapes every example: ``(N, *rest) -> (N, *shape)``; one entry of ``shape`` may be -1.

    Args:
      shape: the per-example target shape (without the batch axis).

    Raises:
      TypeError: ``shape`` is not a sequence of ints.
      ValueError: more than one -1, an entry < -1 or 0, or a size mismatch (at init).

    >>> Reshape((4, -1)).init(None, (-1, 16, 5, 5))
    ((-1, 4, 100), {})
    """
    if (
        isinstance(shape, str)
        or not isinstance(shape, Sequence)
        or not all(base.is_int(d) for d in shape)
    ):
        raise TypeError(f"Reshape: `shape` must be a sequence of ints, got {shape!r}.")
    shape = tuple(int(d) for d in shape)
    if shape.count(-1) > 1 or any(d == 0 or d < -1 for d in shape):
        raise ValueError(
            f"Reshape: `shape` entries must be >= 1, with at most one -1, got {shape}."
        )

    def shape_fn(input_shape):
        size = math.prod(input_shape[1:])
        known = math.prod(d for d in shape if d != -1)
        if (-1 in shape and size % known) or (-1 not in shape and size != known):
            raise ValueError(
                f"Reshape: cannot reshape examples of shape {input_shape[1:]} (size {size}) to "
                f"{shape}."
            )
        return (input_shape[0], *(size // known if d == -1 else d for d in shape))

    return base.parameter_free("Reshape", lambda x: x.reshape(x.shape[0], *shape), shape_fn)
