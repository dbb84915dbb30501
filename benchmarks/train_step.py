"""Whole training steps: fconv custom VJPs vs fconv autodiff twins vs peer libraries."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.timing import compile_stats, timed_ms
from fconv import losses, models, optim
from fconv.layers import default_vjp

MODELS = {
    # name: (constructor, batch, input shape (C, H, W))
    "lenet5": (models.lenet5, 128, (1, 28, 28)),
    "vgg_small": (models.vgg_small, 64, (3, 32, 32)),
    "resnet_small": (models.resnet_small, 64, (3, 32, 32)),
}


def fconv_step(name: str, vjp: str, batch: int | None = None):
    """(jitted step, args) for one SGD-momentum training step of an fconv model."""
    ctor, default_batch, shape = MODELS[name]
    batch = batch or default_batch
    with default_vjp(vjp):
        model = ctor(num_classes=10, input_shape=shape)
    in_shape = (batch, *shape)
    _, params = model.init(jax.random.key(0), in_shape)
    state = model.init_state(in_shape)
    opt = optim.momentum(0.01, beta=0.9)
    opt_state = opt.init(params)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(in_shape), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, batch), jnp.int32)

    def loss_fn(params, state, x, y):
        logits, new_state = model.apply(params, x, train=True, state=state)
        return losses.softmax_cross_entropy(logits, y), new_state

    def step(params, opt_state, state, x, y):
        (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optim.apply_updates(params, updates), opt_state, new_state, loss

    return jax.jit(step, donate_argnums=(0, 1, 2)), (params, opt_state, state, x, y)


def _donating_once(step, args):
    """A no-argument callable running one donating step, threading its outputs back in."""
    holder = list(args)

    def once():
        p, o, s, loss = step(*holder)
        holder[0], holder[1], holder[2] = p, o, s
        return loss

    return once


def run(
    quick: bool = False, iters: int = 20, peers: bool = True, only: set[str] | None = None
) -> list[dict[str, Any]]:
    """ms per step for fconv custom/autodiff and every installed peer (or those in ``only``)."""
    rows = []
    names = ["lenet5", "vgg_small"] if quick else list(MODELS)
    for name in names:
        row: dict[str, Any] = dict(model=name, batch=MODELS[name][1])
        contenders = {}
        built = {vjp: fconv_step(name, vjp) for vjp in ("custom", "autodiff")}
        for step, args in built.values():
            # Untimed first compiles fill the GPU's convolution autotuning cache, which
            # clear_caches keeps: otherwise whichever compiles first pays all the autotuning.
            step.lower(*args).compile()
        for vjp, (step, args) in built.items():
            jax.clear_caches()  # so the compile is timed, not fetched from the cache
            seconds, temp = compile_stats(step, *args)
            row[f"fconv_{vjp}_compile_s"] = seconds
            row[f"fconv_{vjp}_temp_bytes"] = temp
            contenders[f"fconv_{vjp}"] = _donating_once(step, args)
        if peers:
            try:
                from benchmarks.peers import peer_train_steps
            except ImportError:
                peer_train_steps = None
            if peer_train_steps is not None:
                _, batch, shape = MODELS[name]
                for peer, fn in peer_train_steps(name, batch, shape).items():
                    if only is None or peer in only:
                        contenders[peer] = fn
        # Round-robin: every contender runs once per round, so drift on a shared machine hits
        # all of them alike. PyTorch goes in a group of its own: its OpenMP threads spin-wait
        # after each step and would slow whichever JAX step ran right after them.
        torch_group = {k: f for k, f in contenders.items() if k.startswith("torch")}
        jax_group = {k: f for k, f in contenders.items() if k not in torch_group}
        for group in (jax_group, torch_group):
            row.update(timed_ms(group, iters=iters))
        jax_peers = [row[k] for k in ("flax_ms", "equinox_ms", "haiku_ms") if k in row]
        row["speedup_vs_autodiff"] = row["fconv_autodiff_ms"] / row["fconv_custom_ms"]
        if row["fconv_custom_temp_bytes"] and row["fconv_autodiff_temp_bytes"]:
            row["temp_memory_ratio"] = (
                row["fconv_custom_temp_bytes"] / row["fconv_autodiff_temp_bytes"]
            )
        if jax_peers:
            row["speedup_vs_fastest_jax_peer"] = min(jax_peers) / row["fconv_custom_ms"]
        torch_ms = [row[k] for k in ("torch_ms", "torch_channels_last_ms") if k in row]
        if torch_ms:
            row["ratio_to_fastest_torch"] = row["fconv_custom_ms"] / min(torch_ms)
        rows.append(row)
    return rows
