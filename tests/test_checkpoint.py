"""Tests for fconv.checkpoint and fconv.atomic_io."""

import json
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fconv import atomic_io, checkpoint


class AdamState(NamedTuple):
    count: jax.Array
    mu: dict
    nu: dict


def _params():
    return {
        "conv1": {"w": jnp.arange(24, dtype=jnp.float32).reshape(2, 3, 2, 2), "b": jnp.ones(2)},
        "dense": [jnp.full((3, 4), 0.5, jnp.bfloat16), jnp.zeros((4,), jnp.float32)],
    }


def _opt_state(params):
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return (AdamState(jnp.asarray(7, jnp.int32), zeros, zeros), ())


def _assert_trees_equal(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_roundtrip_with_like_namedtuple_opt_state_and_bfloat16(tmp_path):
    params = _params()
    opt = _opt_state(params)
    model_state = {"bn": {"mean": jnp.ones(3), "var": jnp.full(3, 2.0)}}
    path = checkpoint.save(
        tmp_path,
        params=params,
        opt_state=opt,
        model_state=model_state,
        step=12,
        config={"lr": 0.1, "layers": [1, 2]},
    )
    assert os.path.basename(path) == "ckpt_00000012.npz"
    assert (tmp_path / "ckpt_00000012.json").exists()
    ck = checkpoint.restore(
        tmp_path, like={"params": params, "opt_state": opt, "model_state": model_state}
    )
    assert ck.step == 12 and ck.config == {"lr": 0.1, "layers": [1, 2]}
    _assert_trees_equal(ck.params, params)
    _assert_trees_equal(ck.opt_state, opt)
    _assert_trees_equal(ck.model_state, model_state)
    assert isinstance(ck.opt_state[0], AdamState)
    assert ck.params["dense"][0].dtype == jnp.bfloat16


def test_roundtrip_without_like_rebuilds_dicts_lists_tuples(tmp_path):
    params = _params()
    model_state = {"ema": (jnp.ones(2), None, [jnp.zeros(1)]), "by_id": {3: jnp.asarray(1.5)}}
    checkpoint.save(tmp_path, params=params, model_state=model_state, step=0)
    ck = checkpoint.restore(tmp_path)
    _assert_trees_equal(ck.params, params)
    _assert_trees_equal(ck.model_state, model_state)
    assert isinstance(ck.params["dense"], list) and isinstance(ck.model_state["ema"], tuple)
    assert list(ck.model_state["by_id"]) == [3]  # int keys stay ints
    assert ck.opt_state is None and ck.config is None


def test_metadata_records_structure_shapes_dtypes_and_checksum(tmp_path):
    params = _params()
    checkpoint.save(tmp_path, params=params, step=5)
    meta = json.loads((tmp_path / "ckpt_00000005.json").read_text())
    assert meta["step"] == 5
    assert meta["trees"]["params"]["structure"] == str(jax.tree_util.tree_structure(params))
    leaves = {leaf["key"]: leaf for leaf in meta["trees"]["params"]["leaves"]}
    assert leaves["params['dense'][0]"] == {
        "key": "params['dense'][0]",
        "shape": [3, 4],
        "dtype": "bfloat16",
        "stored_dtype": "uint16",
    }
    assert leaves["params['conv1']['w']"]["dtype"] == "float32"
    assert len(meta["sha256"]) == 64
    with np.load(tmp_path / "ckpt_00000005.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(leaves)


def test_namedtuple_without_like_raises_clearly(tmp_path):
    params = _params()
    checkpoint.save(tmp_path, params=params, opt_state=_opt_state(params), step=1)
    with pytest.raises(ValueError, match=r"opt_state contains a pytree node of type AdamState"):
        checkpoint.restore(tmp_path)
    # Templates can be given per tree; params alone rebuild from the skeleton.
    ck = checkpoint.restore(tmp_path, like={"opt_state": _opt_state(params)})
    _assert_trees_equal(ck.params, params)


def test_corrupt_npz_byte_raises_before_returning(tmp_path):
    checkpoint.save(tmp_path, params=_params(), step=3)
    p = tmp_path / "ckpt_00000003.npz"
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"checkpoint .*ckpt_00000003\.npz is corrupt: checksum"):
        checkpoint.restore(tmp_path)


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda m: m.pop("sha256"), 'no "sha256" checksum'),
        (lambda m: m.update(step="3"), '"step" must be an int'),
        (lambda m: m.pop("trees"), 'no "trees" mapping'),
        (lambda m: m["trees"].pop("params"), "no metadata .* for tree 'params'"),
        (
            lambda m: m["trees"]["params"]["leaves"][0].pop("shape"),
            "tree 'params' needs \"leaves\"",
        ),
        (lambda m: m["trees"]["params"].update(skeleton=["?", 1]), "the skeleton of params"),
    ],
)
def test_malformed_metadata_is_reported_as_corrupt(tmp_path, damage, match):
    checkpoint.save(tmp_path, params=_params(), step=3)
    path = tmp_path / "ckpt_00000003.json"
    meta = json.loads(path.read_text())
    damage(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"checkpoint .*ckpt_00000003\.json is corrupt: " + match):
        checkpoint.restore(tmp_path)


def test_missing_json_is_not_complete(tmp_path):
    checkpoint.save(tmp_path, params=_params(), step=1)
    checkpoint.save(tmp_path, params=_params(), step=2)
    os.remove(tmp_path / "ckpt_00000002.json")
    assert checkpoint.latest_step(tmp_path) == 1
    assert checkpoint.restore(tmp_path).step == 1
    with pytest.raises(FileNotFoundError, match=r"ckpt_00000002\.json not found"):
        checkpoint.restore(tmp_path, step=2)


def test_mismatched_like_names_leaf(tmp_path):
    params = _params()
    checkpoint.save(tmp_path, params=params, step=1)
    wrong_shape = jax.tree_util.tree_map(lambda x: x, params)
    wrong_shape["conv1"]["b"] = jnp.ones(3)
    with pytest.raises(ValueError, match=r"at leaf params\['conv1'\]\['b'\]: template has shape"):
        checkpoint.restore(tmp_path, like={"params": wrong_shape})
    wrong_dtype = dict(
        params, conv1={"w": params["conv1"]["w"].astype(jnp.float16), "b": params["conv1"]["b"]}
    )
    with pytest.raises(ValueError, match=r"at leaf params\['conv1'\]\['w'\].*dtype float16"):
        checkpoint.restore(tmp_path, like={"params": wrong_dtype})
    extra = dict(params, head={"w": jnp.ones(2)})
    with pytest.raises(ValueError, match=r"leaf params\['head'\]\['w'\] is not in it"):
        checkpoint.restore(tmp_path, like={"params": extra})
    fewer = {"conv1": params["conv1"]}
    with pytest.raises(ValueError, match=r"checkpoint leaf params\['dense'\]\[0\] has no"):
        checkpoint.restore(tmp_path, like={"params": fewer})
    with pytest.raises(ValueError, match=r"like has unknown keys \['parms'\]"):
        checkpoint.restore(tmp_path, like={"parms": params})


def test_like_accepts_shape_dtype_structs(tmp_path):
    params = _params()
    checkpoint.save(tmp_path, params=params, step=1)
    abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    _assert_trees_equal(checkpoint.restore(tmp_path, like={"params": abstract}).params, params)


def test_latest_step_and_restore_by_step_and_file(tmp_path):
    assert checkpoint.latest_step(tmp_path / "nope") is None
    assert checkpoint.latest(tmp_path) is None
    for s in (3, 10, 7):
        checkpoint.save(tmp_path, params={"w": jnp.full(2, float(s))}, step=s)
    (tmp_path / ".ckpt_00000099.npz.abc.tmp").write_bytes(b"partial")
    (tmp_path / "ckpt_00000050.npz").write_bytes(b"orphan")
    assert checkpoint.all_steps(tmp_path) == [3, 7, 10]
    assert checkpoint.latest_step(tmp_path) == 10
    assert checkpoint.latest(tmp_path) == str(tmp_path / "ckpt_00000010.npz")
    assert float(checkpoint.restore(tmp_path).params["w"][0]) == 10.0
    assert float(checkpoint.restore(tmp_path, step=7).params["w"][0]) == 7.0
    ck = checkpoint.restore(tmp_path / "ckpt_00000003.json")
    assert ck.step == 3 and float(ck.params["w"][0]) == 3.0


def test_keep_deletes_older_checkpoints(tmp_path):
    (tmp_path / "ckpt_00000000.npz").write_bytes(b"orphan from a crash")
    for s in range(1, 6):
        checkpoint.save(tmp_path, params={"w": jnp.ones(1)}, step=s, keep=2)
    assert checkpoint.all_steps(tmp_path) == [4, 5]
    assert sorted(os.listdir(tmp_path)) == [
        "ckpt_00000004.json",
        "ckpt_00000004.npz",
        "ckpt_00000005.json",
        "ckpt_00000005.npz",
    ]
    with pytest.raises(ValueError, match="keep must be >= 1, got 0"):
        checkpoint.save(tmp_path, params={}, step=9, keep=0)


def test_keep_never_deletes_the_checkpoint_just_saved(tmp_path):
    for s in (10, 20, 30):
        checkpoint.save(tmp_path, params={"w": jnp.ones(1)}, step=s, keep=3)
    path = checkpoint.save(tmp_path, params={"w": jnp.zeros(1)}, step=5, keep=3)
    assert os.path.exists(path)
    assert checkpoint.all_steps(tmp_path) == [5, 20, 30]  # it and the keep - 1 highest others
    np.testing.assert_array_equal(checkpoint.restore(tmp_path, step=5).params["w"], [0.0])


def test_existing_step_needs_overwrite(tmp_path):
    checkpoint.save(tmp_path, params={"w": jnp.ones(1)}, step=1)
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        checkpoint.save(tmp_path, params={"w": jnp.zeros(1)}, step=1)
    checkpoint.save(tmp_path, params={"w": jnp.zeros(1)}, step=1, overwrite=True)
    assert float(checkpoint.restore(tmp_path).params["w"][0]) == 0.0


def test_crash_during_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    params = _params()
    checkpoint.save(tmp_path, params=params, step=1)
    before = sorted(os.listdir(tmp_path))

    def boom(src, dst):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="simulated crash"):
        checkpoint.save(tmp_path, params={"w": jnp.ones(3)}, step=2)
    monkeypatch.undo()
    assert not (tmp_path / "ckpt_00000002.npz").exists()
    assert not (tmp_path / "ckpt_00000002.json").exists()
    assert sorted(os.listdir(tmp_path)) == before  # temporary file cleaned up
    assert checkpoint.latest_step(tmp_path) == 1
    _assert_trees_equal(checkpoint.restore(tmp_path).params, params)


def test_crash_between_npz_and_json_is_not_a_checkpoint(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, params={"w": jnp.ones(1)}, step=1)
    real_replace = os.replace

    def replace_npz_only(src, dst):
        if str(dst).endswith(".json"):
            raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_npz_only)
    with pytest.raises(OSError):
        checkpoint.save(tmp_path, params={"w": jnp.zeros(1)}, step=2)
    monkeypatch.undo()
    assert (tmp_path / "ckpt_00000002.npz").exists()
    assert checkpoint.latest_step(tmp_path) == 1
    assert float(checkpoint.restore(tmp_path).params["w"][0]) == 1.0


def test_save_validates_arguments(tmp_path):
    with pytest.raises(TypeError, match="step must be an int"):
        checkpoint.save(tmp_path, params={}, step=1.0)
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        checkpoint.save(tmp_path, params={}, step=-1)
    with pytest.raises(TypeError, match="config must be JSON-serialisable"):
        checkpoint.save(tmp_path, params={}, step=1, config={"f": object()})
    with pytest.raises(
        TypeError, match=r"params\['name'\]: leaf of type str \(dtype <U3\) is not a numeric"
    ):
        checkpoint.save(tmp_path, params={"name": "abc"}, step=1)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        checkpoint.restore(tmp_path)


def test_atomic_io_writes_and_validates(tmp_path):
    atomic_io.save_json_atomic(tmp_path / "a.json", {"x": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2]}
    atomic_io.write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(TypeError, match="data must be bytes-like"):
        atomic_io.write_bytes_atomic(tmp_path / "c", "text")
    with pytest.raises(TypeError):
        atomic_io.save_json_atomic(tmp_path / "d.json", {"x": object()})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_io.write_bytes_atomic(tmp_path / "missing" / "e", b"")
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.bin"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_atomic_writes_get_the_permissions_open_would_give(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_io.write_bytes_atomic(tmp_path / "f.bin", b"x")  # not mkstemp's private 0600
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "f.bin").st_mode & 0o777 == mode


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_atomic_rewrite_keeps_an_existing_files_permissions(tmp_path):
    path = tmp_path / "private.json"
    path.write_text("{}")
    os.chmod(path, 0o600)
    old = os.umask(0o022)
    try:
        atomic_io.save_json_atomic(path, {"x": 1})
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_restore_only_some_trees_needs_no_optimizer_template(tmp_path):
    # Evaluation reads params and model state; a NamedTuple optimizer state (which would need a
    # template) is skipped and comes back as None. The checksum still covers the whole file.
    params = _params()
    checkpoint.save(tmp_path, params=params, opt_state=_opt_state(params), step=3)
    ck = checkpoint.restore(tmp_path, trees=("params", "model_state"))
    _assert_trees_equal(ck.params, params)
    assert ck.opt_state is None and ck.step == 3
    with pytest.raises(ValueError, match=r"trees has unknown names \['optimizer'\]"):
        checkpoint.restore(tmp_path, trees=("params", "optimizer"))
    for bad in ("params", (t for t in ["params"]), (), 5):
        with pytest.raises(TypeError, match="trees must be"):
            checkpoint.restore(tmp_path, trees=bad)
