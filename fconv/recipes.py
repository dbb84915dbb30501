"""Named configurations turned into objects: models, optimizers, datasets and augmentations.

The command line (:mod:`fconv.cli`) picks each part of a run by name, :func:`fconv.train.fit`
records those names (and settings) in its checkpoint config, and :func:`fconv.runs.load_run`
rebuilds the model from them. The registries and their builders:

* :data:`MODELS`, :func:`build_model` -- the networks of :mod:`fconv.models`.
* :data:`OPTIMIZERS`, :func:`make_optimizer` -- an :mod:`fconv.optim` optimizer, with a constant
  or cosine learning-rate schedule.
* :data:`DATASETS`, :data:`FILE_DATASETS`, :func:`load_dataset` -- the loaders of
  :mod:`fconv.data`.
* :data:`AUGMENTATIONS`, :func:`make_augment` -- the :func:`fconv.data.augment` options that suit
  each dataset.

Every public name here is also re-exported from :mod:`fconv.train` (``fconv.train.build_model``
and so on).

Example:
    >>> model = build_model("lenet5", 10, (1, 8, 8))
    >>> opt = make_optimizer("adam", 1e-3, schedule="cosine", total_steps=100, warmup_steps=10)
    >>> crop_padding, flip = AUGMENTATIONS["digits"]
    >>> augment = make_augment(crop_padding, flip)
"""

from __future__ import annotations

import functools
import numbers
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax

from fconv import data, models, optim
from fconv.optim._checks import _scalar

__all__ = [
    "MODELS",
    "build_model",
    "OPTIMIZERS",
    "make_optimizer",
    "DATASETS",
    "FILE_DATASETS",
    "load_dataset",
    "AUGMENTATIONS",
    "make_augment",
]

#: Model constructors by name, each called as ``MODELS[name](num_classes, input_shape, **kwargs)``.
MODELS: dict[str, Callable[..., Any]] = {
    "lenet5": models.lenet5,
    "vgg_small": models.vgg_small,
    "resnet_small": models.resnet_small,
    "all_conv_net": models.all_conv_net,
    "resnext_small": models.resnext_small,
}


def build_model(name: str, num_classes: int, input_shape: Sequence[int], **kwargs: Any) -> Any:
    """``MODELS[name](num_classes, input_shape, **kwargs)``.

    Raises:
        ValueError: If ``name`` is unknown.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name](num_classes, tuple(int(d) for d in input_shape), **kwargs)


#: Optimizer names :func:`make_optimizer` knows.
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad")
_SCHEDULES = ("constant", "cosine")


def make_optimizer(
    name: str,
    learning_rate: float,
    *,
    schedule: str = "constant",
    total_steps: int | None = None,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
) -> optim.Optimizer:
    """An optimizer from :mod:`fconv.optim` by name (the settings :func:`fconv.train.fit` records).

    Args:
        name: One of :data:`OPTIMIZERS`: ``"sgd"``, ``"momentum"``/``"nesterov"`` (beta 0.9),
            ``"adam"``, ``"adamw"``, ``"rmsprop"``, ``"adagrad"``.
        learning_rate: Peak learning rate, > 0.
        schedule: ``"constant"`` (default) or ``"cosine"`` (linear warm-up over
            ``warmup_steps``, then half-cosine decay to 0 at ``total_steps``).
        total_steps: Length of the cosine schedule; required for ``"cosine"``.
        warmup_steps: Warm-up steps of the cosine schedule; default 0.
        weight_decay: AdamW's decoupled decay coefficient; only ``"adamw"`` uses it (the other
            optimizers get L2 decay from :func:`fconv.train.make_train_step`'s
            ``weight_decay``). Default 0.

    Raises:
        TypeError: If ``learning_rate`` is not a number.
        ValueError: For an unknown name or schedule, a missing ``total_steps``, or out-of-range
            values.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {list(OPTIMIZERS)}")
    if schedule not in _SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {list(_SCHEDULES)}")
    learning_rate = _scalar(learning_rate)  # a concrete 0-d array is a number too
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real):
        raise TypeError(f"learning_rate must be a number, got {learning_rate!r}")
    if not learning_rate > 0:  # also for the cosine schedule, whose peak it is
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    lr: float | optim.Schedule = learning_rate
    if schedule == "cosine":
        if total_steps is None:
            raise ValueError("schedule 'cosine' needs total_steps")
        lr = optim.cosine_decay_with_warmup(learning_rate, warmup_steps, total_steps)
    if name == "adamw":
        return optim.adamw(lr, weight_decay=weight_decay)
    return {
        "sgd": optim.sgd,
        "momentum": optim.momentum,
        "nesterov": optim.nesterov,
        "adam": optim.adam,
        "rmsprop": optim.rmsprop,
        "adagrad": optim.adagrad,
    }[name](lr)


#: Dataset names :func:`load_dataset` knows; ``mnist``, ``fashion-mnist`` and ``cifar10`` read
#: files from a directory, the others need none.
DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "synthetic")
#: The datasets of :data:`DATASETS` that :func:`load_dataset` reads from ``data_dir``.
FILE_DATASETS = ("mnist", "fashion-mnist", "cifar10")


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None, *, seed: int = 0):
    """A :class:`fconv.data.Dataset` by name.

    Args:
        name: ``"digits"`` (scikit-learn's 8x8 digits, split with ``seed``), ``"mnist"`` and
            ``"fashion-mnist"`` (the four IDX files in ``data_dir``), ``"cifar10"`` (the binary
            batches in ``data_dir``), ``"synthetic"`` (512 + 128 noisy 1x28x28 prototypes of 10
            classes, from ``seed``).
        data_dir: Folder with the files, for the datasets read from files.
        seed: Seed of the digits split and of the synthetic data; default 0.

    Raises:
        ValueError: Unknown name, or ``data_dir`` missing for a file dataset.
        FileNotFoundError: ``data_dir`` or a file in it does not exist.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {list(DATASETS)}")
    if name == "digits":
        return data.load_digits(seed)
    if name == "synthetic":
        return data.synthetic(seed=seed)
    if data_dir is None:
        raise ValueError(f"dataset {name!r} is read from files: give data_dir, their folder")
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data directory {os.fspath(data_dir)} does not exist")
    if name == "cifar10":
        return data.load_cifar10(data_dir)
    return data.load_mnist(data_dir, "mnist" if name == "mnist" else "fashion_mnist")


#: Augmentation for each dataset name: ``(crop_padding, flip)`` for :func:`make_augment`.
#: Small shifts everywhere (1 pixel on 8x8 digits); horizontal flips only where a mirrored
#: image is still of the same class.
AUGMENTATIONS = {
    "digits": (1, False),
    "mnist": (2, False),
    "fashion-mnist": (2, True),
    "cifar10": (4, True),
    "synthetic": (2, False),
}


def make_augment(crop_padding: int, flip: bool) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``augment(key, x)``: :func:`fconv.data.augment` with the options bound.

    The result is an ``augment`` for :func:`fconv.train.fit` and :func:`fconv.train.make_train_step`
    (an :data:`fconv.train.Augment`).
    """
    return functools.partial(data.augment, crop_padding=crop_padding, flip=flip)
