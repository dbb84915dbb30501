"""MNIST / Fashion-MNIST IDX files (raw or gzip): read, write, load."""

from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

from fconv.atomic_io import write_bytes_atomic
from fconv.data.dataset import Dataset, _check_int

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
        A :class:`Dataset` with images ``(N, 1, H, W)`` float32 in ``[0, 1]`` (28 x 28 for the
        standard files), 10 classes.

    Raises:
        ValueError: If ``kind`` is unknown, a file is malformed (see :func:`load_idx`), or the
            train and test images differ in size.
        FileNotFoundError: If a file is missing; the message names the path expected.
    """
    if kind not in _MNIST_KINDS:
        raise ValueError(f"kind must be one of {_MNIST_KINDS}, got {kind!r}")
    directory = os.fspath(directory)
    paths = {key: _find_file(directory, name) for key, name in _MNIST_FILES.items()}
    x_train, y_train = load_idx(paths["x_train"], paths["y_train"])
    x_test, y_test = load_idx(paths["x_test"], paths["y_test"])
    if x_test.shape[1:] != x_train.shape[1:]:
        raise ValueError(
            f"{paths['x_test']} holds images of shape {x_test.shape[1:]}, but "
            f"{paths['x_train']} holds {x_train.shape[1:]}: the train and test images must match"
        )
    return Dataset(x_train, y_train, x_test, y_test, 10, kind)
