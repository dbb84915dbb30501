"""The named optimizers, each a :func:`~fconv.optim.base.chain` of gradient transformations.

Every one ends with :func:`~fconv.optim.transforms.scale_by_learning_rate`, takes a number > 0 or
a schedule ``step -> lr`` as its learning rate, and documents the PyTorch and optax optimizers it
equals.
"""

from __future__ import annotations

from fconv.optim.base import Optimizer, Schedule, chain
from fconv.optim.transforms import (
    add_weight_decay,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    scale_by_rss,
    trace,
)

__all__ = ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad"]


def sgd(learning_rate: float | Schedule) -> Optimizer:
    """Plain gradient descent, ``w <- w - lr * g``.

    Args:
        learning_rate: A number > 0 or a schedule ``step -> lr``.

    Returns:
        An ``Optimizer`` (state: a ``CountState`` step counter).

    Raises:
        ValueError: if a numeric ``learning_rate`` is not > 0.
    """
    return scale_by_learning_rate(learning_rate)


def momentum(learning_rate: float | Schedule, *, beta: float = 0.9) -> Optimizer:
    """SGD with PyTorch-style momentum: ``v = beta v + g``; ``w <- w - lr v``.

    Equal to ``torch.optim.SGD(lr, momentum=beta)`` (dampening 0) and ``optax.sgd(lr, beta)``.
    The lecture-notes form ``v = beta v - lr g; w <- w + v`` gives the same trajectory for a
    constant learning rate (its ``v`` is ``-lr`` times this one); with a schedule the two differ.

    Args:
        learning_rate: A number > 0 or a schedule ``step -> lr``.
        beta: Momentum coefficient in ``[0, 1)`` (default 0.9).

    Returns:
        ``chain(trace(beta), scale_by_learning_rate(learning_rate))``.

    Raises:
        ValueError: if an argument is out of range.
    """
    return chain(trace(beta), scale_by_learning_rate(learning_rate))


def nesterov(learning_rate: float | Schedule, *, beta: float = 0.9) -> Optimizer:
    """SGD with Nesterov momentum: ``v = beta v + g``; ``w <- w - lr (g + beta v)``.

    Equal to ``torch.optim.SGD(lr, momentum=beta, nesterov=True)`` and
    ``optax.sgd(lr, beta, nesterov=True)``.

    Args:
        learning_rate: A number > 0 or a schedule ``step -> lr``.
        beta: Momentum coefficient in ``[0, 1)`` (default 0.9).

    Returns:
        ``chain(trace(beta, nesterov=True), scale_by_learning_rate(learning_rate))``.

    Raises:
        ValueError: if an argument is out of range.
    """
    return chain(trace(beta, nesterov=True), scale_by_learning_rate(learning_rate))


def adam(
    learning_rate: float | Schedule, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> Optimizer:
    """Adam (Kingma & Ba, 2015): see :func:`scale_by_adam`; equal to ``optax.adam``.

    Args:
        learning_rate: A number > 0 or a schedule ``step -> lr``.
        b1: First-moment decay in ``[0, 1)`` (default 0.9).
        b2: Second-moment decay in ``[0, 1)`` (default 0.999).
        eps: Added to the denominator, >= 0 (default 1e-8).

    Returns:
        ``chain(scale_by_adam(b1, b2, eps), scale_by_learning_rate(learning_rate))``.

    Raises:
        ValueError: if an argument is out of range.
    """
    return chain(scale_by_adam(b1, b2, eps), scale_by_learning_rate(learning_rate))


def adamw(
    learning_rate: float | Schedule,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
) -> Optimizer:
    """AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay.

    ``w <- w - lr * (adam_update + weight_decay * w)``, equal to ``torch.optim.AdamW`` and
    ``optax.adamw`` (whose default ``weight_decay`` is 1e-4; the default here is PyTorch's 1e-2).
    ``update`` must be given ``params``.

    Args:
        learning_rate: A number > 0 or a schedule ``step -> lr`` (it also scales the decay).
        b1: First-moment decay in ``[0, 1)`` (default 0.9).
        b2: Second-moment decay in ``[0, 1)`` (default 0.999).
        eps: Added to the denominator, >= 0 (default 1e-8).
        weight_decay: Decay coefficient, >= 0 (default 1e-2).

    Returns:
        ``chain(scale_by_adam(...), add_weight_decay(weight_decay),
        scale_by_learning_rate(learning_rate))``.

    Raises:
        ValueError: if an argument is out of range.
    """
    return chain(
        scale_by_adam(b1, b2, eps),
        add_weight_decay(weight_decay),
        scale_by_learning_rate(learning_rate),
    )


def rmsprop(learning_rate: float | Schedule, *, decay: float = 0.9, eps: float = 1e-8) -> Optimizer:
    """RMSProp (Tieleman & Hinton, 2012), PyTorch-style: see :func:`scale_by_rms`.

    Equal to ``torch.optim.RMSprop(lr, alpha=decay, eps=eps)`` and
    ``optax.rmsprop(lr, decay, eps, eps_in_sqrt=False)``.

    Args:
        learning_rate: A number > 0 or a schedule ``step -> lr``.
        decay: Averaging coefficient in ``[0, 1)`` (default 0.9).
        eps: Added to the denominator, >= 0 (default 1e-8).

    Returns:
        ``chain(scale_by_rms(decay, eps), scale_by_learning_rate(learning_rate))``.

    Raises:
        ValueError: if an argument is out of range.
    """
    return chain(scale_by_rms(decay, eps), scale_by_learning_rate(learning_rate))


def adagrad(
    learning_rate: float | Schedule, *, eps: float = 1e-10, initial_accumulator: float = 0.0
) -> Optimizer:
    """Adagrad (Duchi et al., 2011), PyTorch-style: see :func:`scale_by_rss`.

    Equal to ``torch.optim.Adagrad(lr, initial_accumulator_value, eps=eps)`` (without its
    ``lr_decay``); ``optax.adagrad`` differs slightly (``eps`` inside the square root).

    Args:
        learning_rate: A number > 0 or a schedule ``step -> lr``.
        eps: Added to the denominator, >= 0 (default 1e-10).
        initial_accumulator: Starting sum of squares, >= 0 (default 0.0).

    Returns:
        ``chain(scale_by_rss(eps, initial_accumulator), scale_by_learning_rate(learning_rate))``.

    Raises:
        ValueError: if an argument is out of range.
    """
    return chain(scale_by_rss(eps, initial_accumulator), scale_by_learning_rate(learning_rate))
