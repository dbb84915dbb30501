"""Peer baselines: one full training step of fconv's models written in other libraries.

``peer_train_steps(model, batch, input_shape)`` returns ``{peer: step}`` where each ``step()``
runs one training step (forward, mean softmax cross-entropy, backward, SGD with momentum 0.9 and
learning rate 0.01), keeps the updated parameters / optimizer state / BatchNorm running statistics
in its closure and returns the step's loss (computed before the update): a 0-d JAX array for the
JAX peers, which dispatch asynchronously like any jitted call (``jax.block_until_ready`` it to
wait for the step), and a Python ``float`` for torch, whose CPU steps are synchronous.

Peers (each present only when its libraries import, so this module imports with none of them):

* ``"flax"``: ``flax.linen`` (NHWC data, the layout Flax convs take natively).
* ``"equinox"``: ``equinox.nn`` per-example CHW modules ``vmap``-ed over the batch (NCHW data);
  BatchNorm is ``eqx.nn.BatchNorm(mode="batch")`` with ``axis_name="batch"``.
* ``"haiku"``: ``hk.transform_with_state`` (NHWC data).
* ``"torch"``: ``torch.nn`` + ``torch.optim.SGD`` (NCHW data, default thread count).
* ``"torch_channels_last"``: the same torch model and input converted to
  ``memory_format=torch.channels_last``.

The JAX peers are ``jax.jit``-compiled with the parameters, optimizer state and BatchNorm state
donated, and use ``optax.sgd(0.01, momentum=0.9)``; torch steps are synchronous on CPU. All three
models are covered by every peer: ``lenet5``, ``vgg_small`` and ``resnet_small`` (default
configuration: widths ``(16, 32, 64)``, one basic block per stage, BatchNorm in training mode
with its running statistics updated, momentum 0.9 in Flax's convention = PyTorch's 0.1, eps 1e-5,
strided 1x1 conv + BN projection shortcuts), layer for layer as in ``fconv.models``. Weight
initializers are each library's defaults (they do not affect the step's cost). Every peer sees the
same fixed float32 batch (NumPy-generated from ``seed``; transposed to NHWC for Flax/Haiku) and
the same integer labels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

try:
    import jax
    import jax.numpy as jnp
    import optax
except ImportError:  # pragma: no cover - depends on the environment
    jax = jnp = optax = None
try:
    import flax.linen as fnn
except ImportError:  # pragma: no cover
    fnn = None
try:
    import equinox as eqx
except ImportError:  # pragma: no cover
    eqx = None
try:
    import haiku as hk
except ImportError:  # pragma: no cover
    hk = None
try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

__all__ = ["MODELS", "PEERS", "available_peers", "peer_train_steps"]

MODELS = ("lenet5", "vgg_small", "resnet_small")
PEERS = ("flax", "equinox", "haiku", "torch", "torch_channels_last")
RESNET_WIDTHS = (16, 32, 64)  # fconv.models.resnet_small defaults
RESNET_BLOCKS = 1
LR, MOMENTUM, BN_MOMENTUM, BN_EPS = 0.01, 0.9, 0.9, 1e-5


def available_peers() -> list[str]:
    """The peers whose libraries import here, in ``PEERS`` order."""
    have_jax = jax is not None
    ok = {
        "flax": have_jax and fnn is not None,
        "equinox": have_jax and eqx is not None,
        "haiku": have_jax and hk is not None,
        "torch": torch is not None,
        "torch_channels_last": torch is not None,
    }
    return [p for p in PEERS if ok[p]]


def _strides(i: int, b: int) -> int:
    """Stride of block ``b`` of stage ``i``: 2 for the first block of every later stage."""
    return 2 if i > 0 and b == 0 else 1


def _flat_features(model: str, h: int, w: int) -> int:
    """Features after the conv stack's ``Flatten`` (lenet5: SAME pools, vgg_small: VALID)."""
    if model == "lenet5":
        return 16 * math.ceil(math.ceil(h / 2) / 2) * math.ceil(math.ceil(w / 2) / 2)
    return 64 * (h // 2 // 2) * (w // 2 // 2)


# ----------------------------------------------------------------------------------------- JAX


def _jax_step(loss_fn: Callable, params: Any, state: Any, x: Any, y: Any) -> Callable[[], Any]:
    """A jitted SGD-momentum step of ``loss_fn(params, state, x, y) -> (loss, new_state)``."""
    opt = optax.sgd(LR, momentum=MOMENTUM)

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
    def update(params, state, opt_state, x, y):
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state, loss

    carry = [params, state, jax.jit(opt.init)(params)]
    x, y = jnp.asarray(x), jnp.asarray(y)

    def step() -> Any:
        params, state, opt_state, loss = update(*carry, x, y)
        carry[:] = [params, state, opt_state]
        return loss

    return step


def _xent(logits: Any, y: Any) -> Any:
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _flax_step(model: str, x: np.ndarray, y: np.ndarray, num_classes: int, seed: int):
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # NHWC

    class Net(fnn.Module):
        @fnn.compact
        def __call__(self, x):
            relu = fnn.relu

            def conv(x, c, k, s=1, bias=True):
                return fnn.Conv(c, (k, k), strides=s, padding="SAME", use_bias=bias)(x)

            def bn(x):
                return fnn.BatchNorm(use_running_average=False, momentum=BN_MOMENTUM,
                                     epsilon=BN_EPS)(x)  # fmt: skip

            if model == "lenet5":
                for c in (6, 16):
                    x = fnn.max_pool(relu(conv(x, c, 5)), (2, 2), (2, 2), padding="SAME")
                x = x.reshape(x.shape[0], -1)
                x = relu(fnn.Dense(84)(relu(fnn.Dense(120)(x))))
            elif model == "vgg_small":
                for c in (32, 64):
                    x = fnn.max_pool(relu(conv(relu(conv(x, c, 3)), c, 3)), (2, 2), (2, 2))
                x = relu(fnn.Dense(256)(x.reshape(x.shape[0], -1)))
            else:
                x = relu(bn(conv(x, RESNET_WIDTHS[0], 3, bias=False)))
                for i, c in enumerate(RESNET_WIDTHS):
                    for b in range(RESNET_BLOCKS):
                        s = _strides(i, b)
                        h = bn(conv(relu(bn(conv(x, c, 3, s, False))), c, 3, bias=False))
                        proj = s != 1 or x.shape[-1] != c
                        x = relu(h + (bn(conv(x, c, 1, s, False)) if proj else x))
                x = x.mean(axis=(1, 2))
            return fnn.Dense(num_classes)(x)

    net = Net()
    variables = jax.jit(net.init)(jax.random.key(seed), x)  # jitted: eager init is slow
    params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}

    def loss_fn(params, state, x, y):
        logits, new_state = net.apply({"params": params, **state}, x, mutable=list(state))
        return _xent(logits, y), dict(new_state)

    return _jax_step(loss_fn, params, state, x, y)


def _haiku_step(model: str, x: np.ndarray, y: np.ndarray, num_classes: int, seed: int):
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # NHWC

    def forward(x):
        relu, win = jax.nn.relu, (1, 2, 2, 1)

        def conv(x, c, k, s=1, bias=True):
            return hk.Conv2D(c, k, stride=s, padding="SAME", with_bias=bias)(x)

        def bn(x):
            return hk.BatchNorm(True, True, BN_MOMENTUM, eps=BN_EPS)(x, is_training=True)

        if model == "lenet5":
            for c in (6, 16):
                x = hk.max_pool(relu(conv(x, c, 5)), win, win, "SAME")
            x = relu(hk.Linear(84)(relu(hk.Linear(120)(hk.Flatten()(x)))))
        elif model == "vgg_small":
            for c in (32, 64):
                x = hk.max_pool(relu(conv(relu(conv(x, c, 3)), c, 3)), win, win, "VALID")
            x = relu(hk.Linear(256)(hk.Flatten()(x)))
        else:
            x = relu(bn(conv(x, RESNET_WIDTHS[0], 3, bias=False)))
            for i, c in enumerate(RESNET_WIDTHS):
                for b in range(RESNET_BLOCKS):
                    s = _strides(i, b)
                    h = bn(conv(relu(bn(conv(x, c, 3, s, False))), c, 3, bias=False))
                    proj = s != 1 or x.shape[-1] != c
                    x = relu(h + (bn(conv(x, c, 1, s, False)) if proj else x))
            x = x.mean(axis=(1, 2))
        return hk.Linear(num_classes)(x)

    net = hk.without_apply_rng(hk.transform_with_state(forward))
    params, state = jax.jit(net.init)(jax.random.key(seed), x)

    def loss_fn(params, state, x, y):
        logits, state = net.apply(params, state, x)
        return _xent(logits, y), state

    return _jax_step(loss_fn, params, state, x, y)


def _equinox_step(model: str, x: np.ndarray, y: np.ndarray, num_classes: int, seed: int):
    c_in, h_in, w_in = x.shape[1:]
    keys = None  # an iterator of PRNG keys, set inside the jitted build
    f32 = jnp.float32  # not the x64-mode default float64
    relu = eqx.nn.Lambda(jax.nn.relu)

    def conv(i, o, k, s=1, bias=True):
        return eqx.nn.Conv2d(i, o, k, s, "SAME", use_bias=bias, dtype=f32, key=next(keys))

    def conv_bn(i, o, k, s=1):
        bn = eqx.nn.BatchNorm(o, "batch", BN_EPS, momentum=BN_MOMENTUM, dtype=f32, mode="batch")
        return eqx.nn.Sequential([conv(i, o, k, s, False), bn])

    class Block(eqx.nn.StatefulLayer):
        branch: eqx.nn.Sequential
        proj: eqx.nn.Sequential | None

        def __call__(self, x, state, *, key=None):
            h, state = self.branch(x, state)
            sc, state = self.proj(x, state) if self.proj is not None else (x, state)
            return jax.nn.relu(h + sc), state

    def build(key):
        nonlocal keys
        keys = iter(jax.random.split(key, 64))
        if model == "lenet5":
            pool = eqx.nn.MaxPool2d(2, 2, use_ceil=True)  # == SAME: pads only the high side
            layers = [conv(c_in, 6, 5), relu, pool, conv(6, 16, 5), relu, pool]
            head = [(_flat_features(model, h_in, w_in), 120), (120, 84), (84, num_classes)]
        elif model == "vgg_small":
            pool = eqx.nn.MaxPool2d(2, 2)
            layers = [conv(c_in, 32, 3), relu, conv(32, 32, 3), relu, pool,
                      conv(32, 64, 3), relu, conv(64, 64, 3), relu, pool]  # fmt: skip
            head = [(_flat_features(model, h_in, w_in), 256), (256, num_classes)]
        else:
            layers, c = [conv_bn(c_in, RESNET_WIDTHS[0], 3), relu], RESNET_WIDTHS[0]
            for i, w in enumerate(RESNET_WIDTHS):
                for b in range(RESNET_BLOCKS):
                    s = _strides(i, b)
                    branch = eqx.nn.Sequential([conv_bn(c, w, 3, s), relu, conv_bn(w, w, 3)])
                    proj = conv_bn(c, w, 1, s) if s != 1 or c != w else None
                    layers.append(Block(branch, proj))
                    c = w
            layers.append(eqx.nn.Lambda(lambda x: jnp.mean(x, axis=(1, 2))))
            head = [(c, num_classes)]
        layers.append(eqx.nn.Lambda(jnp.ravel))
        for j, (fi, fo) in enumerate(head):
            layers += [eqx.nn.Linear(fi, fo, dtype=f32, key=next(keys))] + (
                [relu] if j < len(head) - 1 else []
            )
        return eqx.nn.Sequential(layers)

    net, state = eqx.filter_jit(eqx.nn.make_with_state(build))(jax.random.key(seed))
    params, static = eqx.partition(net, eqx.is_inexact_array)

    def loss_fn(params, state, x, y):
        net = eqx.combine(params, static)
        batched = jax.vmap(net, axis_name="batch", in_axes=(0, None), out_axes=(0, None))
        logits, state = batched(x, state)
        return _xent(logits, y), state

    return _jax_step(loss_fn, params, state, x, y)


# --------------------------------------------------------------------------------------- torch


def _torch_model(model: str, c_in: int, h_in: int, w_in: int, num_classes: int):
    nn = torch.nn

    def conv_bn(i, o, k, s=1):
        bn = nn.BatchNorm2d(o, eps=BN_EPS, momentum=1.0 - BN_MOMENTUM)
        return nn.Sequential(nn.Conv2d(i, o, k, s, padding=k // 2, bias=False), bn)

    class Block(nn.Module):
        def __init__(self, c, w, s):
            super().__init__()
            self.branch = nn.Sequential(conv_bn(c, w, 3, s), nn.ReLU(), conv_bn(w, w, 3))
            self.proj = conv_bn(c, w, 1, s) if s != 1 or c != w else nn.Identity()

        def forward(self, x):
            return torch.relu(self.branch(x) + self.proj(x))

    if model == "lenet5":
        pool = functools.partial(nn.MaxPool2d, 2, ceil_mode=True)  # == SAME
        return nn.Sequential(
            nn.Conv2d(c_in, 6, 5, padding=2), nn.ReLU(), pool(),
            nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(), pool(),
            nn.Flatten(),
            nn.Linear(_flat_features(model, h_in, w_in), 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )  # fmt: skip
    if model == "vgg_small":
        return nn.Sequential(
            nn.Conv2d(c_in, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(_flat_features(model, h_in, w_in), 256), nn.ReLU(),
            nn.Linear(256, num_classes),
        )  # fmt: skip
    layers, c = [conv_bn(c_in, RESNET_WIDTHS[0], 3), nn.ReLU()], RESNET_WIDTHS[0]
    for i, w in enumerate(RESNET_WIDTHS):
        for b in range(RESNET_BLOCKS):
            layers.append(Block(c, w, _strides(i, b)))
            c = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


def _torch_step(model, x, y, num_classes, seed, channels_last: bool) -> Callable[[], float]:
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the global RNG
        torch.manual_seed(seed)
        net = _torch_model(model, *x.shape[1:], num_classes).train()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        xt = xt.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = torch.nn.functional.cross_entropy

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xt), yt)
        loss.backward()
        opt.step()
        return loss.item()

    return step


# ----------------------------------------------------------------------------------------- API

_BUILDERS: dict[str, Callable[..., Callable[[], Any]]] = {
    "flax": _flax_step,
    "equinox": _equinox_step,
    "haiku": _haiku_step,
    "torch": functools.partial(_torch_step, channels_last=False),
    "torch_channels_last": functools.partial(_torch_step, channels_last=True),
}


def peer_train_steps(
    model: str,
    batch: int,
    input_shape: tuple[int, int, int],
    num_classes: int = 10,
    seed: int = 0,
    *,
    peers: Sequence[str] | None = None,
) -> dict[str, Callable[[], Any]]:
    """One training-step callable per available peer library for ``model``.

    Args:
      model: ``"lenet5"``, ``"vgg_small"`` or ``"resnet_small"``.
      batch: batch size N >= 1.
      input_shape: ``(C, H, W)`` without the batch axis (as for ``fconv.models``).
      num_classes: output logits. Default 10.
      seed: seeds the fixed random batch, the labels and every peer's initialization.
      peers: build only these (each must be available). Default: ``available_peers()``.

    Returns:
      ``{peer: step}``; ``step()`` runs one full SGD-momentum training step in place and
      returns the loss before the update (a 0-d JAX array, not waited for, from the JAX peers;
      a float from torch). JAX peers compile on their first call.

    Raises:
      ValueError: an unknown model or peer, an unavailable peer, or bad sizes.
    """
    if model not in MODELS:
        raise ValueError(f"peer_train_steps: `model` must be one of {MODELS}, got {model!r}.")
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, (int, np.integer)) and d >= 1 for d in shape):
        raise ValueError(f"peer_train_steps: `input_shape` must be (C, H, W), got {input_shape}.")
    if model == "vgg_small" and min(shape[1:]) < 4:
        raise ValueError(f"peer_train_steps: vgg_small needs H, W >= 4, got {input_shape}.")
    if batch < 1 or num_classes < 1:
        raise ValueError(f"peer_train_steps: bad batch {batch} or num_classes {num_classes}.")
    have = available_peers()
    names = have if peers is None else list(peers)
    missing = [p for p in names if p not in have]
    if missing:
        raise ValueError(f"peer_train_steps: peers {missing} unavailable (have {have}).")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *shape), dtype=np.float32)
    y = rng.integers(0, num_classes, size=batch).astype(np.int32)
    return {p: _BUILDERS[p](model, x, y, num_classes, seed) for p in names}
