"""Pure functions on arrays: convolution, pooling and batch norm with hand-written backward rules.

Every op takes ``vjp="custom"`` (default: the hand-written ``jax.custom_vjp`` rule) or
``vjp="autodiff"`` (the plain-``lax`` reference twin, differentiated by JAX).
"""

from fconv.ops._canon import DTypeError
from fconv.ops.batch_norm import batch_norm
from fconv.ops.conv import conv, conv_input_grad, conv_transpose, conv_weight_grad
from fconv.ops.pooling import avg_pool, max_pool

__all__ = [
    "DTypeError",
    "avg_pool",
    "batch_norm",
    "conv",
    "conv_input_grad",
    "conv_transpose",
    "conv_weight_grad",
    "max_pool",
]

# Issue 8: unshared / tiled / serialised convolution and the wider pooling family.
from fconv.ops.local_conv import conv_im2col, locally_connected, tiled_conv  # noqa: E402
from fconv.ops.pooling_family import (  # noqa: E402
    adaptive_avg_pool,
    adaptive_max_pool,
    global_avg_pool,
    global_max_pool,
    lp_pool,
    maxout,
    roi_max_pool,
    spatial_pyramid_pool,
)

__all__ += [
    "adaptive_avg_pool",
    "adaptive_max_pool",
    "conv_im2col",
    "global_avg_pool",
    "global_max_pool",
    "locally_connected",
    "lp_pool",
    "maxout",
    "roi_max_pool",
    "spatial_pyramid_pool",
    "tiled_conv",
]
