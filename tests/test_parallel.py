"""Data-parallel and multi-process training (fconv.parallel, fit(devices=...), fconv train flags).

Several CPU devices exist only if ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` is set
before JAX starts, so everything multi-device runs in child processes (each bounded in time; the
process group is killed on timeout). A child prints one JSON line of results; the tests assert
on them. The flag checks that need no second device run in this process.
"""

from __future__ import annotations

import doctest
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from fconv import checkpoint, cli, data, models, optim, parallel, train

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _child_env(num_devices: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env.update(
        XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return env


def _start(script: pathlib.Path, args: list[str], num_devices: int, log: pathlib.Path):
    """Starts ``python script *args`` with ``num_devices`` CPU devices, output into ``log``."""
    with open(log, "wb") as f:
        return subprocess.Popen(
            [sys.executable, str(script), *args],
            cwd=ROOT,
            env=_child_env(num_devices),
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as a whole on failure
        )


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _finish(procs: list[subprocess.Popen], logs: list[pathlib.Path], timeout: float) -> list[str]:
    """Waits for all children, ``timeout`` seconds at most; on the first failure (or the
    timeout) kills them all -- a process whose peer died would otherwise wait for it."""
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in procs):
            failed = [p for p in procs if p.poll() not in (None, 0)]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        for proc in procs:
            _kill(proc)
    outputs = [log.read_text(errors="replace") for log in logs]
    # Report a child that failed by itself before one killed here.
    for proc, out in sorted(zip(procs, outputs), key=lambda po: po[0].returncode < 0):
        if proc.returncode != 0:
            why = "was killed" if proc.returncode < 0 else f"exited with {proc.returncode}"
            pytest.fail(f"child {proc.args} {why} (limit {timeout:.0f} s):\n{out[-4000:]}")
    return outputs


def _result(output: str) -> dict:
    """The last line of a child's output: its JSON results."""
    return json.loads(output.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


# ---------------------------------------------------------------------------------------------
# One process, four devices.

FOUR_DEVICES = textwrap.dedent(
    """
    import contextlib, functools, io, json, sys
    import jax, numpy as np
    from jax.sharding import PartitionSpec as P
    from fconv import cli, data, models, optim, parallel, train
    from fconv.layers import BatchNorm, Conv, Dense, Dropout, Flatten, MaxPool, Relu, serial

    def rel_err(a, b):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))

    def max_rel_err(t1, t2):
        pairs = zip(jax.tree.leaves(t1), jax.tree.leaves(t2), strict=True)
        return max((rel_err(a, b) for a, b in pairs), default=0.0)

    def error(fn):
        try:
            fn()
        except ValueError as e:
            return str(e)
        return None

    out = {"device_count": jax.device_count()}
    mesh = parallel.make_mesh()
    ds = data.synthetic(64, 16, (1, 8, 8), num_classes=4)
    batch = (ds.x_train[:16], ds.y_train[:16])

    # The sharded batch.
    x, y = parallel.shard_batch(batch, mesh)
    out["x_spec_is_batch"] = x.sharding.spec == P("batch")
    out["y_spec_is_batch"] = y.sharding.spec == P("batch")
    out["x_shards"] = [list(s.data.shape) for s in x.addressable_shards]
    out["y_shards"] = [list(s.data.shape) for s in y.addressable_shards]
    out["x_shard_rows"] = [s.index[0].indices(16)[:2] for s in x.addressable_shards]
    out["x_equal"] = bool(np.array_equal(np.asarray(x), batch[0]))
    out["mesh2_ids"] = [d.id for d in parallel.make_mesh(2).devices.tolist()]

    # One step on 4 devices against one step on 1: LeNet, and Conv-BatchNorm-Dropout with
    # augmentation and weight decay (batch statistics and random numbers must agree too).
    # (no conv bias before BatchNorm: its gradient is 0 up to rounding noise)
    stochastic = serial(Conv(4, 3, padding="SAME", bias=False), BatchNorm(), Relu(), MaxPool(2),
                        Flatten(), Dropout(0.3), Dense(4))
    augment = functools.partial(data.augment, crop_padding=1, flip=True)
    cases = {
        "lenet5": (models.lenet5(4, (1, 8, 8)), {}),
        "stochastic": (stochastic, dict(weight_decay=1e-2, augment=augment)),
    }
    for name, (model, kw) in cases.items():
        opt = optim.momentum(0.1)
        one = train.make_train_step(model, opt, **kw)
        four = parallel.make_parallel_train_step(model, opt, mesh, **kw)
        s1, m1 = one(train.init_train_state(model, opt, (1, 8, 8), 0), batch)
        s4 = parallel.replicate(train.init_train_state(model, opt, (1, 8, 8), 0), mesh)
        s4, m4 = four(s4, parallel.shard_batch(batch, mesh))
        out[name] = {
            "params": max_rel_err(s1.params, s4.params),
            "model_state": max_rel_err(s1.model_state, s4.model_state),
            "loss": rel_err(m1["loss"], m4["loss"]),
            "step": int(s4.step),
            "params_replicated": all(
                a.sharding.is_fully_replicated and len(a.sharding.device_set) == 4
                for a in jax.tree.leaves(s4.params)
            ),
        }
        if name == "lenet5":
            six = (ds.x_train[:6], ds.y_train[:6])
            out["errors"] = {
                "shard_batch": error(lambda: parallel.shard_batch(six, mesh)),
                "step": error(lambda: four(s4, six)),
                "make_mesh": error(lambda: parallel.make_mesh(5)),
                "fit": error(lambda: train.fit(model, ds, epochs=1, batch_size=6,
                                               optimizer=opt, progress=False)),
                "ragged": error(lambda: parallel.shard_batch((batch[0], batch[1][:8]), mesh)),
            }

    # fit: every device (the default) against devices=1, two epochs.
    model, opt = models.lenet5(4, (1, 8, 8)), optim.momentum(0.05)
    kw = dict(epochs=2, batch_size=16, optimizer=opt, seed=3, progress=False)
    h1, f1 = train.fit(model, ds, devices=1, **kw)
    h4, f4 = train.fit(model, ds, **kw)
    h2, f2 = train.fit(model, ds, devices=2, **kw)
    # Evaluation split over the devices (24 examples in batches of 10 -> 12 on 4 devices, the
    # last one padded) equals the one-device evaluation.
    m_eval = models.lenet5(4, (1, 8, 8))
    p_eval = m_eval.init(jax.random.key(1), (-1, 1, 8, 8))[1]
    xs, ys = ds.x_train[:24], ds.y_train[:24]
    st_eval = m_eval.init_state((-1, 1, 8, 8))
    e1 = train.evaluate(m_eval, p_eval, st_eval, xs, ys, 10)
    e4 = train.evaluate(m_eval, p_eval, st_eval, xs, ys, 10, mesh=mesh)
    out["evaluate"] = {
        "loss": abs(e1[0] - e4[0]), "acc": [e1[1], e4[1]],
        "preds_equal": bool(np.array_equal(e1[2], e4[2])), "n": int(e4[2].shape[0]),
    }
    out["fit"] = {
        "params_4": max_rel_err(f1.params, f4.params),
        "params_2": max_rel_err(f1.params, f2.params),
        "train_loss": [max(abs(a["train_loss"] - b["train_loss"]) for a, b in zip(h1, h))
                       for h in (h4, h2)],
        "test_acc": [[r["test_acc"] for r in h] for h in (h1, h4, h2)],
        "steps": [r["step"] for r in h4],
    }

    # The command line: --devices 2 writes a run that records it; 30 is not divisible by 4.
    run_dir = sys.argv[1]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()) as printed, contextlib.redirect_stderr(err):
        rc_ok = cli.main(["train", "--devices", "2", "--epochs", "1", "--out", run_dir])
        rc_bad = cli.main(["train", "--batch-size", "30", "--out", run_dir + "-bad"])
    out["cli"] = {
        "rc_ok": rc_ok, "rc_bad": rc_bad, "stderr": err.getvalue(),
        "printed": printed.getvalue(), "config": train.load_run(run_dir).config,
    }
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    """Results of FOUR_DEVICES, run once in a child with 4 CPU devices."""
    tmp = tmp_path_factory.mktemp("four")
    script = tmp / "four_devices.py"
    script.write_text(FOUR_DEVICES)
    log = tmp / "four_devices.log"
    (output,) = _finish([_start(script, [str(tmp / "run")], 4, log)], [log], timeout=300)
    return _result(output)


def test_shard_batch_splits_the_batch_axis_into_four_equal_shards(four_devices):
    r = four_devices
    assert r["device_count"] == 4
    assert r["x_spec_is_batch"] and r["y_spec_is_batch"]
    assert r["x_shards"] == [[4, 1, 8, 8]] * 4 and r["y_shards"] == [[4]] * 4
    assert r["x_shard_rows"] == [[0, 4], [4, 8], [8, 12], [12, 16]]  # device k: rows 4k..4k+3
    assert r["x_equal"]  # the global array is the batch, unchanged
    assert r["mesh2_ids"] == [0, 1]  # make_mesh(n): the first n devices


@pytest.mark.parametrize("name", ["lenet5", "stochastic"])
def test_one_step_on_four_devices_equals_one_step_on_one(four_devices, name):
    r = four_devices[name]
    assert r["step"] == 1 and r["params_replicated"]
    assert r["params"] <= 1e-5, r
    assert r["model_state"] <= 1e-5, r  # BatchNorm running statistics of the global batch
    assert r["loss"] <= 1e-6, r


def test_batch_not_divisible_by_the_devices_is_a_value_error(four_devices):
    errors = four_devices["errors"]
    expected = "batch_size (6) must be divisible by the number of devices (4)"
    for where in ("shard_batch", "step", "fit"):
        assert errors[where] is not None and errors[where].startswith(expected), errors
    assert errors["make_mesh"].startswith(
        "the number of devices asked for (5) must be <= the number available (4)"
    )
    assert errors["ragged"].startswith("every leaf of batch must have the same first (batch) axis")


def test_evaluation_split_over_four_devices_equals_one_device(four_devices):
    r = four_devices["evaluate"]
    assert r["n"] == 24 and r["preds_equal"], r
    assert r["loss"] <= 1e-6 and r["acc"][0] == r["acc"][1], r


def test_fit_on_two_and_four_devices_matches_one_device(four_devices):
    r = four_devices["fit"]
    assert r["steps"] == [4, 8]
    assert r["params_4"] <= 1e-5 and r["params_2"] <= 1e-5, r
    assert max(r["train_loss"]) <= 1e-5, r
    assert r["test_acc"][0] == r["test_acc"][1] == r["test_acc"][2]


def test_cli_devices_flag_trains_and_records_the_device_count(four_devices):
    r = four_devices["cli"]
    assert r["rc_ok"] == 0 and "final test accuracy" in r["printed"]
    assert r["config"]["devices"] == 2 and r["config"]["processes"] == 1
    assert r["rc_bad"] == 2
    assert r["stderr"].splitlines() == [
        "fconv train: error: batch_size (30) must be divisible by the number of devices (4): "
        "each device takes an equal share of every batch; choose another batch size or number "
        "of devices"
    ]


# ---------------------------------------------------------------------------------------------
# Two processes with two devices each, on localhost (gloo collectives).

WORKER = textwrap.dedent(
    """
    import json, sys
    process_id, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    from fconv import parallel
    if process_id >= 0:  # -1: the single-process reference run
        parallel.initialize_distributed(f"127.0.0.1:{port}", 2, process_id, timeout=120)
    import jax, numpy as np
    from fconv import data, models, optim, train

    model = models.lenet5(4, (1, 8, 8))
    ds = data.synthetic(64, 16, (1, 8, 8), num_classes=4)
    kw = dict(batch_size=16, optimizer=optim.momentum(0.05), seed=3, progress=False)
    info = {"process_count": jax.process_count(), "devices": jax.device_count()}
    if process_id >= 0:
        info["rows"] = parallel.local_rows(16, parallel.make_mesh()).indices(16)[:2]
        run = f"{out}/run"
        train.fit(model, ds, epochs=1, out_dir=run, **kw)  # then resume for the second epoch
        history, state = train.fit(model, ds, epochs=2, out_dir=run, resume=True, **kw)
        try:  # process 0 refuses the existing run; every process must raise it
            train.fit(model, ds, epochs=2, out_dir=run, **kw)
        except FileExistsError as e:
            info["refused"] = str(e)
    else:
        history, state = train.fit(model, ds, epochs=2, **kw)
    name = f"{out}/params_{process_id}.npz"
    np.savez(name, *[np.asarray(a) for a in jax.tree.leaves(state.params)])
    info["history"] = history
    print(json.dumps(info))
    """
)


def test_two_processes_train_like_one_and_only_process_0_writes(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = str(_free_port())
    logs = [tmp_path / f"worker_{i}.log" for i in (0, 1, -1)]
    procs = [_start(script, [str(i), port, str(tmp_path)], 2, logs[i]) for i in (0, 1)]
    procs.append(_start(script, ["-1", port, str(tmp_path)], 1, logs[2]))  # the reference
    r0, r1, _ = (_result(out) for out in _finish(procs, logs, timeout=180))

    assert r0["process_count"] == r1["process_count"] == 2 and r0["devices"] == 4
    assert r0["rows"] == [0, 8] and r1["rows"] == [8, 16]  # each feeds half of every batch
    p0, p1, p_ref = (np.load(tmp_path / f"params_{i}.npz") for i in (0, 1, -1))
    for key in p_ref.files:
        np.testing.assert_array_equal(p0[key], p1[key])  # replicated: identical everywhere
        assert _rel_err(p0[key], p_ref[key]) <= 1e-5, key
    # Process 0 alone wrote: one metrics line per epoch and the checkpoints of both epochs.
    run = tmp_path / "run"
    assert [r["epoch"] for r in train.read_metrics(run)] == [1, 2]
    assert [r["step"] for r in r0["history"]] == [4, 8]  # with the resumed epoch
    assert [r["step"] for r in r1["history"]] == [8]
    assert checkpoint.all_steps(run) == [4, 8]
    config = json.loads(pathlib.Path(checkpoint.paths_for(run, 8)[1]).read_text())["config"]
    assert config["processes"] == 2 and config["devices"] == 4
    # The refusal of process 0 reached process 1 with the same type and message.
    assert "already holds a run" in r0["refused"]
    assert r1["refused"] == r0["refused"] + " (reported by process 0)"


# ---------------------------------------------------------------------------------------------
# In this process (one device): argument checks.


def test_initialize_distributed_checks_its_arguments_before_starting_anything():
    with pytest.raises(ValueError, match=r"`process_id` must be < `num_processes` \(2\), got 2"):
        parallel.initialize_distributed("localhost:1234", 2, 2)
    with pytest.raises(ValueError, match="`coordinator` must be HOST:PORT"):
        parallel.initialize_distributed("localhost", 2, 0)
    with pytest.raises(ValueError, match=r"port 1-65535\), got 'h:70000'"):
        parallel.initialize_distributed("h:70000", 2, 0)
    with pytest.raises(ValueError, match="`num_processes` must be >= 1, got 0"):
        parallel.initialize_distributed("h:1", 0, 0)
    with pytest.raises(TypeError, match="`process_id` must be an int"):
        parallel.initialize_distributed("h:1", 2, "0")
    assert jax.process_count() == 1  # nothing was initialised


def test_mesh_of_more_devices_than_exist_is_a_value_error():
    n = jax.device_count()
    with pytest.raises(ValueError, match=rf"asked for \({n + 1}\) must be <= the number .*\({n}\)"):
        parallel.make_mesh(n + 1)
    with pytest.raises(ValueError, match="`num_devices` must be >= 1, got 0"):
        parallel.make_mesh(0)
    mesh = parallel.make_mesh(1)
    assert mesh.axis_names == ("batch",) and mesh.size == 1


def test_fit_devices_is_checked():
    ds = data.synthetic(32, 8, (1, 8, 8), num_classes=4)
    kw = dict(epochs=1, batch_size=8, optimizer=optim.sgd(0.1), progress=False)
    model = models.lenet5(4, (1, 8, 8))
    with pytest.raises(ValueError, match="`devices` must be >= 1, got 0"):
        train.fit(model, ds, devices=0, **kw)
    with pytest.raises(ValueError, match="must be <= the number available"):
        train.fit(model, ds, devices=jax.device_count() + 1, **kw)


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == "" and len(lines) == 1, captured
    return lines[0]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--coordinator", "h:1"], "needs --coordinator, --num-processes and --process-id "
         "together; --coordinator given without --num-processes, --process-id"),
        (["--num-processes", "2", "--process-id", "0"], "given without --coordinator"),
        (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"],
         "--process-id must be < --num-processes (2), got 2"),
        (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "0", "--devices", "3"],
         "--devices (the total over all processes) must be a multiple of --num-processes (2), "
         "got 3"),
        (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"],
         "--coordinator must be HOST:PORT (port 1-65535), got 'nohost'"),
        (["--devices", "0"], "argument --devices: expected an integer >= 1"),
        (["--process-id", "-1"], "argument --process-id: expected an integer >= 0"),
    ],
)  # fmt: skip
def test_inconsistent_process_flags_are_one_line_and_exit_2(flags, message, capsys):
    assert cli.main(["train", *flags]) == 2
    line = _one_line_error(capsys)
    assert line.startswith("fconv train: error: ") and message in line, line
    assert jax.process_count() == 1


def test_module_doctest_passes():
    result = doctest.testmod(parallel)
    assert result.attempted > 0 and result.failed == 0
