"""Composable gradient transformations, the building blocks of :mod:`fconv.optim.optimizers`.

Each function checks its arguments and returns an :class:`~fconv.optim.base.Optimizer`; combine
them with :func:`~fconv.optim.base.chain`. Rescalings (:func:`trace`, :func:`scale_by_adam`,
:func:`scale_by_rms`, :func:`scale_by_rss`) keep per-parameter state shaped like the params;
:func:`scale_by_learning_rate` (the last step of every optimizer) and :func:`scale_by_schedule`
keep an int32 step counter; :func:`scale`, :func:`clip_by_global_norm` and
:func:`add_weight_decay` are stateless.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fconv.optim._checks import _check_lr, _check_real
from fconv.optim.base import (
    AdamState,
    CountState,
    EmptyState,
    Optimizer,
    RmsState,
    RssState,
    Schedule,
    TraceState,
    _acc_dtype,
    _map,
    global_norm,
)

__all__ = [
    "scale",
    "scale_by_schedule",
    "scale_by_learning_rate",
    "trace",
    "scale_by_adam",
    "scale_by_rms",
    "scale_by_rss",
    "clip_by_global_norm",
    "add_weight_decay",
]

# ----------------------------------------------------------------------------------------------
# Step counter (private)
# ----------------------------------------------------------------------------------------------

_INT32_MAX = np.iinfo(np.int32).max


def _increment(count: jax.Array) -> jax.Array:
    """``count + 1`` in int32, saturating at the int32 maximum instead of wrapping."""
    return count + (count < _INT32_MAX).astype(jnp.int32)


def _zeros_count() -> jax.Array:
    return jnp.zeros((), jnp.int32)


# ----------------------------------------------------------------------------------------------
# Gradient transformations
# ----------------------------------------------------------------------------------------------


def scale(factor: float) -> Optimizer:
    """Multiplies updates by a constant ``factor``. Stateless.

    Args:
        factor: Any finite real number.

    Returns:
        An ``Optimizer``.
    """
    factor = _check_real("factor", factor)

    def init(params: Any) -> EmptyState:
        del params
        return EmptyState()

    def update(grads: Any, state: EmptyState, params: Any = None) -> tuple[Any, EmptyState]:
        del params
        return _map(lambda g: g * factor, grads), state

    return Optimizer(init, update)


def scale_by_schedule(schedule: Schedule) -> Optimizer:
    """Multiplies updates by ``schedule(step)``; keeps an int32 step counter (first step is 0).

    Args:
        schedule: ``step -> float`` (e.g. from :func:`cosine_decay_with_warmup`).

    Returns:
        An ``Optimizer`` with ``CountState`` state.

    Raises:
        TypeError: if ``schedule`` is not callable.
    """
    if not callable(schedule):
        raise TypeError(f"`schedule` must be callable `step -> value`, got {schedule!r}")

    def init(params: Any) -> CountState:
        del params
        return CountState(_zeros_count())

    def update(grads: Any, state: CountState, params: Any = None) -> tuple[Any, CountState]:
        del params
        factor = jnp.asarray(schedule(state.count))
        updates = _map(lambda g: (g * factor.astype(_acc_dtype(g.dtype))).astype(g.dtype), grads)
        return updates, CountState(_increment(state.count))

    return Optimizer(init, update)


def scale_by_learning_rate(learning_rate: float | Schedule) -> Optimizer:
    """Multiplies updates by ``-learning_rate`` (the final step of every optimizer here).

    The state always holds an int32 step counter, whether the rate is constant or a schedule, so
    the state's structure does not depend on that choice.

    Args:
        learning_rate: A number > 0, or a schedule ``step -> lr``.

    Returns:
        An ``Optimizer`` with ``CountState`` state.

    Raises:
        ValueError: if a numeric ``learning_rate`` is not finite and > 0.
        TypeError: if it is neither a number nor callable.
    """
    lr = _check_lr(learning_rate)
    if callable(lr):
        return scale_by_schedule(lambda step: -jnp.asarray(lr(step)))

    def init(params: Any) -> CountState:
        del params
        return CountState(_zeros_count())

    def update(grads: Any, state: CountState, params: Any = None) -> tuple[Any, CountState]:
        del params
        return _map(lambda g: -lr * g, grads), CountState(_increment(state.count))

    return Optimizer(init, update)


def trace(beta: float = 0.9, *, nesterov: bool = False) -> Optimizer:
    """Momentum, PyTorch-style: ``v = beta * v + g``; the update is ``v``.

    With ``nesterov=True`` the update is ``g + beta * v`` (with the new ``v``), as in PyTorch's
    ``SGD(nesterov=True)`` and ``optax.trace``. ``v`` starts at 0, so the first update is ``g``.
    Note the convention differs from the "``v = mu * v - lr * g``" form: here the learning rate is
    applied after the buffer, which is the same trajectory for a constant rate but not for a
    schedule.

    Args:
        beta: Momentum coefficient in ``[0, 1)`` (default 0.9).
        nesterov: Use Nesterov momentum (default False).

    Returns:
        An ``Optimizer`` with ``TraceState`` state (buffers shaped like params).

    Raises:
        ValueError: if ``beta`` is outside ``[0, 1)``.
    """
    beta = _check_real("beta", beta, lo=0.0, hi=1.0, hi_open=True)

    def init(params: Any) -> TraceState:
        return TraceState(_map(jnp.zeros_like, params))

    def update(grads: Any, state: TraceState, params: Any = None) -> tuple[Any, TraceState]:
        del params
        new_trace = _map(lambda g, v: g + beta * v, grads, state.trace)
        if nesterov:
            updates = _map(lambda g, v: g + beta * v, grads, new_trace)
        else:
            updates = new_trace
        return updates, TraceState(new_trace)

    return Optimizer(init, update)


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """Adam's rescaling with bias correction (Kingma & Ba, 2015, Algorithm 1).

    ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g**2``; at step ``t`` (1-based)
    the update is ``m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - b1**t)`` and
    ``v_hat = v / (1 - b2**t)`` (identical to ``optax.scale_by_adam`` with ``eps_root=0``).

    Args:
        b1: First-moment decay in ``[0, 1)`` (default 0.9).
        b2: Second-moment decay in ``[0, 1)`` (default 0.999).
        eps: Added to the denominator, >= 0 (default 1e-8).

    Returns:
        An ``Optimizer`` with ``AdamState`` state.

    Raises:
        ValueError: if an argument is out of range.
    """
    b1 = _check_real("b1", b1, lo=0.0, hi=1.0, hi_open=True)
    b2 = _check_real("b2", b2, lo=0.0, hi=1.0, hi_open=True)
    eps = _check_real("eps", eps, lo=0.0)

    def init(params: Any) -> AdamState:
        zeros = _map(jnp.zeros_like, params)
        return AdamState(_zeros_count(), zeros, _map(jnp.zeros_like, params))

    def update(grads: Any, state: AdamState, params: Any = None) -> tuple[Any, AdamState]:
        del params
        mu = _map(lambda g, m: b1 * m + (1.0 - b1) * g, grads, state.mu)
        nu = _map(lambda g, v: b2 * v + (1.0 - b2) * g * g, grads, state.nu)
        count = _increment(state.count)

        def step(m: jax.Array, v: jax.Array) -> jax.Array:
            acc = _acc_dtype(m.dtype)
            t = count.astype(acc)
            m_hat = m.astype(acc) / (1.0 - b1**t)
            v_hat = v.astype(acc) / (1.0 - b2**t)
            return (m_hat / (jnp.sqrt(v_hat) + eps)).astype(m.dtype)

        return _map(step, mu, nu), AdamState(count, mu, nu)

    return Optimizer(init, update)


def scale_by_rms(decay: float = 0.9, eps: float = 1e-8) -> Optimizer:
    """RMSProp's rescaling, PyTorch-style: ``s = decay s + (1 - decay) g**2``; update
    ``g / (sqrt(s) + eps)``, with ``s`` starting at 0.

    ``optax.scale_by_rms`` defaults to ``eps`` *inside* the square root (``eps_in_sqrt=True``);
    this matches ``optax.scale_by_rms(..., eps_in_sqrt=False)`` and ``torch.optim.RMSprop``.

    Args:
        decay: Averaging coefficient in ``[0, 1)`` (default 0.9; PyTorch's ``alpha`` defaults to
            0.99).
        eps: Added to the denominator, >= 0 (default 1e-8).

    Returns:
        An ``Optimizer`` with ``RmsState`` state.

    Raises:
        ValueError: if an argument is out of range.
    """
    decay = _check_real("decay", decay, lo=0.0, hi=1.0, hi_open=True)
    eps = _check_real("eps", eps, lo=0.0)

    def init(params: Any) -> RmsState:
        return RmsState(_map(jnp.zeros_like, params))

    def update(grads: Any, state: RmsState, params: Any = None) -> tuple[Any, RmsState]:
        del params
        nu = _map(lambda g, s: decay * s + (1.0 - decay) * g * g, grads, state.nu)
        return _map(lambda g, s: g / (jnp.sqrt(s) + eps), grads, nu), RmsState(nu)

    return Optimizer(init, update)


def scale_by_rss(eps: float = 1e-10, initial_accumulator: float = 0.0) -> Optimizer:
    """Adagrad's rescaling, PyTorch-style: ``G = G + g**2``; update ``g / (sqrt(G) + eps)``.

    ``G`` starts at ``initial_accumulator``. ``optax.scale_by_rss`` puts ``eps`` inside the square
    root and defaults to ``initial_accumulator_value=0.1``; the defaults here are PyTorch's.

    Args:
        eps: Added to the denominator, >= 0 (default 1e-10). With ``eps = 0`` and
            ``initial_accumulator = 0`` a zero first gradient gives 0/0 = NaN.
        initial_accumulator: Starting value of ``G``, >= 0 (default 0.0).

    Returns:
        An ``Optimizer`` with ``RssState`` state.

    Raises:
        ValueError: if an argument is out of range.
    """
    eps = _check_real("eps", eps, lo=0.0)
    initial_accumulator = _check_real("initial_accumulator", initial_accumulator, lo=0.0)

    def init(params: Any) -> RssState:
        return RssState(_map(lambda p: jnp.full_like(p, initial_accumulator), params))

    def update(grads: Any, state: RssState, params: Any = None) -> tuple[Any, RssState]:
        del params
        acc = _map(lambda g, s: s + g * g, grads, state.sum_of_squares)
        return _map(lambda g, s: g / (jnp.sqrt(s) + eps), grads, acc), RssState(acc)

    return Optimizer(init, update)


def clip_by_global_norm(max_norm: float) -> Optimizer:
    """Rescales all updates together so their :func:`global_norm` is at most ``max_norm``.

    ``g <- g * max_norm / max(global_norm(g), max_norm)``: unchanged when the norm is already
    within the bound, and direction-preserving otherwise. Stateless.

    Args:
        max_norm: The bound, > 0.

    Returns:
        An ``Optimizer``.

    Raises:
        ValueError: if ``max_norm <= 0``.
    """
    max_norm = _check_real("max_norm", max_norm, lo=0.0, lo_open=True)

    def init(params: Any) -> EmptyState:
        del params
        return EmptyState()

    def update(grads: Any, state: EmptyState, params: Any = None) -> tuple[Any, EmptyState]:
        del params
        factor = max_norm / jnp.maximum(global_norm(grads), max_norm)
        return _map(
            lambda g: (g * factor.astype(_acc_dtype(g.dtype))).astype(g.dtype), grads
        ), state

    return Optimizer(init, update)


def add_weight_decay(weight_decay: float) -> Optimizer:
    """Adds ``weight_decay * params`` to the updates. Stateless; needs ``params``.

    Placed *before* an adaptive rescaling (``chain(add_weight_decay(wd), scale_by_adam(), ...)``)
    this is classic coupled L2 regularisation; placed *after* it, just before
    :func:`scale_by_learning_rate`, it is the decoupled decay of AdamW.

    Args:
        weight_decay: Coefficient, >= 0.

    Returns:
        An ``Optimizer``; its ``update`` raises ``ValueError`` if called without ``params``.

    Raises:
        ValueError: if ``weight_decay < 0``.
    """
    weight_decay = _check_real("weight_decay", weight_decay, lo=0.0)

    def init(params: Any) -> EmptyState:
        del params
        return EmptyState()

    def update(grads: Any, state: EmptyState, params: Any = None) -> tuple[Any, EmptyState]:
        if params is None:
            raise ValueError(
                "add_weight_decay needs the parameters: call `update(grads, state, params)` "
                "instead of `update(grads, state)`"
            )
        return _map(lambda g, p: g + weight_decay * p, grads, params), state

    return Optimizer(init, update)
