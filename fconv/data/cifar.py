"""CIFAR-10 binary batches (``*.bin``; never the pickled version): read, write, load."""

from __future__ import annotations

import os

import numpy as np

from fconv.atomic_io import write_bytes_atomic
from fconv.data.dataset import Dataset

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
