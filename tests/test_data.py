"""Tests for fconv.data: file formats, loaders, batching, augmentation, synthetic data."""

import gzip
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fconv import data

# ---------------------------------------------------------------------------------------------
# Helpers building small files.


def _mnist_like(n=7, h=5, w=4, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def _write_pair(tmp_path, images, labels, gz=False):
    suffix = ".gz" if gz else ""
    ip = tmp_path / f"img{suffix}"
    lp = tmp_path / f"lab{suffix}"
    data.write_idx(ip, images)
    data.write_idx(lp, labels)
    return ip, lp


def _cifar_like(n=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(n,)).astype(np.int32)
    return images, labels


# ---------------------------------------------------------------------------------------------
# IDX.


@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip_raw_and_gzip(tmp_path, gz):
    images, labels = _mnist_like()
    ip, lp = _write_pair(tmp_path, images, labels, gz=gz)
    assert (ip.read_bytes()[:2] == b"\x1f\x8b") == gz
    x, y = data.load_idx(ip, lp)
    assert x.dtype == np.float32 and x.shape == (7, 1, 5, 4)
    assert y.dtype == np.int32 and y.shape == (7,)
    np.testing.assert_allclose(x[:, 0] * 255.0, images, atol=1e-4)
    np.testing.assert_array_equal(y, labels)


def test_idx_header_is_the_documented_layout(tmp_path):
    images, _ = _mnist_like(n=2, h=3, w=4)
    data.write_idx(tmp_path / "f", images)
    raw = (tmp_path / "f").read_bytes()
    assert raw[:4] == bytes([0, 0, 8, 3])
    assert raw[4:16] == (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + (4).to_bytes(4, "big")
    assert raw[16:] == images.tobytes()


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_roundtrips_every_idx_dtype(tmp_path, dtype):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data.write_idx(tmp_path / "a.gz", arr)
    out = data.read_idx(tmp_path / "a.gz")
    assert out.dtype == arr.dtype
    np.testing.assert_array_equal(out, arr)


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(TypeError, match="array dtype must be one of"):
        data.write_idx(tmp_path / "a", np.zeros(3, dtype=np.int64))


def test_load_idx_corrupt_magic_names_file(tmp_path):
    images, labels = _mnist_like()
    ip, lp = _write_pair(tmp_path, images, labels)
    raw = bytearray(ip.read_bytes())
    raw[0] = 0x12
    ip.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=rf"{ip.name}.*bad IDX magic number 0x12000803"):
        data.load_idx(ip, lp)


def test_load_idx_wrong_kind_magic_names_file(tmp_path):
    images, labels = _mnist_like()
    # Swapped arguments: the labels file has magic 0x00000801, not the images' 0x00000803.
    ip, lp = _write_pair(tmp_path, images, labels)
    with pytest.raises(ValueError, match=rf"{lp.name}.*0x00000801 is not the expected 0x00000803"):
        data.load_idx(lp, ip)


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_truncated_payload_names_file(tmp_path, gz):
    images, labels = _mnist_like()
    ip, lp = _write_pair(tmp_path, images, labels)
    raw = ip.read_bytes()[:-3]
    target = tmp_path / ("short.gz" if gz else "short")
    target.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(ValueError, match=rf"{target.name}: IDX payload truncated.*need 140 bytes"):
        data.load_idx(target, lp)


def test_load_idx_trailing_bytes_rejected(tmp_path):
    images, labels = _mnist_like()
    ip, lp = _write_pair(tmp_path, images, labels)
    ip.write_bytes(ip.read_bytes() + b"\0")
    with pytest.raises(ValueError, match=rf"{ip.name}: IDX payload has trailing bytes"):
        data.load_idx(ip, lp)


def test_load_idx_truncated_header_names_file(tmp_path):
    p = tmp_path / "hdr"
    p.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(ValueError, match=rf"{p.name}: IDX header truncated"):
        data.read_idx(p)


def test_load_idx_truncated_gzip_stream_names_file(tmp_path):
    images, labels = _mnist_like()
    ip, lp = _write_pair(tmp_path, images, labels, gz=True)
    ip.write_bytes(ip.read_bytes()[:-10])
    with pytest.raises(ValueError, match=rf"{ip.name}: corrupt or truncated gzip"):
        data.load_idx(ip, lp)


def test_load_idx_label_out_of_range_names_file(tmp_path):
    images, labels = _mnist_like()
    labels[4] = 10
    ip, lp = _write_pair(tmp_path, images, labels)
    with pytest.raises(ValueError, match=rf"{lp.name}: label 10 at index 4 is out of range"):
        data.load_idx(ip, lp)


def test_load_idx_count_mismatch_names_files(tmp_path):
    images, labels = _mnist_like()
    ip, lp = _write_pair(tmp_path, images, labels[:5])
    with pytest.raises(ValueError, match=rf"{lp.name}: has 5 labels but .*{ip.name} has 7"):
        data.load_idx(ip, lp)


def _write_mnist_dir(directory, gz):
    suffix = ".gz" if gz else ""
    tr_x, tr_y = _mnist_like(n=12, h=28, w=28, seed=1)
    te_x, te_y = _mnist_like(n=4, h=28, w=28, seed=2)
    data.write_idx(directory / f"train-images-idx3-ubyte{suffix}", tr_x)
    data.write_idx(directory / f"train-labels-idx1-ubyte{suffix}", tr_y)
    data.write_idx(directory / f"t10k-images-idx3-ubyte{suffix}", te_x)
    data.write_idx(directory / f"t10k-labels-idx1-ubyte{suffix}", te_y)
    return tr_x, tr_y


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_finds_standard_names(tmp_path, gz):
    tr_x, tr_y = _write_mnist_dir(tmp_path, gz)
    ds = data.load_mnist(tmp_path, kind="fashion_mnist")
    assert ds.name == "fashion_mnist" and ds.num_classes == 10
    assert ds.input_shape == (1, 28, 28)
    assert (ds.num_train, ds.num_test) == (12, 4)
    np.testing.assert_array_equal(ds.y_train, tr_y)
    np.testing.assert_allclose(ds.x_train[:, 0] * 255, tr_x, atol=1e-4)


def test_load_mnist_missing_file_names_expected_path(tmp_path):
    _write_mnist_dir(tmp_path, gz=False)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    expected = str(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError, match=f"expected {expected} or"):
        data.load_mnist(tmp_path)


def test_load_mnist_rejects_test_images_of_another_size(tmp_path):
    _write_mnist_dir(tmp_path, gz=False)
    small, _ = _mnist_like(n=4, h=14, w=14, seed=3)
    data.write_idx(tmp_path / "t10k-images-idx3-ubyte", small)
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte holds images of shape \(1, 14"):
        data.load_mnist(tmp_path)


def test_load_mnist_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="kind must be one of"):
        data.load_mnist(tmp_path, kind="emnist")


# ---------------------------------------------------------------------------------------------
# CIFAR-10 binary.


def test_cifar10_bin_roundtrip_record_layout(tmp_path):
    images, labels = _cifar_like(n=2)
    data.write_cifar10_bin(tmp_path / "b.bin", images, labels)
    raw = (tmp_path / "b.bin").read_bytes()
    assert len(raw) == 2 * 3073
    assert raw[0] == labels[0] and raw[3073] == labels[1]
    assert raw[1:1025] == images[0, 0].tobytes()  # red plane first
    x, y = data.read_cifar10_bin(tmp_path / "b.bin")
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)


def _write_cifar_dir(directory, batches=(1, 2, 3, 4, 5)):
    for i in batches:
        data.write_cifar10_bin(directory / f"data_batch_{i}.bin", *_cifar_like(n=2, seed=i))
    data.write_cifar10_bin(directory / "test_batch.bin", *_cifar_like(n=3, seed=9))


def test_load_cifar10_all_batches(tmp_path):
    _write_cifar_dir(tmp_path)
    ds = data.load_cifar10(tmp_path)
    assert ds.x_train.shape == (10, 3, 32, 32) and ds.x_train.dtype == np.float32
    assert ds.x_test.shape == (3, 3, 32, 32) and ds.y_test.dtype == np.int32
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    first, _ = _cifar_like(n=2, seed=1)
    np.testing.assert_allclose(ds.x_train[:2] * 255, first, atol=1e-4)  # batch 1 comes first
    assert ds.name == "cifar10" and ds.input_shape == (3, 32, 32)


def test_load_cifar10_accepts_tarball_subfolder(tmp_path):
    sub = tmp_path / "cifar-10-batches-bin"
    sub.mkdir()
    _write_cifar_dir(sub)
    assert data.load_cifar10(tmp_path).num_train == 10


def test_load_cifar10_strict_requires_all_batches(tmp_path):
    _write_cifar_dir(tmp_path, batches=(1, 3))
    with pytest.raises(FileNotFoundError, match="data_batch_2.bin"):
        data.load_cifar10(tmp_path)
    assert data.load_cifar10(tmp_path, strict=False).num_train == 4


def test_load_cifar10_missing_test_batch(tmp_path):
    _write_cifar_dir(tmp_path)
    os.remove(tmp_path / "test_batch.bin")
    with pytest.raises(FileNotFoundError, match="test_batch.bin"):
        data.load_cifar10(tmp_path)


def test_cifar10_truncated_names_file(tmp_path):
    _write_cifar_dir(tmp_path)
    p = tmp_path / "data_batch_4.bin"
    p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"data_batch_4\.bin: size 6145 bytes is not a positive"):
        data.load_cifar10(tmp_path)


def test_cifar10_label_out_of_range_names_file(tmp_path):
    _write_cifar_dir(tmp_path)
    p = tmp_path / "test_batch.bin"
    raw = bytearray(p.read_bytes())
    raw[3073] = 11
    p.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"test_batch\.bin: label 11 of record 1 is out of range"):
        data.load_cifar10(tmp_path)


def test_write_cifar10_bin_validates(tmp_path):
    images, labels = _cifar_like(n=2)
    with pytest.raises(TypeError, match="images_uint8 must have dtype uint8"):
        data.write_cifar10_bin(tmp_path / "b", images.astype(np.float32), labels)
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        data.write_cifar10_bin(tmp_path / "b", images, labels[:1])
    with pytest.raises(ValueError, match="labels must lie in"):
        data.write_cifar10_bin(tmp_path / "b", images, labels + 10)
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------------------------------------
# Digits.


def test_load_digits_sizes_range_and_determinism():
    ds = data.load_digits(seed=3)
    assert ds.num_train + ds.num_test == 1797
    assert ds.num_test == round(1797 * 0.2)
    assert ds.x_train.shape[1:] == (1, 8, 8) and ds.x_train.dtype == np.float32
    assert ds.y_train.dtype == np.int32
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    again = data.load_digits(seed=3)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    np.testing.assert_array_equal(ds.y_test, again.y_test)
    other = data.load_digits(seed=4)
    assert not np.array_equal(ds.y_train, other.y_train)


def test_load_digits_split_is_stratified_and_disjoint():
    ds = data.load_digits(seed=0, test_fraction=0.25)
    assert ds.num_test == round(1797 * 0.25)
    counts = np.bincount(ds.y_test, minlength=10)
    total = np.bincount(np.concatenate([ds.y_train, ds.y_test]), minlength=10)
    assert np.all(np.abs(counts - total * 0.25) <= 1)
    # No image appears in both splits (digits has no exact duplicates across these sets).
    train_rows = {r.tobytes() for r in ds.x_train}
    assert sum(r.tobytes() in train_rows for r in ds.x_test) == 0


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
def test_load_digits_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction must be strictly between 0 and 1"):
        data.load_digits(test_fraction=fraction)


# ---------------------------------------------------------------------------------------------
# Synthetic.


def test_synthetic_is_learnable_by_nearest_class_mean():
    ds = data.synthetic(num_train=300, num_test=100, input_shape=(1, 12, 12), seed=1)
    assert ds.x_train.shape == (300, 1, 12, 12) and ds.x_train.dtype == np.float32
    assert ds.y_train.dtype == np.int32 and set(np.unique(ds.y_train)) == set(range(10))
    flat_tr = ds.x_train.reshape(300, -1)
    means = np.stack([flat_tr[ds.y_train == c].mean(0) for c in range(10)])
    d = ((ds.x_test.reshape(100, 1, -1) - means[None]) ** 2).sum(-1)
    accuracy = (d.argmin(1) == ds.y_test).mean()
    assert accuracy > 0.9


def test_synthetic_is_deterministic_and_validates():
    a = data.synthetic(num_train=20, num_test=10, input_shape=(3, 4, 4), num_classes=4, seed=7)
    b = data.synthetic(num_train=20, num_test=10, input_shape=(3, 4, 4), num_classes=4, seed=7)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    with pytest.raises(ValueError, match=r"input_shape must be three positive ints"):
        data.synthetic(input_shape=(28, 28))
    with pytest.raises(ValueError, match="num_classes must be >= 2, got 1"):
        data.synthetic(num_classes=1)
    with pytest.raises(TypeError, match=r"input_shape must be a sequence \(C, H, W\), got 28"):
        data.synthetic(input_shape=28)
    with pytest.raises(TypeError, match="noise must be a number"):
        data.synthetic(noise="a")


# ---------------------------------------------------------------------------------------------
# Normalisation.


def test_number_arguments_accept_concrete_0d_arrays():
    x = jnp.ones((2, 1, 4, 4))
    assert data.random_flip(jax.random.PRNGKey(0), x, jnp.float32(0.5)).shape == x.shape
    assert data.random_flip(jax.random.PRNGKey(0), x, np.array(0.5)).shape == x.shape
    ds = data.synthetic(8, 4, np.array([1, 4, 4]), 2, noise=np.array(0.1))
    assert ds.input_shape == (1, 4, 4)
    _, std = data.compute_mean_std(np.ones((2, 1, 2, 2)), eps=jnp.float32(1e-6))
    np.testing.assert_allclose(std, 1e-6)


def test_normalize_per_channel():
    rng = np.random.default_rng(0)
    scale = np.array([2.0, 3.0, 0.5]).reshape(1, 3, 1, 1)
    shift = np.array([1.0, -2.0, 5.0]).reshape(1, 3, 1, 1)
    x = (rng.standard_normal((50, 3, 4, 4)) * scale + shift).astype(np.float32)
    mean, std = data.compute_mean_std(x)
    assert mean.shape == (3,) and mean.dtype == np.float32
    z = data.normalize(x, mean, std)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1.0, atol=1e-5)
    np.testing.assert_allclose(data.normalize(x), z, atol=1e-6)
    zj = jax.jit(data.normalize)(jnp.asarray(x), mean, std)
    np.testing.assert_allclose(np.asarray(zj), z, atol=1e-5)


def test_normalize_validates():
    x = np.zeros((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"mean must have shape \(3,\)"):
        data.normalize(x, np.zeros(2), np.ones(3))
    with pytest.raises(ValueError, match="std must be > 0 in every channel"):
        data.normalize(x, np.zeros(3), np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, H, W\)"):
        data.normalize(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="std must be > 0 in every channel"):
        data.normalize(x, np.zeros(3), jnp.zeros(3))  # a concrete JAX std is checked too
    with pytest.raises(ValueError, match="eps must be > 0, got -1"):
        data.compute_mean_std(x, eps=-1)
    # A constant channel gets std eps, not a division by zero.
    assert np.all(np.isfinite(data.normalize(x)))


# ---------------------------------------------------------------------------------------------
# Batching.


def test_batches_cover_each_example_once_and_are_deterministic():
    x = np.arange(23, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    y = np.arange(23, dtype=np.int32)
    got = list(data.batches(x, y, 5, seed=1, epoch=0, drop_last=False))
    assert [len(b[1]) for b in got] == [5, 5, 5, 5, 3]
    ys = np.concatenate([b[1] for b in got])
    assert sorted(ys.tolist()) == list(range(23))
    for xb, yb in got:
        np.testing.assert_array_equal(xb[:, 0], yb)  # x and y stay paired
    again = np.concatenate([b[1] for b in data.batches(x, y, 5, seed=1, epoch=0, drop_last=False)])
    np.testing.assert_array_equal(ys, again)
    next_epoch = np.concatenate([b[1] for b in data.batches(x, y, 5, seed=1, epoch=1)])
    assert not np.array_equal(ys[:20], next_epoch)


def test_batches_drop_last_and_no_shuffle():
    x = np.arange(10)
    got = list(data.batches(x, x, 4, shuffle=False))
    assert len(got) == data.num_batches(10, 4) == 2
    np.testing.assert_array_equal(got[1][0], [4, 5, 6, 7])
    assert data.num_batches(10, 4, drop_last=False) == 3


def test_batches_validates_eagerly():
    x = np.zeros((4, 1))
    with pytest.raises(ValueError, match=r"batch_size \(5\) must be <= the number of examples"):
        data.batches(x, np.zeros(4), 5)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        data.batches(x, np.zeros(4), 0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        data.batches(x, np.zeros(4), 2.0)
    with pytest.raises(ValueError, match="x and y must have the same number of rows"):
        data.batches(x, np.zeros(3), 2)
    with pytest.raises(TypeError, match=r"x must be an array .* got a list"):
        data.batches(list(x), np.zeros(4), 2)
    assert len(list(data.batches(x, np.zeros(4), 5, drop_last=False))) == 1


# ---------------------------------------------------------------------------------------------
# Augmentation.


def test_random_flip_flips_some_and_not_others():
    x = jnp.arange(16 * 2 * 3 * 5, dtype=jnp.float32).reshape(16, 2, 3, 5)
    out = np.asarray(jax.jit(data.random_flip)(jax.random.PRNGKey(0), x))
    assert out.shape == x.shape and out.dtype == np.float32
    xs = np.asarray(x)
    flipped = [np.array_equal(out[i], xs[i, :, :, ::-1]) for i in range(16)]
    kept = [np.array_equal(out[i], xs[i]) for i in range(16)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert any(flipped) and any(kept)


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    p = 2
    x = jnp.arange(8 * 1 * 4 * 5, dtype=jnp.float32).reshape(8, 1, 4, 5) + 1.0
    crop = jax.jit(data.random_crop, static_argnames="padding")
    out = np.asarray(crop(jax.random.PRNGKey(1), x, padding=p))
    assert out.shape == x.shape and out.dtype == np.float32
    padded = np.pad(np.asarray(x), ((0, 0), (0, 0), (p, p), (p, p)))
    offsets = []
    for i in range(8):
        matches = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if np.array_equal(out[i], padded[i, :, dy : dy + 4, dx : dx + 5])
        ]
        assert len(matches) == 1, f"example {i} is not a window of the padded image"
        offsets.append(matches[0])
    assert len(set(offsets)) > 1  # per-example offsets
    np.testing.assert_array_equal(data.random_crop(jax.random.PRNGKey(1), x, padding=0), x)


def test_augment_composes_and_validates():
    x = jnp.ones((4, 3, 8, 8), jnp.float32)
    aug = jax.jit(data.augment, static_argnames=("crop_padding", "flip"))
    out = aug(jax.random.PRNGKey(0), x, crop_padding=4, flip=True)
    assert out.shape == x.shape and out.dtype == jnp.float32
    with pytest.raises(ValueError, match="padding must be >= 0, got -1"):
        data.random_crop(jax.random.PRNGKey(0), x, padding=-1)
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, H, W\)"):
        data.random_flip(jax.random.PRNGKey(0), jnp.ones((3, 8, 8)))
    with pytest.raises(TypeError, match="prob must be a number .*static under jit"):
        jax.jit(data.random_flip)(jax.random.PRNGKey(0), x, 0.5)
