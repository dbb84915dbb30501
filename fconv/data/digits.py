"""scikit-learn's bundled 8x8 handwritten digits, split deterministically."""

from __future__ import annotations

import numpy as np

from fconv.data.dataset import Dataset, _check_int


def _stratified_test_mask(
    y: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Boolean mask choosing ``round(N * test_fraction)`` test examples, stratified by class.

    Each class gets ``floor(count * test_fraction)`` test examples; the remaining slots go to
    the classes with the largest remainders (ties to the lower class index). Within a class
    the examples are chosen uniformly at random from ``rng``.
    """
    n = y.shape[0]
    n_test = int(round(n * test_fraction))
    classes, counts = np.unique(y, return_counts=True)
    quotas = counts * test_fraction
    take = np.floor(quotas).astype(np.int64)
    leftover = n_test - int(take.sum())
    order = np.argsort(-(quotas - take), kind="stable")
    take[order[:leftover]] += 1
    mask = np.zeros(n, dtype=bool)
    for c, k in zip(classes, take, strict=True):
        idx = np.flatnonzero(y == c)
        mask[rng.permutation(idx)[:k]] = True
    return mask


def load_digits(seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """Load scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes).

    The data ships with scikit-learn, so nothing is downloaded. Pixel values ``0..16`` are
    scaled to ``[0, 1]``. The split is stratified by class (each class contributes its share of
    the ``round(1797 * test_fraction)`` test images) and both splits are shuffled; the same
    ``seed`` always gives the same split.

    Args:
        seed: Non-negative seed of the split and shuffle; default 0.
        test_fraction: Fraction of the images in the test split, strictly between 0 and 1;
            default 0.2 (359 test, 1,438 train images).

    Returns:
        A :class:`Dataset` named ``"digits"`` with images ``(N, 1, 8, 8)`` float32 in ``[0, 1]``.

    Raises:
        ImportError: If scikit-learn is not installed.
        TypeError: If ``seed`` is not an int or ``test_fraction`` not a number.
        ValueError: If ``seed`` is negative or ``test_fraction`` leaves a split empty.
    """
    seed = _check_int("seed", seed, minimum=0)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float, np.floating)):
        raise TypeError(f"test_fraction must be a float, got {type(test_fraction).__name__}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_digits needs scikit-learn; install it with: pip install 'fconv[data]'"
        ) from e
    raw = _sk_load_digits()
    x = (np.asarray(raw.images, dtype=np.float32) / np.float32(16.0))[:, None, :, :]
    y = np.asarray(raw.target, dtype=np.int32)
    n_test = int(round(y.shape[0] * test_fraction))
    if n_test == 0 or n_test == y.shape[0]:
        raise ValueError(
            f"test_fraction={test_fraction} leaves an empty split of the {y.shape[0]} images"
        )
    rng = np.random.default_rng([seed, 0x6469])
    test = _stratified_test_mask(y, float(test_fraction), rng)
    train_idx = rng.permutation(np.flatnonzero(~test))
    test_idx = rng.permutation(np.flatnonzero(test))
    return Dataset(x[train_idx], y[train_idx], x[test_idx], y[test_idx], 10, "digits")
