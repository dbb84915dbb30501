"""Deterministic numpy batching from a seed and an epoch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fconv.data.dataset import _check_int


def num_batches(n: int, batch_size: int, drop_last: bool = True) -> int:
    """Number of batches :func:`batches` yields per epoch.

    Args:
        n: Number of examples, >= 0.
        batch_size: Examples per batch, >= 1.
        drop_last: If True (default), a final partial batch is dropped.

    Returns:
        ``n // batch_size`` if ``drop_last`` else ``ceil(n / batch_size)``.

    Raises:
        TypeError: If ``n`` or ``batch_size`` is not an int.
        ValueError: If ``n`` < 0 or ``batch_size`` < 1.
    """
    n = _check_int("n", n, minimum=0)
    batch_size = _check_int("batch_size", batch_size, minimum=1)
    return n // batch_size if drop_last else -(-n // batch_size)


def batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    drop_last: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x_batch, y_batch)`` pairs covering the data once.

    The order is a permutation drawn from ``np.random.default_rng([seed, epoch])``: the same
    ``(seed, epoch)`` always gives the same batches, and each epoch a different order. Every
    example appears exactly once per epoch, except the ``n % batch_size`` left over when
    ``drop_last`` is True.

    Args:
        x: Inputs, any array indexable along axis 0 with ``N`` rows (e.g. ``(N, C, H, W)``).
        y: Labels ``(N,)`` (or any array with ``N`` rows).
        batch_size: Examples per batch; >= 1, and <= N when ``drop_last`` is True.
        seed: Non-negative shuffling seed; default 0.
        epoch: Non-negative epoch number mixed into the seed; default 0.
        shuffle: If False, batches are taken in order; default True.
        drop_last: If True (default), a final partial batch is dropped so every batch has
            ``batch_size`` rows (one compiled shape under ``jit``).

    Yields:
        ``(x[idx], y[idx])`` for consecutive chunks ``idx`` of the (shuffled) order.

    Raises:
        TypeError: If ``x`` or ``y`` is a list or tuple, or ``batch_size``, ``seed`` or
            ``epoch`` is not an int.
        ValueError: If ``x`` and ``y`` differ in length, ``batch_size`` < 1, ``batch_size`` > N
            with ``drop_last``, or ``seed``/``epoch`` is negative.
    """
    # Validate eagerly (not at the first next()) by doing it before creating the generator.
    for name, v in (("x", x), ("y", y)):
        if isinstance(v, (list, tuple)):  # they cannot be indexed by an index array
            raise TypeError(
                f"{name} must be an array (numpy or JAX), got a {type(v).__name__}; pass "
                f"np.asarray({name})"
            )
    n = int(np.shape(x)[0]) if np.ndim(x) else 0
    if np.ndim(x) == 0 or np.ndim(y) == 0 or np.shape(y)[0] != n:
        raise ValueError(
            f"x and y must have the same number of rows, got shapes {np.shape(x)} and {np.shape(y)}"
        )
    batch_size = _check_int("batch_size", batch_size, minimum=1)
    seed = _check_int("seed", seed, minimum=0)
    epoch = _check_int("epoch", epoch, minimum=0)
    if drop_last and batch_size > n:
        raise ValueError(
            f"batch_size ({batch_size}) must be <= the number of examples ({n}) when "
            f"drop_last=True, else no batch would be produced"
        )
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    count = num_batches(n, batch_size, drop_last)
    return _iter_batches(x, y, order, batch_size, count)


def _iter_batches(x, y, order, batch_size, count):
    for i in range(count):
        idx = order[i * batch_size : (i + 1) * batch_size]
        yield x[idx], y[idx]
