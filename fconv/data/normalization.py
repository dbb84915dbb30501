"""Per-channel mean/std and normalisation."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from fconv.data.dataset import _check_images, _check_number


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
        TypeError: If ``eps`` is not a number.
        ValueError: If ``x`` is not 4-D or has no elements, or ``eps`` is not > 0.
    """
    shape = _check_images("x", x)
    if math.prod(shape) == 0:
        raise ValueError(f"x must not be empty, got shape {shape}")
    if not _check_number("eps", eps) > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    x64 = np.asarray(x, dtype=np.float64)
    mean = x64.mean(axis=(0, 2, 3))
    std = np.maximum(x64.std(axis=(0, 2, 3)), eps)
    return mean.astype(np.float32), std.astype(np.float32)


def normalize(x: ArrayLike, mean: ArrayLike | None = None, std: ArrayLike | None = None):
    """Normalise images per channel: ``(x - mean[c]) / std[c]``.

    Works on numpy arrays (returning numpy) and JAX arrays (returning JAX arrays, usable
    inside ``jit`` when ``mean`` and ``std`` are given; the std > 0 check is skipped only for
    a traced ``std``).

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
    on_jax = any(isinstance(v, jax.Array) for v in (x, mean, std))
    xp = jnp if on_jax else np
    if not isinstance(std, jax.core.Tracer) and not np.all(np.asarray(std) > 0):
        raise ValueError(f"std must be > 0 in every channel, got {np.ravel(std).tolist()}")
    mean = xp.asarray(mean, dtype=np.float32).reshape(1, c, 1, 1)
    std = xp.asarray(std, dtype=np.float32).reshape(1, c, 1, 1)
    return (x - mean) / std
