"""fconv: functional convolutional networks for JAX with hand-written backward rules."""
