"""A small learnable synthetic dataset for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fconv.data.dataset import Dataset, _check_int, _check_number


def synthetic(
    num_train: int = 512,
    num_test: int = 128,
    input_shape: Sequence[int] = (1, 28, 28),
    num_classes: int = 10,
    seed: int = 0,
    *,
    noise: float = 0.35,
) -> Dataset:
    """A small learnable dataset: one random prototype image per class plus Gaussian noise.

    Each class has a fixed prototype with pixels uniform in ``[0, 1]``; an example is its
    class's prototype plus ``noise``-scaled standard normal noise, clipped to ``[0, 1]``.
    Labels are balanced (``i % num_classes`` before shuffling). Train and test share the
    prototypes, so a nearest-class-mean classifier already separates them well for images of
    a few dozen pixels or more.

    Args:
        num_train: Number of training examples, >= 1; default 512.
        num_test: Number of test examples, >= 1; default 128.
        input_shape: Per-example shape ``(C, H, W)``; default ``(1, 28, 28)``.
        num_classes: Number of classes, >= 2; default 10.
        seed: Non-negative seed; default 0. The same arguments always give the same data.
        noise: Standard deviation of the noise, >= 0; default 0.35.

    Returns:
        A :class:`Dataset` named ``"synthetic"`` with float32 images ``(N, C, H, W)``.

    Raises:
        TypeError: If a count or ``seed`` is not an int, ``input_shape`` is not a sequence or
            ``noise`` is not a number.
        ValueError: If a count is out of range, ``input_shape`` is not three positive ints or
            ``noise`` is negative.
    """
    num_train = _check_int("num_train", num_train, minimum=1)
    num_test = _check_int("num_test", num_test, minimum=1)
    num_classes = _check_int("num_classes", num_classes, minimum=2)
    seed = _check_int("seed", seed, minimum=0)
    if isinstance(input_shape, (str, bytes)) or np.ndim(input_shape) != 1:
        raise TypeError(f"input_shape must be a sequence (C, H, W), got {input_shape!r}")
    shape = tuple(input_shape.tolist() if isinstance(input_shape, np.ndarray) else input_shape)
    if len(shape) != 3 or any(
        isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in shape
    ):
        raise ValueError(f"input_shape must be three positive ints (C, H, W), got {input_shape!r}")
    if not _check_number("noise", noise) >= 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng([seed, 0x5359])
    prototypes = rng.uniform(0.0, 1.0, size=(num_classes, *shape)).astype(np.float32)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % num_classes).astype(np.int32)
        eps = rng.standard_normal(size=(n, *shape), dtype=np.float32)
        x = np.clip(prototypes[y] + np.float32(noise) * eps, 0.0, 1.0).astype(np.float32)
        return x, y

    x_train, y_train = draw(num_train)
    x_test, y_test = draw(num_test)
    return Dataset(x_train, y_train, x_test, y_test, num_classes, "synthetic")
