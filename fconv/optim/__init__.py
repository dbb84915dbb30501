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

The package, one concept per module (everything is re-exported here, so ``fconv.optim.adam``
and ``from fconv.optim import adam`` work as before):

* :mod:`fconv.optim.base`: the contract itself: ``Optimizer``, the state NamedTuples, the
  ``Schedule`` type, and :func:`chain`, :func:`apply_updates`, :func:`global_norm`;
* :mod:`fconv.optim.transforms`: the composable gradient transformations (:func:`scale`,
  :func:`trace`, :func:`scale_by_adam`, :func:`clip_by_global_norm`, ...);
* :mod:`fconv.optim.optimizers`: the named optimizers (:func:`sgd`, :func:`momentum`,
  :func:`nesterov`, :func:`adam`, :func:`adamw`, :func:`rmsprop`, :func:`adagrad`), each a chain
  of transformations;
* :mod:`fconv.optim.schedules`: learning-rate schedules ``step -> lr``.
"""

# The state NamedTuples are importable from here (``fconv.optim.AdamState``) but, as before the
# split into modules, not listed in ``__all__``; the ``X as X`` form marks them as re-exports.
from fconv.optim.base import AdamState as AdamState
from fconv.optim.base import CountState as CountState
from fconv.optim.base import EmptyState as EmptyState
from fconv.optim.base import (
    GradientTransformation,
    Optimizer,
    Schedule,
    apply_updates,
    chain,
    global_norm,
)
from fconv.optim.base import RmsState as RmsState
from fconv.optim.base import RssState as RssState
from fconv.optim.base import TraceState as TraceState
from fconv.optim.optimizers import adagrad, adam, adamw, momentum, nesterov, rmsprop, sgd
from fconv.optim.schedules import (
    constant_schedule,
    cosine_decay_with_warmup,
    exponential_decay,
    step_schedule,
)
from fconv.optim.transforms import (
    add_weight_decay,
    clip_by_global_norm,
    scale,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    scale_by_rss,
    scale_by_schedule,
    trace,
)

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
