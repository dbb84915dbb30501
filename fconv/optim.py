"""Optimizers as composable gradient transformations (optax's design, written from scratch).

The contract, stated once:

* An ``Optimizer(init, update)`` NamedTuple is a *gradient transformation*:
  ``init(params) -> state`` and ``update(grads, state, params=None) -> (updates, new_state)``.
  ``state`` is a pytree (NamedTuples of arrays), so it passes through ``jax.jit``, ``jax.lax.scan``
  and checkpointing unchanged.
* ``grads``, ``params`` and ``updates`` are any pytree of arrays (dicts, lists, tuples, nested;
  ``None`` leaves are carried through). ``updates`` has the structure of ``grads``.
* Updates are *added*: ``params = apply_updates(params, updates)``. Full optimizers therefore end
  with :func:`scale_by_learning_rate`, which multiplies by ``-lr``.
* :func:`chain` composes transformations left to right, so ``chain(clip_by_global_norm(1.0),
  scale_by_adam(), scale_by_learning_rate(1e-3))`` is Adam on clipped gradients; ``adam(1e-3)`` is
  the same chain without the clip.
* A learning rate is a positive number or a *schedule* ``step -> lr`` (a jit-friendly function of
  an int32 step, returning a float32 scalar). :func:`scale_by_learning_rate` keeps an int32 step
  counter in its state either way; the first update uses step 0.

Example:
    >>> params = {"w": jnp.ones(3)}
    >>> opt = adam(1e-2)
    >>> state = opt.init(params)
    >>> grads = {"w": jnp.array([1.0, -1.0, 0.0])}
    >>> updates, state = opt.update(grads, state, params)
    >>> [round(float(w), 4) for w in apply_updates(params, updates)["w"]]
    [0.99, 1.01, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Optimizer",
    "GradientTransformation",
    "Schedule",
    "apply_updates",
    "global_norm",
    "chain",
    "scale",
    "scale_by_schedule",
    "scale_by_learning_rate",
    "trace",
    "scale_by_adam",
    "scale_by_rms",
    "scale_by_rss",
    "clip_by_global_norm",
    "add_weight_decay",
    "sgd",
    "momentum",
    "nesterov",
    "adam",
    "adamw",
    "rmsprop",
    "adagrad",
    "constant_schedule",
    "step_schedule",
    "exponential_decay",
    "cosine_decay_with_warmup",
]

Schedule = Callable[[Any], jax.Array]
"""``step -> value``: a jit-friendly function of an int32 step returning a float32 scalar."""

_INT32_MAX = np.iinfo(np.int32).max


class Optimizer(NamedTuple):
    """A gradient transformation ``(init, update)``; see the module docstring for the contract.

    Attributes:
        init: ``init(params) -> state``.
        update: ``update(grads, state, params=None) -> (updates, new_state)``.
    """

    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any]]


GradientTransformation = Optimizer


class EmptyState(NamedTuple):
    """State of a stateless transformation."""


class CountState(NamedTuple):
    """State holding the int32 number of updates done so far."""

    count: jax.Array


class TraceState(NamedTuple):
    """Momentum buffer (same structure as params)."""

    trace: Any


class AdamState(NamedTuple):
    """Adam step counter and first/second moment estimates."""

    count: jax.Array
    mu: Any
    nu: Any


class RmsState(NamedTuple):
    """Running average of squared gradients."""

    nu: Any


class RssState(NamedTuple):
    """Running sum of squared gradients (Adagrad accumulator)."""

    sum_of_squares: Any


# ----------------------------------------------------------------------------------------------
# Argument checks and tree helpers (private)
# ----------------------------------------------------------------------------------------------


def _scalar(value: Any) -> Any:
    """Unwraps a 0-d real numpy/jax array into a Python scalar; anything else is returned as is."""
    if isinstance(value, (np.ndarray, jax.Array)) and value.shape == ():
        if jnp.issubdtype(value.dtype, jnp.integer) or jnp.issubdtype(value.dtype, jnp.floating):
            return value.item()
    return value


def _check_real(
    name: str,
    value: Any,
    *,
    lo: float | None = None,
    lo_open: bool = False,
    hi: float | None = None,
    hi_open: bool = False,
) -> float:
    """Checks that ``value`` is a finite real number in the given interval; returns a float.

    Python and numpy scalars are accepted, and so are concrete 0-d real arrays (``jnp.array(0.1)``).
    """
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ValueError(f"`{name}` must be {'>' if lo_open else '>='} {lo}, got {value}")
    if hi is not None and (value >= hi if hi_open else value > hi):
        raise ValueError(f"`{name}` must be {'<' if hi_open else '<='} {hi}, got {value}")
    return value


def _check_int(name: str, value: Any, *, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int, got {value!r}")
    if value < lo:
        raise ValueError(f"`{name}` must be >= {lo}, got {value}")
    return int(value)


def _check_lr(learning_rate: Any) -> float | Schedule:
    if callable(learning_rate):
        return learning_rate
    learning_rate = _scalar(learning_rate)
    if isinstance(learning_rate, bool) or not isinstance(
        learning_rate, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            f"`learning_rate` must be a positive number or a schedule `step -> lr`, "
            f"got {learning_rate!r}"
        )
    return _check_real("learning_rate", learning_rate, lo=0.0, lo_open=True)


def _increment(count: jax.Array) -> jax.Array:
    """``count + 1`` in int32, saturating at the int32 maximum instead of wrapping."""
    return count + (count < _INT32_MAX).astype(jnp.int32)


def _zeros_count() -> jax.Array:
    return jnp.zeros((), jnp.int32)


def _map(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """``tree_map`` that passes ``None`` leaves of ``tree`` through unchanged."""
    return jax.tree_util.tree_map(
        lambda x, *r: None if x is None else fn(x, *r), tree, *rest, is_leaf=lambda x: x is None
    )


def _acc_dtype(dtype: Any) -> Any:
    """At least float32, for scalar factors applied to low-precision leaves."""
    return jnp.promote_types(dtype, jnp.float32)


# ----------------------------------------------------------------------------------------------
# Tree utilities
# ----------------------------------------------------------------------------------------------


def global_norm(tree: Any) -> jax.Array:
    """Euclidean norm of all leaves of a pytree taken together, ``sqrt(sum_leaves sum(x**2))``.

    Args:
        tree: Any pytree of floating-point arrays.

    Returns:
        A scalar of the leaves' promoted dtype (at least float32); 0.0 for an empty tree.

    Example:
        >>> float(global_norm({"a": jnp.array([3.0]), "b": [jnp.array([4.0])]}))
        5.0
    """
    leaves = [jnp.asarray(x) for x in jax.tree_util.tree_leaves(tree)]
    total = jnp.zeros((), jnp.float32)
    for x in leaves:
        total = total + jnp.sum(x.astype(_acc_dtype(x.dtype)) ** 2)
    return jnp.sqrt(total)


def apply_updates(params: Any, updates: Any) -> Any:
    """Returns ``params + updates`` leaf by leaf, each result cast to its parameter's dtype.

    Args:
        params: Pytree of arrays.
        updates: Pytree with the same structure (e.g. the output of ``Optimizer.update``).

    Returns:
        The new parameters, with the structure and dtypes of ``params``.

    Raises:
        ValueError: if the two trees have different structures.
    """
    p_def = jax.tree_util.tree_structure(params)
    u_def = jax.tree_util.tree_structure(updates)
    if p_def != u_def:
        raise ValueError(
            f"`updates` must have the tree structure of `params`; params: {p_def}, updates: {u_def}"
        )
    return _map(lambda p, u: (jnp.asarray(p) + u).astype(jnp.asarray(p).dtype), params, updates)


def chain(*transforms: Optimizer) -> Optimizer:
    """Composes gradient transformations, applied left to right.

    The state is the tuple of the transforms' states, in order.

    Args:
        *transforms: ``Optimizer`` instances.

    Returns:
        An ``Optimizer`` that feeds each transform's updates into the next.

    Raises:
        TypeError: if an argument is not an ``Optimizer``.
    """
    for i, t in enumerate(transforms):
        if not isinstance(t, Optimizer):
            raise TypeError(
                f"`transforms[{i}]` must be an fconv.optim.Optimizer, got {type(t).__name__}"
            )

    def init(params: Any) -> tuple[Any, ...]:
        return tuple(t.init(params) for t in transforms)

    def update(grads: Any, state: tuple[Any, ...], params: Any = None) -> tuple[Any, tuple]:
        if not isinstance(state, tuple) or len(state) != len(transforms):
            raise ValueError(
                f"`state` must be the tuple of {len(transforms)} states made by this chain's "
                f"init, got {type(state).__name__}"
            )
        new_state = []
        for t, s in zip(transforms, state, strict=True):
            grads, s = t.update(grads, s, params)
            new_state.append(s)
        return grads, tuple(new_state)

    return Optimizer(init, update)


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


# ----------------------------------------------------------------------------------------------
# Optimizers
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Schedules (all return float32 scalars and accept a traced int step)
# ----------------------------------------------------------------------------------------------


def _step_as_float(step: Any) -> jax.Array:
    return jnp.asarray(step).astype(jnp.float32)


def constant_schedule(value: float) -> Schedule:
    """Returns ``step -> value``.

    Args:
        value: A finite number >= 0.

    Returns:
        A schedule returning a float32 scalar.

    Raises:
        ValueError: if ``value`` is negative or not finite.
    """
    value = _check_real("value", value, lo=0.0)

    def schedule(step: Any) -> jax.Array:
        return jnp.full(jnp.shape(step), value, jnp.float32)

    return schedule


def step_schedule(
    init_value: float,
    boundaries_and_scales: Mapping[int, float] | None = None,
    *,
    step_size: int | None = None,
    gamma: float = 0.1,
) -> Schedule:
    """Piecewise-constant decay, in one of two forms (give exactly one):

    * ``boundaries_and_scales={b: s, ...}``: the value is multiplied by ``s`` from step ``b`` on,
      cumulatively (``optax.piecewise_constant_schedule``, PyTorch ``MultiStepLR`` with per-step
      factors): ``{100: 0.1, 200: 0.1}`` gives ``init`` on ``[0, 100)``, ``0.1 init`` on
      ``[100, 200)`` and ``0.01 init`` from 200.
    * ``step_size=k``: ``init_value * gamma ** (step // k)`` (PyTorch ``StepLR``).

    Args:
        init_value: Value at step 0, finite and >= 0.
        boundaries_and_scales: Mapping from step (int >= 0) to multiplicative factor (>= 0).
        step_size: Period ``k`` of the decay, int >= 1.
        gamma: Factor per period when ``step_size`` is given, >= 0 (default 0.1).

    Returns:
        A schedule returning a float32 scalar.

    Raises:
        ValueError: if both or neither of ``boundaries_and_scales`` and ``step_size`` are given,
            or a value is out of range.
        TypeError: if ``boundaries_and_scales`` is not a mapping.
    """
    init_value = _check_real("init_value", init_value, lo=0.0)
    if (boundaries_and_scales is None) == (step_size is None):
        raise ValueError(
            "step_schedule needs exactly one of `boundaries_and_scales` or `step_size`, got "
            f"boundaries_and_scales={boundaries_and_scales!r}, step_size={step_size!r}"
        )
    if step_size is not None:
        step_size = _check_int("step_size", step_size, lo=1)
        gamma = _check_real("gamma", gamma, lo=0.0)

        def periodic(step: Any) -> jax.Array:
            k = jnp.floor_divide(jnp.asarray(step), step_size).astype(jnp.float32)
            return init_value * jnp.power(jnp.float32(gamma), k)

        return periodic

    if not isinstance(boundaries_and_scales, Mapping):
        raise TypeError(
            f"`boundaries_and_scales` must be a mapping {{step: scale}}, "
            f"got {type(boundaries_and_scales).__name__}"
        )
    pairs = sorted(
        (_check_int("boundaries_and_scales key", b, lo=0), _check_real("scale", s, lo=0.0))
        for b, s in boundaries_and_scales.items()
    )

    def piecewise(step: Any) -> jax.Array:
        step = jnp.asarray(step)
        value = jnp.full(step.shape, init_value, jnp.float32)
        for boundary, factor in pairs:
            value = jnp.where(step >= boundary, value * factor, value)
        return value

    return piecewise


def exponential_decay(
    init_value: float, decay_rate: float, decay_steps: int, *, staircase: bool = False
) -> Schedule:
    """``init_value * decay_rate ** (step / decay_steps)``.

    Args:
        init_value: Value at step 0, finite and >= 0.
        decay_rate: Factor per ``decay_steps`` steps, > 0.
        decay_steps: int >= 1.
        staircase: If True, use ``step // decay_steps`` (integer division) so the value drops in
            steps (default False).

    Returns:
        A schedule returning a float32 scalar.

    Raises:
        ValueError: if an argument is out of range.
    """
    init_value = _check_real("init_value", init_value, lo=0.0)
    decay_rate = _check_real("decay_rate", decay_rate, lo=0.0, lo_open=True)
    decay_steps = _check_int("decay_steps", decay_steps, lo=1)

    def schedule(step: Any) -> jax.Array:
        p = _step_as_float(step) / decay_steps
        if staircase:
            p = jnp.floor(p)
        return init_value * jnp.power(jnp.float32(decay_rate), p)

    return schedule


def cosine_decay_with_warmup(
    peak_value: float,
    warmup_steps: int,
    total_steps: int,
    *,
    end_value: float = 0.0,
    init_value: float = 0.0,
) -> Schedule:
    """Linear warm-up then half-cosine decay (``optax.warmup_cosine_decay_schedule``).

    * ``step < warmup_steps``: ``init_value + (peak_value - init_value) * step / warmup_steps``;
    * ``warmup_steps <= step <= total_steps``:
      ``end_value + (peak_value - end_value) * (1 + cos(pi * p)) / 2`` with
      ``p = (step - warmup_steps) / (total_steps - warmup_steps)``;
    * ``step > total_steps``: ``end_value``.

    ``total_steps`` includes the warm-up.

    Args:
        peak_value: Value at the end of warm-up, finite and >= 0.
        warmup_steps: int, ``0 <= warmup_steps <= total_steps``.
        total_steps: int >= 1, the step at which ``end_value`` is reached.
        end_value: Final value, >= 0 (default 0.0).
        init_value: Value at step 0 when ``warmup_steps > 0``, >= 0 (default 0.0).

    Returns:
        A schedule returning a float32 scalar.

    Raises:
        ValueError: if an argument is out of range.
    """
    peak_value = _check_real("peak_value", peak_value, lo=0.0)
    end_value = _check_real("end_value", end_value, lo=0.0)
    init_value = _check_real("init_value", init_value, lo=0.0)
    total_steps = _check_int("total_steps", total_steps, lo=1)
    warmup_steps = _check_int("warmup_steps", warmup_steps, lo=0)
    if warmup_steps > total_steps:
        raise ValueError(
            f"`warmup_steps` (={warmup_steps}) must be <= `total_steps` (={total_steps})"
        )
    decay_steps = max(total_steps - warmup_steps, 1)

    def schedule(step: Any) -> jax.Array:
        t = _step_as_float(step)
        warm = init_value + (peak_value - init_value) * t / max(warmup_steps, 1)
        p = jnp.clip((t - warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = end_value + (peak_value - end_value) * 0.5 * (1.0 + jnp.cos(jnp.pi * p))
        return jnp.where(t < warmup_steps, warm, cosine).astype(jnp.float32)

    return schedule
