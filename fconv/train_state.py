"""The training state: what changes during training, as one pytree of arrays, and its creation.

:class:`TrainState` holds ``params``, ``opt_state``, ``model_state`` (BatchNorm statistics, ``()``
per stateless layer), the int32 ``step`` and the ``rng`` key *data* (uint32, so the whole state
is a pytree of plain arrays that checkpoints and ``jax.jit`` handle unchanged);
:func:`init_train_state` draws a fresh one from a seed.

It sits below the modules that use it -- :mod:`fconv.train` (the step and :func:`fconv.train.fit`),
:mod:`fconv.runs` (restoring a state from a run directory) and :mod:`fconv.parallel` (replicating
it over a mesh) -- so none of them needs to import another for the type. Both names are also
re-exported as ``fconv.train.TrainState`` and ``fconv.train.init_train_state``.

Example:
    >>> from fconv import models, optim
    >>> state = init_train_state(models.lenet5(4, (1, 8, 8)), optim.sgd(0.1), (1, 8, 8), seed=0)
    >>> int(state.step), state.rng.dtype
    (0, dtype('uint32'))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fconv import optim
from fconv.optim._checks import _check_int

__all__ = ["TrainState", "init_train_state"]


class TrainState(NamedTuple):
    """Everything that changes during training; a pytree of arrays.

    Attributes:
        params: The model's parameter pytree.
        opt_state: The optimizer state (``optimizer.init(params)``).
        model_state: The model state from ``model.init_state`` (BatchNorm running statistics;
            ``()`` leaves for stateless layers).
        step: int32 scalar, the number of train steps taken.
        rng: uint32 key data (``jax.random.key_data``) of the training key. It never changes;
            step ``s`` uses ``jax.random.fold_in(key, s)``.
    """

    params: Any
    opt_state: Any
    model_state: Any
    step: jax.Array
    rng: jax.Array


# The argument check of the training functions (here, in fconv.train and in fconv.parallel) is
# fconv.optim's: the lowest module that needs it holds it, so every user imports it without a cycle.


def _batch_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """The shape ``model.init`` is given for per-example ``input_shape``: ``(-1, C, H, W)``."""
    return (-1, *(int(d) for d in input_shape))


def init_train_state(
    model: Any, optimizer: optim.Optimizer, input_shape: Sequence[int], seed: int
) -> TrainState:
    """A fresh :class:`TrainState`: parameters, optimizer and model state drawn from ``seed``.

    ``jax.random.key(seed)`` is split once: the first half initialises the parameters, the
    second is the training key stored (as key data) in ``rng``.

    Args:
        model: A ``fconv.layers.Layer`` (``init``, ``apply``, ``init_state``).
        optimizer: An :class:`fconv.optim.Optimizer`.
        input_shape: Per-example shape ``(C, H, W)``, without the batch axis.
        seed: Non-negative int.

    Returns:
        The state at step 0.
    """
    seed = _check_int("seed", seed, lo=0)
    init_key, train_key = jax.random.split(jax.random.key(seed))
    shape = _batch_shape(input_shape)
    _, params = model.init(init_key, shape)
    return TrainState(
        params=params,
        opt_state=optimizer.init(params),
        model_state=model.init_state(shape),
        step=jnp.zeros((), jnp.int32),
        rng=jax.random.key_data(train_key),
    )
