"""Argument checks shared by the transformations and the schedules (private).

Each check raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one out of
range, naming the argument, and returns the value as a plain Python number.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fconv.optim.base import Schedule


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
