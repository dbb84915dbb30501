"""Hand-written VJPs against JAX autodiff on one model: gradient error and step time.

    python examples/compare_vjps.py

Builds LeNet-5 twice -- on fconv's custom_vjp ops and on their plain-lax autodiff twins (same
parameter tree) -- and compares the gradients of the loss on one batch of digits, then times a
jitted gradient step of each.
"""

import time

import jax
import numpy as np

from fconv import data, losses, models

ds = data.load_digits()
x, y = ds.x_train[:128], ds.y_train[:128]
custom = models.lenet5(10, ds.input_shape)  # vjp="custom" is the default
autodiff = models.lenet5(10, ds.input_shape, vjp="autodiff")
_, params = custom.init(jax.random.key(0))


def grad_fn(model):
    loss = lambda p: losses.softmax_cross_entropy(model.apply(p, x), y)  # noqa: E731
    return jax.jit(jax.grad(loss))


g_custom, g_auto = grad_fn(custom), grad_fn(autodiff)
errors = jax.tree.map(
    lambda a, b: float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)),
    g_custom(params),
    g_auto(params),
)
print(f"max relative gradient error, custom vs autodiff: {max(jax.tree.leaves(errors)):.2e}")


def seconds_per_step(fn, repeats=200):
    jax.block_until_ready(fn(params))  # compile outside the timing
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(params)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / repeats


t_custom, t_auto = seconds_per_step(g_custom), seconds_per_step(g_auto)
print(
    f"gradient step: custom {t_custom * 1e3:.3f} ms, autodiff {t_auto * 1e3:.3f} ms, "
    f"ratio {t_custom / t_auto:.2f}"
)
