"""The ``Dataset`` container and the argument checks shared by the loaders."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np


class Dataset(NamedTuple):
    """A train/test split held as numpy arrays.

    Attributes:
        x_train: Training images, ``float32`` ``(N_train, C, H, W)``.
        y_train: Training labels, ``int32`` ``(N_train,)`` in ``[0, num_classes)``.
        x_test: Test images, ``float32`` ``(N_test, C, H, W)``.
        y_test: Test labels, ``int32`` ``(N_test,)``.
        num_classes: Number of classes.
        name: Short dataset name, e.g. ``"digits"``, ``"mnist"``, ``"cifar10"``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The per-example image shape ``(C, H, W)``."""
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_train(self) -> int:
        """Number of training examples."""
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        """Number of test examples."""
        return int(self.x_test.shape[0])


def _check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_number(name: str, value: object) -> float:
    """A concrete real number: a Python or numpy scalar or a concrete 0-d array (not a bool,
    not a value traced under jit)."""
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{name} must be a number (a Python or numpy scalar; static under jit), got a "
            f"traced value {value!r}"
        )
    if isinstance(value, (np.ndarray, jax.Array)) and value.shape == ():
        if np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating):
            value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(
            f"{name} must be a number (a Python or numpy scalar; static under jit), got "
            f"{value!r} of type {type(value).__name__}"
        )
    return float(value)


def _check_images(name: str, x: object) -> tuple[int, ...]:
    shape = np.shape(x)
    if len(shape) != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {tuple(shape)}")
    return tuple(int(d) for d in shape)
