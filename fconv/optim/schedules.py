"""Learning-rate schedules ``step -> value``: all return float32 scalars and accept a traced step.

Pass one as the ``learning_rate`` of any optimizer in :mod:`fconv.optim.optimizers`, or to
:func:`~fconv.optim.transforms.scale_by_schedule`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from fconv.optim._checks import _check_int, _check_real
from fconv.optim.base import Schedule

__all__ = ["constant_schedule", "step_schedule", "exponential_decay", "cosine_decay_with_warmup"]


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
    * ``warmup_steps <= step < total_steps``:
      ``end_value + (peak_value - end_value) * (1 + cos(pi * p)) / 2`` with
      ``p = (step - warmup_steps) / (total_steps - warmup_steps)``;
    * ``step >= total_steps``: ``end_value`` (also when ``warmup_steps == total_steps``, where
      the warm-up never reaches ``peak_value``).

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
        # p = 1 from total_steps on, also when warmup_steps == total_steps (no decay phase).
        p = jnp.where(t >= total_steps, 1.0, jnp.clip((t - warmup_steps) / decay_steps, 0.0, 1.0))
        cosine = end_value + (peak_value - end_value) * 0.5 * (1.0 + jnp.cos(jnp.pi * p))
        return jnp.where(t < warmup_steps, warm, cosine).astype(jnp.float32)

    return schedule
