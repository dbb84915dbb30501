"""The optimizer contract: the ``Optimizer`` pair, its state NamedTuples and the tree utilities.

``Optimizer(init, update)`` is the gradient transformation every other module of
:mod:`fconv.optim` builds and returns (see :mod:`fconv.optim` for the contract). The states are
NamedTuples, so they are pytrees; :mod:`fconv.checkpoint` names them by class name (e.g.
``AdamState``), so the names are part of the checkpoint format. :func:`chain` composes
transformations, :func:`apply_updates` adds updates to parameters, :func:`global_norm` measures a
tree; ``_map`` and ``_acc_dtype`` are the private tree helpers the transformations share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "Optimizer",
    "GradientTransformation",
    "Schedule",
    "EmptyState",
    "CountState",
    "TraceState",
    "AdamState",
    "RmsState",
    "RssState",
    "apply_updates",
    "global_norm",
    "chain",
]

Schedule = Callable[[Any], jax.Array]
"""``step -> value``: a jit-friendly function of an int32 step returning a float32 scalar."""


class Optimizer(NamedTuple):
    """A gradient transformation ``(init, update)``; see :mod:`fconv.optim` for the contract.

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
# Tree helpers (private)
# ----------------------------------------------------------------------------------------------


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
