"""``Dropout``: ``rate`` is the probability of DROPPING a unit (stax used the keep one)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fconv.layers import base

__all__ = ["Dropout"]


def Dropout(rate: float) -> base.Layer:
    """Inverted dropout: in training, zero each unit with probability ``rate``, scale the rest.

    Survivors are multiplied by ``1 / (1 - rate)`` so the expected activation is unchanged; with
    ``train=False`` (the default) the layer is the identity. Training needs a key:
    ``apply(params, x, rng=jax.random.key(0), train=True)``.

    Args:
      rate: drop probability, ``0 <= rate < 1`` (``rate=0.1`` drops about 10% of the units, as in
        PyTorch and Flax).

    Returns:
      A parameter-free ``Layer``.

    Raises:
      TypeError: ``rate`` is not a number.
      ValueError: ``rate`` outside ``[0, 1)``; ``apply`` with ``train=True`` and no ``rng``.

    >>> Dropout(0.5).init(None, (-1, 120))
    ((-1, 120), {})
    """
    rate = base.check_real(rate, "rate", "Dropout")
    if not 0.0 <= rate < 1.0:
        raise ValueError(
            f"Dropout: `rate` is the probability of dropping a unit and must be in [0, 1), "
            f"got {rate}."
        )

    def init(rng, input_shape):
        return base.check_input_shape(input_shape, "Dropout"), {}

    def fn(params, x, rng, train):
        if not train or rate == 0.0:
            return x
        if rng is None:
            raise ValueError(
                "Dropout needs a random key in training: pass rng=jax.random.key(...) to apply "
                "when train=True, or train=False to run without dropout."
            )
        keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
        return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros((), x.dtype))

    return base.leaf("Dropout", init, fn)
