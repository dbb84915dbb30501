"""Layers: constructors returning ``(init, apply)`` pairs, stax-style, with params as dicts.

The contract, stated once:

* Every public name is a **constructor** (CamelCase, even argument-free ones: ``Relu()``,
  ``Flatten()``; the combinators ``serial``, ``parallel``, ``residual`` are lower case as in
  stax). Required structure is positional, all configuration keyword-only. A constructor checks
  its arguments (``ValueError`` for bad values, ``TypeError`` for wrong types) and returns a
  ``Layer``: a frozen dataclass of three pure functions, ``init``, ``apply`` and
  ``init_state``, that also unpacks as ``init, apply = Conv(8, 3)``.
* ``init(rng, input_shape) -> (output_shape, params)``. ``input_shape`` includes the batch
  axis, e.g. ``(N, C, H, W)``; ``N`` may be -1 for "any batch size". ``params`` is a pytree of
  arrays: a dict with short stable names (``{"w": ..., "b": ...}``) for a leaf layer, ``{}``
  for a parameter-free one, a tuple with one entry per child for a combinator. Parameters are
  float32 unless ``param_dtype`` says otherwise. Shapes are traced from the layer's own apply
  (``jax.eval_shape``), so ``init``'s ``output_shape`` is exactly what ``apply`` returns.
* ``init_state(input_shape) -> state``: ``()`` for a stateless layer, ``{"mean": (C,),
  "var": (C,)}`` running statistics for ``BatchNorm``, a tuple per child for a combinator.
* ``apply(params, x, *, rng=None, train=False, state=None)`` returns ``y`` when ``state`` is
  None and ``(y, new_state)`` when a state is given. ``rng`` (a ``jax.random.key``) is needed
  only by ``Dropout`` with ``train=True``; combinators split it among their children.
  ``BatchNorm`` with ``train=True`` uses batch statistics (and returns updated running
  statistics when given a state); with ``train=False`` it needs the state.
* Arrays are channels-first, ``(N, C, *spatial)`` with OIHW kernels, unless a layer takes
  ``layout="channels_last"``.
* Every ``apply`` is a thin call of a public op or ``jax.nn`` function inside
  ``jax.named_scope("fconv.<Name>")``.
* **One switch for the backward rules.** Conv and pooling layers use the hand-written
  ``custom_vjp`` rules of ``fconv.ops`` by default. Their ``vjp`` keyword (also on every model in
  ``fconv.models``), or the context manager ``default_vjp("autodiff")``, builds the same layers
  on the ops' autodiff twins instead; both are read at construction time. Build a model twice
  and compare gradients::

      custom, reference = lenet5(), lenet5(vjp="autodiff")

Example::

    >>> import jax, jax.numpy as jnp
    >>> init, apply = serial(Conv(6, 5, padding="SAME"), Relu(), MaxPool(2), Flatten(), Dense(10))
    >>> out_shape, params = init(jax.random.key(0), (-1, 1, 28, 28))
    >>> out_shape
    (-1, 10)
    >>> apply(params, jnp.zeros((2, 1, 28, 28))).shape
    (2, 10)
"""

from fconv.layers.activations import (
    Elu,
    Gelu,
    LeakyRelu,
    LogSoftmax,
    Relu,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
)
from fconv.layers.base import Layer, default_vjp, output_shape
from fconv.layers.combinators import (
    FanInConcat,
    FanInSum,
    FanOut,
    Identity,
    parallel,
    residual,
    serial,
)
from fconv.layers.conv import (
    Conv,
    Conv1D,
    Conv2D,
    Conv3D,
    ConvTranspose,
    ConvTranspose1D,
    ConvTranspose2D,
    ConvTranspose3D,
)
from fconv.layers.dense import Dense, Flatten, Reshape
from fconv.layers.dropout import Dropout
from fconv.layers.normalization import BatchNorm, GroupNorm, LayerNorm
from fconv.layers.pooling import AvgPool, GlobalAvgPool, GlobalMaxPool, MaxPool

__all__ = [
    "AvgPool",
    "BatchNorm",
    "Conv",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "ConvTranspose",
    "ConvTranspose1D",
    "ConvTranspose2D",
    "ConvTranspose3D",
    "Dense",
    "Dropout",
    "Elu",
    "FanInConcat",
    "FanInSum",
    "FanOut",
    "Flatten",
    "Gelu",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "GroupNorm",
    "Identity",
    "Layer",
    "LayerNorm",
    "LeakyRelu",
    "LogSoftmax",
    "MaxPool",
    "Relu",
    "Reshape",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
    "default_vjp",
    "output_shape",
    "parallel",
    "residual",
    "serial",
]

# Issue 8: layers for unshared / tiled / serialised convolution and the wider pooling family.
from fconv.layers.local import Im2colConv, LocallyConnected, TiledConv  # noqa: E402
from fconv.layers.pooling_family import (  # noqa: E402
    AdaptiveAvgPool,
    AdaptiveMaxPool,
    LpPool,
    Maxout,
    RoiMaxPool,
    SpatialPyramidPool,
)

__all__ += [
    "AdaptiveAvgPool",
    "AdaptiveMaxPool",
    "Im2colConv",
    "LocallyConnected",
    "LpPool",
    "Maxout",
    "RoiMaxPool",
    "SpatialPyramidPool",
    "TiledConv",
]
