"""Datasets, batching and augmentation.

Conventions: images are ``float32`` arrays laid out ``(N, C, H, W)`` with values in ``[0, 1]``
(before :func:`normalize`); labels are ``int32`` arrays of shape ``(N,)``.

Loaders return a :class:`Dataset` of numpy arrays:

* :func:`load_digits` -- scikit-learn's bundled 8x8 digits (no download; ``pip install
  'fconv[data]'``).
* :func:`load_mnist` / :func:`load_idx` -- MNIST and Fashion-MNIST IDX files, raw or gzip.
* :func:`load_cifar10` -- the CIFAR-10 *binary* version (never the pickled Python version: fconv
  does not unpickle files).
* :func:`synthetic` -- a small learnable dataset for tests and benchmarks.

Files are parsed defensively: every header field, size and label is checked and a malformed file
raises ``ValueError`` naming the file and what was wrong. :func:`write_idx` and
:func:`write_cifar10_bin` write the same formats atomically (useful for making small files).

:func:`batches` is a deterministic numpy batch iterator; :func:`random_crop`, :func:`random_flip`
and :func:`augment` are pure, batched, jit-compatible JAX functions.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from fconv.atomic_io import write_bytes_atomic

__all__ = [
    "Dataset",
    "load_digits",
    "read_idx",
    "write_idx",
    "load_idx",
    "load_mnist",
    "read_cifar10_bin",
    "write_cifar10_bin",
    "load_cifar10",
    "synthetic",
    "compute_mean_std",
    "normalize",
    "num_batches",
    "batches",
    "random_crop",
    "random_flip",
    "augment",
]


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


# --------------------------------------------------------------------------------------------
# Argument checks shared by this module.


def _check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_images(name: str, x: object) -> tuple[int, ...]:
    shape = np.shape(x)
    if len(shape) != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {tuple(shape)}")
    return tuple(int(d) for d in shape)


# --------------------------------------------------------------------------------------------
# scikit-learn digits.


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


# --------------------------------------------------------------------------------------------
# IDX (MNIST / Fashion-MNIST).

# IDX type byte -> big-endian numpy dtype ("THE IDX FILE FORMAT", yann.lecun.com/exdb/mnist).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_maybe_gzip(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip stream ({e})") from e
    return data


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read any IDX file (gzip-compressed when it starts with the gzip magic ``1f 8b``).

    Header: two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D
    float32, 0x0E float64), a byte giving the number of dimensions, then each dimension as a
    big-endian uint32. The payload must hold exactly the product of the dimensions in elements.

    Args:
        path: The file to read.

    Returns:
        The array with the stored shape, converted to native byte order.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the header is malformed, the payload is truncated or has trailing bytes,
            or the gzip stream is corrupt; the message names ``path``.
    """
    path = os.fspath(path)
    data = _read_maybe_gzip(path)
    if len(data) < 4:
        raise ValueError(f"{path}: IDX file too short for its 4-byte header ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{magic:08x}; expected 0x0000TTDD with type byte "
            f"TT in {sorted(f'0x{c:02x}' for c in _IDX_DTYPES)}"
        )
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{path}: IDX header truncated: {ndim} dimensions need {header} header bytes, "
            f"file has {len(data)}"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(dims) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: IDX payload {what}: dimensions {dims} need {expected} bytes, got {got}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header, count=math.prod(dims)).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, atomically; gzip-compressed when ``path`` ends in ``.gz``.

    Args:
        path: Destination file; its directory must exist.
        array: Array with 1 to 255 dimensions, each below 2**32, of dtype uint8, int8, int16,
            int32, float32 or float64.

    Raises:
        TypeError: If the dtype of ``array`` has no IDX type code.
        ValueError: If ``array`` has 0 or more than 255 dimensions, or a dimension >= 2**32.
    """
    arr = np.asarray(array)
    code = _IDX_CODES.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(
            f"array dtype must be one of uint8, int8, int16, int32, float32, float64 for IDX, "
            f"got {arr.dtype}"
        )
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"array must have 1 to 255 dimensions for IDX, got {arr.ndim}")
    if any(d >= 2**32 for d in arr.shape):
        raise ValueError(f"array dimensions must be < 2**32 for IDX, got shape {arr.shape}")
    header = bytes([0, 0, code, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    data = header + np.ascontiguousarray(arr, dtype=_IDX_DTYPES[code]).tobytes()
    if os.fspath(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    write_bytes_atomic(path, data)


def load_idx(
    images_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    *,
    num_classes: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Load an MNIST-style pair of IDX files (raw or gzip-compressed).

    Args:
        images_path: Images file, magic ``0x00000803`` (uint8, 3 dimensions ``(N, H, W)``).
        labels_path: Labels file, magic ``0x00000801`` (uint8, 1 dimension ``(N,)``).
        num_classes: Labels must lie in ``[0, num_classes)``; default 10.

    Returns:
        ``(x, y)``: images ``float32`` ``(N, 1, H, W)`` scaled from ``0..255`` to ``[0, 1]``,
        and labels ``int32`` ``(N,)``.

    Raises:
        FileNotFoundError: If either file does not exist.
        ValueError: If a file is malformed (see :func:`read_idx`), has the wrong magic number,
            the counts differ, or a label is out of range; the message names the file.
    """
    images_path, labels_path = os.fspath(images_path), os.fspath(labels_path)
    num_classes = _check_int("num_classes", num_classes, minimum=1)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    for path, arr, want_ndim, what in (
        (images_path, images, 3, "images (N, H, W)"),
        (labels_path, labels, 1, "labels (N,)"),
    ):
        if arr.dtype != np.uint8 or arr.ndim != want_ndim:
            code = next(c for c, dt in _IDX_DTYPES.items() if dt.newbyteorder("=") == arr.dtype)
            raise ValueError(
                f"{path}: IDX magic number 0x0000{code:02x}{arr.ndim:02x} is not the expected "
                f"0x000008{want_ndim:02x} for uint8 {what}"
            )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{labels_path}: has {labels.shape[0]} labels but {images_path} has "
            f"{images.shape[0]} images"
        )
    if labels.size and int(labels.max()) >= num_classes:
        bad = int(np.flatnonzero(labels >= num_classes)[0])
        raise ValueError(
            f"{labels_path}: label {int(labels[bad])} at index {bad} is out of range "
            f"[0, {num_classes})"
        )
    x = images.astype(np.float32)[:, None, :, :]
    x *= np.float32(1.0 / 255.0)
    return x, labels.astype(np.int32)


_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_MNIST_KINDS = ("mnist", "fashion_mnist")


def _find_file(directory: str, name: str) -> str:
    for candidate in (name, name + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"expected {os.path.join(directory, name)} or {os.path.join(directory, name + '.gz')}"
    )


def load_mnist(directory: str | os.PathLike[str], kind: str = "mnist") -> Dataset:
    """Load MNIST or Fashion-MNIST from the four standard IDX files in ``directory``.

    Looks for ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each either raw or with a
    ``.gz`` suffix (the raw file is used when both exist). Both datasets share these names and
    format; ``kind`` only names the result.

    Args:
        directory: Folder holding the files.
        kind: ``"mnist"`` (default) or ``"fashion_mnist"``.

    Returns:
        A :class:`Dataset` with images ``(N, 1, 28, 28)`` float32 in ``[0, 1]``, 10 classes.

    Raises:
        ValueError: If ``kind`` is unknown or a file is malformed (see :func:`load_idx`).
        FileNotFoundError: If a file is missing; the message names the path expected.
    """
    if kind not in _MNIST_KINDS:
        raise ValueError(f"kind must be one of {_MNIST_KINDS}, got {kind!r}")
    directory = os.fspath(directory)
    paths = {key: _find_file(directory, name) for key, name in _MNIST_FILES.items()}
    x_train, y_train = load_idx(paths["x_train"], paths["y_train"])
    x_test, y_test = load_idx(paths["x_test"], paths["y_test"])
    return Dataset(x_train, y_train, x_test, y_test, 10, kind)


# --------------------------------------------------------------------------------------------
# CIFAR-10 binary version.

_CIFAR_SHAPE = (3, 32, 32)
_CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then 1024 red, 1024 green, 1024 blue bytes
_CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_CIFAR_TEST = "test_batch.bin"


def read_cifar10_bin(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 binary batch file.

    Each record is 1 label byte (0..9) followed by 3,072 pixel bytes: the 32x32 red plane, then
    green, then blue, rows in order. A file holds any whole, non-zero number of records (the
    official files hold 10,000).

    Args:
        path: The ``.bin`` file.

    Returns:
        ``(images, labels)``: ``uint8`` ``(N, 3, 32, 32)`` and ``int32`` ``(N,)``.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is empty, its size is not a multiple of 3,073 bytes (truncated),
            or a label is above 9; the message names ``path``.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if len(data) == 0 or len(data) % _CIFAR_RECORD:
        raise ValueError(
            f"{path}: size {len(data)} bytes is not a positive multiple of the "
            f"{_CIFAR_RECORD}-byte CIFAR-10 record (truncated or not a CIFAR-10 binary batch)"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int32)
    if int(labels.max()) > 9:
        bad = int(np.flatnonzero(labels > 9)[0])
        raise ValueError(
            f"{path}: label {int(labels[bad])} of record {bad} is out of range [0, 10)"
        )
    images = records[:, 1:].reshape((-1, *_CIFAR_SHAPE)).copy()
    return images, labels


def write_cifar10_bin(
    path: str | os.PathLike[str], images_uint8: np.ndarray, labels: np.ndarray
) -> None:
    """Write images and labels as a CIFAR-10 binary batch file, atomically.

    Args:
        path: Destination file; its directory must exist.
        images_uint8: ``uint8`` images ``(N, 3, 32, 32)``, N >= 1.
        labels: Integer labels ``(N,)`` in ``[0, 10)``.

    Raises:
        TypeError: If ``images_uint8`` is not uint8 or ``labels`` not integer.
        ValueError: If the shapes are wrong, the counts differ or a label is out of range.
    """
    images = np.asarray(images_uint8)
    labels = np.asarray(labels)
    if images.dtype != np.uint8:
        raise TypeError(f"images_uint8 must have dtype uint8, got {images.dtype}")
    if images.ndim != 4 or images.shape[1:] != _CIFAR_SHAPE or images.shape[0] == 0:
        raise ValueError(f"images_uint8 must have shape (N>=1, 3, 32, 32), got {images.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}")
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"labels must lie in [0, 10), got range [{labels.min()}, {labels.max()}]")
    records = np.empty((images.shape[0], _CIFAR_RECORD), dtype=np.uint8)
    records[:, 0] = labels
    records[:, 1:] = images.reshape(images.shape[0], -1)
    write_bytes_atomic(path, records.tobytes())


def load_cifar10(directory: str | os.PathLike[str], *, strict: bool = True) -> Dataset:
    """Load the CIFAR-10 binary version (``cifar-10-binary.tar.gz``, extracted).

    Reads ``data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin`` from
    ``directory``, or from its ``cifar-10-batches-bin`` subfolder (the tarball's layout). The
    pickled "python version" is deliberately not supported: fconv never unpickles files.

    Args:
        directory: Folder holding the ``.bin`` files.
        strict: If True (default), all five training batches must be present. If False, the
            training batches that exist are used, in numeric order; at least one is required
            (handy for small subsets). ``test_batch.bin`` is always required.

    Returns:
        A :class:`Dataset` named ``"cifar10"`` with images ``(N, 3, 32, 32)`` float32 in
        ``[0, 1]``, 10 classes.

    Raises:
        FileNotFoundError: If a required file is missing; the message names the path expected.
        ValueError: If a file is malformed (see :func:`read_cifar10_bin`).
    """
    directory = os.fspath(directory)
    nested = os.path.join(directory, "cifar-10-batches-bin")
    if not os.path.isfile(os.path.join(directory, _CIFAR_TEST)) and os.path.isdir(nested):
        directory = nested
    train_paths = [os.path.join(directory, name) for name in _CIFAR_TRAIN]
    present = [p for p in train_paths if os.path.isfile(p)]
    missing = [p for p in train_paths if not os.path.isfile(p)]
    if strict and missing:
        raise FileNotFoundError(
            f"expected CIFAR-10 training batch {missing[0]} (pass strict=False to load the "
            f"batches that exist)"
        )
    if not present:
        raise FileNotFoundError(f"expected at least one CIFAR-10 training batch {train_paths[0]}")
    test_path = os.path.join(directory, _CIFAR_TEST)
    if not os.path.isfile(test_path):
        raise FileNotFoundError(f"expected CIFAR-10 test batch {test_path}")

    def to_float(images: np.ndarray) -> np.ndarray:
        x = images.astype(np.float32)
        x *= np.float32(1.0 / 255.0)
        return x

    train = [read_cifar10_bin(p) for p in present]
    x_test, y_test = read_cifar10_bin(test_path)
    x_train = to_float(np.concatenate([t[0] for t in train]))
    y_train = np.concatenate([t[1] for t in train])
    return Dataset(x_train, y_train, to_float(x_test), y_test, 10, "cifar10")


# --------------------------------------------------------------------------------------------
# Synthetic data.


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
        TypeError: If a count or ``seed`` is not an int.
        ValueError: If a count is out of range, ``input_shape`` is not three positive ints or
            ``noise`` is negative.
    """
    num_train = _check_int("num_train", num_train, minimum=1)
    num_test = _check_int("num_test", num_test, minimum=1)
    num_classes = _check_int("num_classes", num_classes, minimum=2)
    seed = _check_int("seed", seed, minimum=0)
    shape = tuple(input_shape)
    if len(shape) != 3 or any(
        isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in shape
    ):
        raise ValueError(f"input_shape must be three positive ints (C, H, W), got {input_shape!r}")
    if not noise >= 0:
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


# --------------------------------------------------------------------------------------------
# Normalisation.


def compute_mean_std(x: np.ndarray, *, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of a batch of images.

    Statistics are accumulated in float64 and returned as float32.

    Args:
        x: Images ``(N, C, H, W)``.
        eps: Lower bound applied to the standard deviation so a constant channel does not
            cause a division by zero in :func:`normalize`; default 1e-6.

    Returns:
        ``(mean, std)``, each float32 of shape ``(C,)``.

    Raises:
        ValueError: If ``x`` is not 4-D or has no elements.
    """
    shape = _check_images("x", x)
    if math.prod(shape) == 0:
        raise ValueError(f"x must not be empty, got shape {shape}")
    x64 = np.asarray(x, dtype=np.float64)
    mean = x64.mean(axis=(0, 2, 3))
    std = np.maximum(x64.std(axis=(0, 2, 3)), eps)
    return mean.astype(np.float32), std.astype(np.float32)


def normalize(x: ArrayLike, mean: ArrayLike | None = None, std: ArrayLike | None = None):
    """Normalise images per channel: ``(x - mean[c]) / std[c]``.

    Works on numpy arrays (returning numpy) and JAX arrays (returning JAX arrays, usable
    inside ``jit`` when ``mean`` and ``std`` are given; the std > 0 check is then skipped).

    Args:
        x: Images ``(N, C, H, W)``.
        mean: Per-channel means ``(C,)``, or None (default) to use ``x``'s own, from
            :func:`compute_mean_std`.
        std: Per-channel standard deviations ``(C,)``, all > 0, or None (default) to use
            ``x``'s own.

    Returns:
        An array shaped like ``x``, float32 when ``x`` is float32.

    Raises:
        ValueError: If ``x`` is not 4-D, ``mean``/``std`` are not ``(C,)``, or a std is <= 0.
    """
    shape = _check_images("x", x)
    if mean is None or std is None:
        m, s = compute_mean_std(np.asarray(x))
        mean = m if mean is None else mean
        std = s if std is None else std
    c = shape[1]
    for name, v in (("mean", mean), ("std", std)):
        if np.shape(v) != (c,):
            raise ValueError(
                f"{name} must have shape ({c},) to match x's channels, got {np.shape(v)}"
            )
    traced = any(isinstance(v, jax.Array) for v in (x, mean, std))
    xp = jnp if traced else np
    mean = xp.asarray(mean, dtype=np.float32).reshape(1, c, 1, 1)
    std = xp.asarray(std, dtype=np.float32).reshape(1, c, 1, 1)
    if not traced and not np.all(std > 0):
        raise ValueError(f"std must be > 0 in every channel, got {std.ravel().tolist()}")
    return (x - mean) / std


# --------------------------------------------------------------------------------------------
# Batching.


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
        TypeError: If ``batch_size``, ``seed`` or ``epoch`` is not an int.
        ValueError: If ``x`` and ``y`` differ in length, ``batch_size`` < 1, ``batch_size`` > N
            with ``drop_last``, or ``seed``/``epoch`` is negative.
    """
    # Validate eagerly (not at the first next()) by doing it before creating the generator.
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


# --------------------------------------------------------------------------------------------
# Augmentation (pure JAX; jit with the integer/bool options static).


def random_crop(key: jax.Array, x: jax.Array, padding: int = 4) -> jax.Array:
    """Zero-pad each image by ``padding`` on every side, then crop back at a random offset.

    Every example gets its own offset ``(dy, dx)``, each uniform in ``[0, 2 * padding]``; the
    result is ``pad(x)[:, :, dy:dy + H, dx:dx + W]``, i.e. the image shifted by
    ``(padding - dy, padding - dx)`` with zeros shifted in. Under ``jit``, ``padding`` must be
    static.

    Args:
        key: A JAX PRNG key.
        x: Images ``(N, C, H, W)``.
        padding: Non-negative number of zero pixels added on each side; default 4. 0 returns
            ``x`` unchanged.

    Returns:
        An array with the shape and dtype of ``x``.

    Raises:
        TypeError: If ``padding`` is not an int.
        ValueError: If ``x`` is not 4-D or ``padding`` is negative.
    """
    n, c, h, w = _check_images("x", x)
    padding = _check_int("padding", padding, minimum=0)
    x = jnp.asarray(x)
    if padding == 0:
        return x
    padded = jnp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * padding + 1, dtype=jnp.int32)
    zero = jnp.zeros((), dtype=jnp.int32)

    def crop_one(img, off):
        return lax.dynamic_slice(img, (zero, off[0], off[1]), (c, h, w))

    return jax.vmap(crop_one)(padded, offsets)


def random_flip(key: jax.Array, x: jax.Array, prob: float = 0.5) -> jax.Array:
    """Flip each image horizontally (along W) with probability ``prob``, independently.

    Args:
        key: A JAX PRNG key.
        x: Images ``(N, C, H, W)``.
        prob: Probability of flipping each example, in ``[0, 1]``; default 0.5.

    Returns:
        An array with the shape and dtype of ``x``.

    Raises:
        ValueError: If ``x`` is not 4-D or ``prob`` is outside ``[0, 1]``.
    """
    n = _check_images("x", x)[0]
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob}")
    x = jnp.asarray(x)
    flip = jax.random.bernoulli(key, prob, (n,))
    return jnp.where(flip[:, None, None, None], x[..., ::-1], x)


def augment(key: jax.Array, x: jax.Array, *, crop_padding: int, flip: bool) -> jax.Array:
    """Standard image augmentation: :func:`random_crop` then (optionally) :func:`random_flip`.

    Both options are required because the right choice depends on the data (horizontal flips
    suit CIFAR-10 but not digits). Under ``jit``, mark ``crop_padding`` and ``flip`` static.

    Args:
        key: A JAX PRNG key; split internally, one subkey per transform.
        x: Images ``(N, C, H, W)``.
        crop_padding: Padding of the random crop; 0 disables cropping.
        flip: Whether to apply random horizontal flips with probability 0.5.

    Returns:
        An array with the shape and dtype of ``x``.

    Raises:
        TypeError: If ``crop_padding`` is not an int.
        ValueError: If ``x`` is not 4-D or ``crop_padding`` is negative.
    """
    crop_key, flip_key = jax.random.split(key)
    x = random_crop(crop_key, x, crop_padding)
    if flip:
        x = random_flip(flip_key, x)
    return x
