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

from fconv.data.augment import augment, random_crop, random_flip
from fconv.data.batching import batches, num_batches
from fconv.data.cifar import load_cifar10, read_cifar10_bin, write_cifar10_bin
from fconv.data.dataset import Dataset
from fconv.data.digits import load_digits
from fconv.data.idx import load_idx, load_mnist, read_idx, write_idx
from fconv.data.normalization import compute_mean_std, normalize
from fconv.data.synthetic import synthetic

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
