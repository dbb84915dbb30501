"""Combinators: build networks out of layers, stax-style, threading rng and state.

Composite params and states are tuples with one entry per child. ``rng`` is split among the
children (``None`` stays ``None``); ``state`` is passed per child and the new states are
collected in the same tuple structure.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from fconv.layers import base

__all__ = ["FanInConcat", "FanInSum", "FanOut", "Identity", "parallel", "residual", "serial"]


def _call(layer: base.Layer, params, x, rng, train, state):
    """Applies one child; returns ``(y, new_state)`` with ``new_state`` None when stateless."""
    if state is None:
        return layer.apply(params, x, rng=rng, train=train), None
    return layer.apply(params, x, rng=rng, train=train, state=state)


def serial(*layers: base.Layer) -> base.Layer:
    """Composes layers in sequence: ``serial(f, g)(x) = g(f(x))``.

    >>> import jax
    >>> from fconv.layers import Conv, Relu, Flatten, Dense
    >>> net = serial(Conv(4, 3), Relu(), Flatten(), Dense(10))
    >>> out_shape, params = net.init(jax.random.key(0), (-1, 1, 8, 8))
    >>> out_shape, [sorted(p) for p in params]
    ((-1, 10), [['b', 'w'], [], [], ['b', 'w']])
    """
    layers = base.check_layers(layers, "serial")

    def init(rng, input_shape):
        params = []
        for layer, key in zip(layers, base.split_rng(rng, len(layers))):
            input_shape, p = layer.init(key, input_shape)
            params.append(p)
        return input_shape, tuple(params)

    def init_state(input_shape):
        states = []
        for layer in layers:
            states.append(layer.init_state(input_shape))
            input_shape = base.output_shape(layer, input_shape)
        return tuple(states)

    def apply(params, x, *, rng=None, train=False, state=None):
        new = []
        for i, (layer, key) in enumerate(zip(layers, base.split_rng(rng, len(layers)))):
            x, s = _call(layer, params[i], x, key, train, None if state is None else state[i])
            new.append(s)
        return x if state is None else (x, tuple(new))

    return base.Layer(init, apply, init_state, meta={"kind": "serial"}, children=layers)


def _check_branches(input_shape: Any, n: int | None, where: str) -> tuple:
    if not isinstance(input_shape, (tuple, list)) or not all(
        isinstance(s, (tuple, list)) for s in input_shape
    ):
        raise TypeError(
            f"{where}: input must be a tuple of branch shapes (e.g. after FanOut(n)), got "
            f"{input_shape!r}."
        )
    if n is not None and len(input_shape) != n:
        raise ValueError(f"{where}: expected {n} input branches, got {len(input_shape)}.")
    return tuple(tuple(s) for s in input_shape)


def parallel(*layers: base.Layer) -> base.Layer:
    """Applies ``layers[i]`` to element ``i`` of a tuple input; returns the tuple of outputs.

    >>> import jax
    >>> net = parallel(Identity(), Identity())
    >>> net.init(jax.random.key(0), ((-1, 3), (-1, 4)))[0]
    ((-1, 3), (-1, 4))
    """
    layers = base.check_layers(layers, "parallel")
    n = len(layers)

    def init(rng, input_shape):
        shapes = _check_branches(input_shape, n, "parallel")
        outs = [lyr.init(k, s) for lyr, k, s in zip(layers, base.split_rng(rng, n), shapes)]
        return tuple(o[0] for o in outs), tuple(o[1] for o in outs)

    def init_state(input_shape):
        shapes = _check_branches(input_shape, n, "parallel")
        return tuple(lyr.init_state(s) for lyr, s in zip(layers, shapes))

    def apply(params, x, *, rng=None, train=False, state=None):
        if not isinstance(x, (tuple, list)) or len(x) != n:
            got = f"{len(x)} branches" if isinstance(x, (tuple, list)) else type(x).__name__
            raise ValueError(f"parallel: expected a tuple of {n} input branches, got {got}.")
        states = (None,) * n if state is None else state
        outs = [
            _call(lyr, p, xi, k, train, s)
            for lyr, p, xi, k, s in zip(layers, params, x, base.split_rng(rng, n), states)
        ]
        ys = tuple(o[0] for o in outs)
        return ys if state is None else (ys, tuple(o[1] for o in outs))

    return base.Layer(init, apply, init_state, meta={"kind": "parallel"}, children=layers)


def FanOut(n: int) -> base.Layer:
    """Copies the input into an ``n``-tuple (to feed ``parallel``).

    >>> FanOut(2).init(None, (-1, 8))
    (((-1, 8), (-1, 8)), {})
    """
    n = base.check_int(n, "n", "FanOut")
    return base.leaf(
        "FanOut", lambda rng, shape: ((tuple(shape),) * n, {}), lambda p, x, r, t: (x,) * n
    )


def _fan_in_sum(where: str, hint: str = "") -> base.Layer:
    def init(rng, input_shape):
        shapes = _check_branches(input_shape, None, where)
        if len(set(shapes)) != 1:
            raise ValueError(f"{where}: branch output shapes must be equal, got {shapes}.{hint}")
        return shapes[0], {}

    def fn(params, xs, rng, train):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out

    return base.leaf("FanInSum", init, fn)


def FanInSum() -> base.Layer:
    """Sums a tuple of equally shaped inputs.

    >>> FanInSum().init(None, ((-1, 8), (-1, 8)))
    ((-1, 8), {})
    """
    return _fan_in_sum("FanInSum")


def FanInConcat(axis: int = 1) -> base.Layer:
    """Concatenates a tuple of inputs along ``axis`` (default 1, the channel axis).

    >>> FanInConcat().init(None, ((-1, 3, 8, 8), (-1, 5, 8, 8)))
    ((-1, 8, 8, 8), {})
    """
    axis = base.check_axis(axis, "FanInConcat")

    def init(rng, input_shape):
        shapes = _check_branches(input_shape, None, "FanInConcat")
        rank = len(shapes[0])
        if not -rank <= axis < rank or any(len(s) != rank for s in shapes):
            raise ValueError(
                f"FanInConcat: inputs must have equal ranks with `axis` (={axis}) in range, got "
                f"{shapes}."
            )
        ax = axis % rank
        rest = {s[:ax] + s[ax + 1 :] for s in shapes}
        if len(rest) != 1:
            raise ValueError(
                f"FanInConcat: input shapes must agree except along axis {axis}, got {shapes}."
            )
        sizes = [s[ax] for s in shapes]
        size = -1 if -1 in sizes else sum(sizes)
        return shapes[0][:ax] + (size,) + shapes[0][ax + 1 :], {}

    return base.leaf("FanInConcat", init, lambda p, xs, r, t: jnp.concatenate(xs, axis=axis))


def Identity() -> base.Layer:
    """Returns its input unchanged (the default ``residual`` shortcut).

    >>> Identity().init(None, (-1, 8))
    ((-1, 8), {})
    """
    return base.leaf("Identity", lambda rng, shape: (shape, {}), lambda p, x, r, t: x)


def residual(block: base.Layer, shortcut: base.Layer | None = None) -> base.Layer:
    """``block(x) + shortcut(x)``: ``serial(FanOut(2), parallel(block, shortcut), FanInSum())``.

    Args:
      block: the residual branch.
      shortcut: the skip branch. Default ``Identity()``; pass a projection (e.g. a strided 1x1
        ``Conv``) when ``block`` changes the shape.

    Raises:
      ValueError: at init, when the two branches' output shapes differ.

    >>> import jax
    >>> from fconv.layers import Conv
    >>> residual(Conv(4, 3, padding="SAME")).init(jax.random.key(0), (-1, 4, 8, 8))[0]
    (-1, 4, 8, 8)
    """
    block, shortcut = base.check_layers(
        (block, Identity() if shortcut is None else shortcut), "residual"
    )
    hint = (
        " The block and the shortcut of a residual must give the same shape: use a projection "
        "shortcut (e.g. serial(Conv(C, 1, stride=s), BatchNorm())) when the block changes it."
    )
    net = serial(FanOut(2), parallel(block, shortcut), _fan_in_sum("residual", hint))
    return dataclasses.replace(net, meta={"kind": "residual"}, children=(block, shortcut))
