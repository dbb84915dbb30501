"""fconv: functional convolutional networks for JAX with hand-written backward rules.

Subpackages: ``fconv.ops`` (arrays in, arrays out, custom VJPs), ``fconv.layers`` (init/apply
pairs), ``fconv.models``, ``fconv.init``, ``fconv.losses``, ``fconv.optim``, ``fconv.data``,
``fconv.checkpoint``, ``fconv.testing``.
"""

__version__ = "0.1.0"
