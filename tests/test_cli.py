"""The ``fconv`` command line, run in-process through ``fconv.cli.main`` (one subprocess call)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from fconv import cli, data, train


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A finished 5-epoch `fconv train` run on the digits (defaults otherwise)."""
    out = tmp_path_factory.mktemp("runs") / "lenet5-digits"
    assert cli.main(["train", "--epochs", "5", "--out", str(out), "--quiet"]) == 0
    return out


def _one_line_error(capsys, prefix):
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(prefix)
    return lines[0]


# ---------------------------------------------------------------------------------------------
# train / eval / plot round trip


def test_train_prints_one_line_per_epoch_then_the_final_accuracy(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--epochs", "2", "--batch-size", "64", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("epoch 1/2 step 22: loss") and "test loss" in lines[0]
    assert re.fullmatch(
        rf"final test accuracy 0\.\d{{4}} \(\d+/359\) after 2 epochs, [\d.]+ s; run saved in "
        rf"{re.escape(str(out))}",
        lines[2],
    )
    assert [r["epoch"] for r in train.read_metrics(out)] == [1, 2]


def test_digits_run_records_its_config_and_beats_90_percent(digits_run):
    records = train.read_metrics(digits_run)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]
    assert records[-1]["test_acc"] > 0.9
    run = train.load_run(digits_run)
    cfg = run.config
    assert cfg["model"] == "lenet5" and cfg["data"] == "digits" and cfg["seed"] == 0
    assert cfg["optimizer"] == {
        "name": "adam",
        "learning_rate": 2e-3,
        "schedule": "cosine",
        "total_steps": 5 * 44,
    }
    assert cfg["weight_decay"] == 1e-3 and cfg["batch_size"] == 32 and cfg["augment"] is None
    assert len(cfg["normalization"]["mean"]) == 1


def test_eval_prints_the_test_accuracy_and_a_confusion_table(digits_run, capsys):
    assert cli.main(["eval", "--checkpoint", str(digits_run)]) == 0
    out = capsys.readouterr().out.splitlines()
    acc = train.read_metrics(digits_run)[-1]["test_acc"]
    m = re.fullmatch(
        r"lenet5 on digits \(step 220\): test accuracy (\S+) \((\d+)/359\), loss \S+", out[0]
    )
    assert m and float(m.group(1)) == pytest.approx(acc, abs=1e-4)
    assert out[1].split() == ["true\\pred", *map(str, range(10)), "recall"]
    rows = [line.split() for line in out[2:]]
    assert len(rows) == 10 and [r[0] for r in rows] == [str(i) for i in range(10)]
    matrix = np.array([[int(v) for v in r[1:11]] for r in rows])
    assert matrix.sum() == 359 and np.trace(matrix) == int(m.group(2))


def test_plot_writes_three_pngs_into_the_run(digits_run, capsys):
    pytest.importorskip("matplotlib")
    assert cli.main(["plot", str(digits_run)]) == 0
    printed = capsys.readouterr().out.split()
    names = ["curves.png", "filters.png", "feature_maps.png"]
    assert printed == [str(digits_run / n) for n in names]
    for n in names:
        assert (digits_run / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_of_a_finished_run_only_reports(digits_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(digits_run, copy)
    argv = ["train", "--epochs", "5", "--out", str(copy), "--resume", "--quiet"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("final test accuracy") and "after 5 epochs" in out[0]


def test_train_and_eval_read_idx_files_from_the_data_dir(tmp_path, capsys):
    rng = np.random.default_rng(0)
    d = tmp_path / "mnist"
    d.mkdir()
    for prefix, n in (("train", 64), ("t10k", 20)):
        data.write_idx(
            d / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 8, 8), np.uint8)
        )
        data.write_idx(d / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n).astype(np.uint8))
    out = tmp_path / "run"
    argv = ["train", "--data", "mnist", "--data-dir", str(d), "--epochs", "1", "--out", str(out)]
    assert cli.main([*argv, "--quiet"]) == 0
    assert json.loads((out / train.METRICS_FILE).read_text())["step"] == 2
    assert cli.main(["eval", "--checkpoint", str(out)]) == 0  # the data dir comes from the config
    assert "lenet5 on mnist (step 2)" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# Errors: one line on stderr, exit status 2


@pytest.mark.parametrize(
    "argv, prefix",
    [
        (["train", "--bogus"], "fconv: error: unrecognized arguments: --bogus"),
        (["train", "--epochs", "zero"], "fconv train: error: argument --epochs: expected an"),
        (["train", "--lr", "-1"], "fconv train: error: argument --lr: expected a number > 0"),
        (["train", "--model", "lenet6"], "fconv train: error: argument --model: invalid choice"),
        (["eval", "--batch-size", "0"], "fconv eval: error: argument --batch-size"),
        ([], "fconv: error: the following arguments are required: COMMAND"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(argv, prefix, capsys):
    assert cli.main(argv) == 2
    _one_line_error(capsys, prefix)


def test_missing_files_and_data_dirs_give_one_line_and_exit_2(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["train", "--data", "mnist"], "--data mnist needs --data-dir PATH"),
        (["train", "--data", "cifar10", "--data-dir", str(tmp_path / "no")], "does not exist"),
        (["train", "--data", "fashion-mnist", "--data-dir", str(empty)], "expected "),
        (["eval", "--checkpoint", str(tmp_path / "none")], "checkpoint"),
        (["eval", "--checkpoint", str(empty)], "no complete checkpoint"),
        (["plot", str(tmp_path / "none")], "run directory"),
    ]
    for argv, text in cases:
        assert cli.main(argv) == 2, argv
        line = _one_line_error(capsys, f"fconv {argv[0]}: error: ")
        assert text in line, line


def test_an_out_path_that_is_a_file_gives_one_line_and_exit_2(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for out, text in [(afile, "exists and is not a directory"), (afile / "sub", "cannot create")]:
        assert cli.main(["train", "--epochs", "1", "--out", str(out), "--overwrite"]) == 2
        assert text in _one_line_error(capsys, "fconv train: error: ")
    assert afile.read_text() == "keep me"


def test_training_into_an_existing_run_asks_for_resume(digits_run, capsys):
    assert cli.main(["train", "--out", str(digits_run), "--quiet"]) == 2
    line = _one_line_error(capsys, "fconv train: error: ")
    assert "already holds a run: pass --resume to continue it, --overwrite" in line


# ---------------------------------------------------------------------------------------------
# gradcheck


def _table_rows(out):
    return [line.split("  ") for line in out.splitlines()[2:] if line and "passed" not in line]


def test_gradcheck_of_the_pools_passes(capsys):
    assert cli.main(["gradcheck", "--op", "max_pool", "--op", "avg_pool"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split("  ")[0] == "op"
    assert "rel err vs jax.grad" in out and "rel err vs finite diff" in out
    assert out.count(" ok\n") == 6 and "6/6 passed" in out and "FAIL" not in out


@pytest.mark.slow
def test_gradcheck_of_every_op_passes(capsys):
    assert cli.main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    for op in ("conv ", "conv_transpose", "max_pool", "avg_pool", "batch_norm"):
        assert op in out
    assert "17/17 passed" in out and "groups 2" in out and "dilation 2" in out


def test_gradcheck_reports_a_wrong_rule_and_exits_1(monkeypatch, capsys):
    @jax.custom_vjp
    def doubled_grad(x):
        return x * x

    doubled_grad.defvjp(lambda x: (x * x, x), lambda x, g: (4 * x * g,))  # should be 2 x g
    case = ("square", "wrong rule", doubled_grad, lambda x: x * x, (np.linspace(1, 2, 5),), "vjp")
    monkeypatch.setattr(cli, "_gradcheck_cases", lambda: [case])
    assert cli.main(["gradcheck"]) == 1
    out = capsys.readouterr().out
    assert "square" in out and "FAIL" in out and "0/1 passed" in out


# ---------------------------------------------------------------------------------------------
# --help


@pytest.mark.parametrize("command", [[], ["train"], ["eval"], ["gradcheck"], ["plot"]])
def test_help_everywhere(command, capsys):
    assert cli.main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fconv")
    if command == ["train"]:
        for flag in ("--model", "--data-dir", "--optimizer", "--resume", "--quiet", "--augment"):
            assert flag in out


def test_python_m_fconv_cli_help_runs_as_a_program():
    result = subprocess.run(
        [sys.executable, "-m", "fconv.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    for command in ("train", "eval", "gradcheck", "plot"):
        assert command in result.stdout


def test_receptive_field_of_vgg_small_matches_the_hand_computed_table(capsys):
    assert cli.main(["receptive-field", "--model", "vgg_small"]) == 0
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| ") and ":" in line
    ]
    # conv3, conv3, pool2, conv3, conv3, pool2: RF 3 5 6 10 14 16, jump 1 1 2 2 2 4.
    assert [r[4] for r in rows] == ["3", "5", "6", "10", "14", "16"]
    assert [r[5] for r in rows] == ["1", "1", "2", "2", "2", "4"]


def test_receptive_field_with_an_input_too_small_for_the_model_exits_2(capsys):
    argv = ["receptive-field", "--model", "vgg_small", "--input-shape", "3", "2", "2"]
    assert cli.main(argv) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_fast_cpu_and_deterministic_flags_train_in_a_fresh_process(tmp_path):
    # XLA reads XLA_FLAGS once per process, so the flags are exercised in a child process: a
    # switch set after the backend started would raise there.
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fconv.cli", "train", "--fast-cpu", "--deterministic"]
    cmd += ["--epochs", "2"]
    cmd += ["--out", str(out), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "final test accuracy" in done.stdout
    assert (out / "metrics.jsonl").exists()


def test_deterministic_flag_switches_xla_before_training(tmp_path, monkeypatch):
    # In-process the backend has started, so the real switch would refuse: record the call.
    from fconv import perf

    calls = []
    monkeypatch.setattr(perf, "enable_deterministic", lambda: calls.append("deterministic"))
    out = tmp_path / "run"
    argv = ["train", "--deterministic", "--epochs", "1", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    assert calls == ["deterministic"] and (out / "metrics.jsonl").exists()


def test_bench_passes_its_arguments_to_the_benchmark_suite(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = cli.main(["bench", "--sections", "throughput", "--quick", "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["throughput"]
    assert rows[0]["model"] == "lenet5" and rows[0]["images_per_sec"] > 0
    assert "fconv train on the digits" in capsys.readouterr().out
    assert cli.main(["bench", "--sections", "nonsense"]) == 2  # its own usage error
