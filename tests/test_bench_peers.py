"""benchmarks.peers: every available peer library trains lenet5 (the loss goes down)."""

import math

import pytest

from benchmarks import peers

# (peer, the modules it needs)
_NEEDS = {
    "flax": ("jax", "optax", "flax"),
    "equinox": ("jax", "optax", "equinox"),
    "haiku": ("jax", "optax", "haiku"),
    "torch": ("torch",),
    "torch_channels_last": ("torch",),
}


@pytest.mark.parametrize("peer", peers.PEERS)
def test_lenet5_step_trains(peer):
    for module in _NEEDS[peer]:
        pytest.importorskip(module)
    assert peer in peers.available_peers()
    steps = peers.peer_train_steps("lenet5", 4, (1, 28, 28), peers=[peer])
    assert list(steps) == [peer]
    step = steps[peer]
    losses = [float(step()) for _ in range(3)]
    assert all(math.isfinite(v) for v in losses), losses
    # the first loss is near log(10) at init; SGD on one fixed batch must lower it
    assert 1.0 < losses[0] < 5.0, losses
    assert losses[2] < losses[1] < losses[0], losses


def test_bad_arguments():
    with pytest.raises(ValueError, match="model"):
        peers.peer_train_steps("alexnet", 4, (1, 28, 28))
    with pytest.raises(ValueError, match="input_shape"):
        peers.peer_train_steps("lenet5", 4, (28, 28))
    with pytest.raises(ValueError, match="H, W >= 4"):
        peers.peer_train_steps("vgg_small", 4, (3, 2, 2))
    with pytest.raises(ValueError, match="unavailable"):
        peers.peer_train_steps("lenet5", 4, (1, 28, 28), peers=["mxnet"])
