"""Elementwise activations and (log-)softmax as parameter-free layers, each a constructor.

Every one keeps the input shape and wraps the ``jax.nn`` function of the same name::

    >>> Relu().init(None, (-1, 6, 28, 28))
    ((-1, 6, 28, 28), {})
"""

from __future__ import annotations

import jax

from fconv.layers import base

__all__ = [
    "Elu",
    "Gelu",
    "LeakyRelu",
    "LogSoftmax",
    "Relu",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
]


def _same_shape(shape):
    return shape


def _elementwise(name: str, fn) -> base.Layer:
    return base.parameter_free(name, fn, _same_shape)


def Relu() -> base.Layer:
    """``max(x, 0)``."""
    return _elementwise("Relu", jax.nn.relu)


def LeakyRelu(negative_slope: float = 0.01) -> base.Layer:
    """``x`` where ``x >= 0``, else ``negative_slope * x`` (default slope 0.01)."""
    slope = base.check_real(negative_slope, "negative_slope", "LeakyRelu")
    return _elementwise("LeakyRelu", lambda x: jax.nn.leaky_relu(x, slope))


def Elu(alpha: float = 1.0) -> base.Layer:
    """``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)`` (default alpha 1.0)."""
    alpha = base.check_real(alpha, "alpha", "Elu")
    return _elementwise("Elu", lambda x: jax.nn.elu(x, alpha))


def Gelu(approximate: bool = False) -> base.Layer:
    """``x * Phi(x)``; exact erf form by default, the tanh approximation if ``approximate``."""
    approximate = base.check_bool(approximate, "approximate", "Gelu")
    return _elementwise("Gelu", lambda x: jax.nn.gelu(x, approximate=approximate))


def Sigmoid() -> base.Layer:
    """``1 / (1 + exp(-x))``."""
    return _elementwise("Sigmoid", jax.nn.sigmoid)


def Tanh() -> base.Layer:
    """``tanh(x)``."""
    return _elementwise("Tanh", jax.nn.tanh)


def Softplus() -> base.Layer:
    """``log(1 + exp(x))``."""
    return _elementwise("Softplus", jax.nn.softplus)


def _along_axis(name: str, axis: int, fn) -> base.Layer:
    """A shape-preserving layer ``fn(x, axis)`` whose init checks ``axis`` against the input."""

    def shape_fn(shape):
        if not -len(shape) <= axis < len(shape):
            raise ValueError(
                f"{name}: `axis` (={axis}) is out of range for an input of shape {shape}: "
                f"expected {-len(shape)} <= axis < {len(shape)}."
            )
        return shape

    return base.parameter_free(name, lambda x: fn(x, axis=axis), shape_fn)


def LogSoftmax(axis: int = -1) -> base.Layer:
    """``x - logsumexp(x, axis)`` along ``axis`` (default -1, the class axis of logits)."""
    return _along_axis("LogSoftmax", base.check_axis(axis, "LogSoftmax"), jax.nn.log_softmax)


def Softmax(axis: int = -1) -> base.Layer:
    """``exp(x) / sum(exp(x), axis)`` along ``axis`` (default -1)."""
    return _along_axis("Softmax", base.check_axis(axis, "Softmax"), jax.nn.softmax)
