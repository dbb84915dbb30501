"""Pure, batched, jit-compatible augmentation: random crop and horizontal flip."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from fconv.data.dataset import _check_images, _check_int, _check_number


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
        prob: Probability of flipping each example, in ``[0, 1]``; default 0.5. Under
            ``jit``, ``prob`` must be static.

    Returns:
        An array with the shape and dtype of ``x``.

    Raises:
        TypeError: If ``prob`` is not a number (e.g. a traced value).
        ValueError: If ``x`` is not 4-D or ``prob`` is outside ``[0, 1]``.
    """
    n = _check_images("x", x)[0]
    if not 0.0 <= _check_number("prob", prob) <= 1.0:
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
