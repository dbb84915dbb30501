"""Pure functions on arrays: convolution and pooling with hand-written backward rules.

Every op takes ``vjp="custom"`` (default: the hand-written ``jax.custom_vjp`` rule) or
``vjp="autodiff"`` (the plain-``lax`` reference twin, differentiated by JAX).
"""

from fconv.ops._canon import DTypeError
from fconv.ops.conv import conv, conv_input_grad, conv_transpose, conv_weight_grad
from fconv.ops.pooling import avg_pool, max_pool

__all__ = [
    "DTypeError",
    "avg_pool",
    "conv",
    "conv_input_grad",
    "conv_transpose",
    "conv_weight_grad",
    "max_pool",
]
