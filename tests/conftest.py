"""Shared test set-up: float64 available, rank promotion made an error so shape bugs surface."""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
