"""fconv.train: the train step, evaluation, fit's metrics/checkpoints, and exact resume."""

from __future__ import annotations

import doctest
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fconv import checkpoint, data, models, ops, optim, perf, train, viz
from fconv.layers import (
    BatchNorm,
    Conv,
    ConvTranspose,
    Dense,
    Dropout,
    Flatten,
    MaxPool,
    Relu,
    default_vjp,
    serial,
)

RECORD_KEYS = {
    "epoch",
    "step",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "images_per_sec",
    "seconds",
}


def _tiny_dataset():
    return data.synthetic(96, 40, (1, 8, 8), num_classes=4, seed=3)


def _stochastic_model():
    """Conv + BatchNorm (state) + Dropout (rng): everything resume must reproduce."""
    return serial(
        Conv(4, 3, padding="SAME"),
        BatchNorm(),
        Relu(),
        MaxPool(2),
        Flatten(),
        Dropout(0.3),
        Dense(4),
    )


# One model, optimizer and augmentation for every tiny run: fit reuses their compiled step.
TINY = dict(
    model=_stochastic_model(),
    epochs=2,
    batch_size=32,
    optimizer=optim.adam(1e-2),
    seed=5,
    augment=train.make_augment(1, True),
    progress=False,
)


def _fit_tiny(**kwargs):
    kwargs = {**TINY, **kwargs}
    return train.fit(kwargs.pop("model"), _tiny_dataset(), **kwargs)


def _assert_trees_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert len(la) == len(lb) > 0
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---------------------------------------------------------------------------------------------
# fit


def test_fit_short_digits_run_reaches_90_percent(capsys):
    ds = data.load_digits()
    model = models.lenet5(ds.num_classes, ds.input_shape)
    history, state = train.fit(
        model,
        ds,
        epochs=3,
        batch_size=32,
        optimizer=optim.adam(2e-3),
        seed=0,
        normalize=True,
        progress=True,  # not a terminal under pytest: one plain line per epoch
    )
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["test_acc"] > 0.90
    assert int(state.step) == 3 * (ds.num_train // 32) == history[-1]["step"]
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3 step 44: loss")
    assert "img/s" in lines[-1]


# XLA's GPU reductions and scatters may add in another order after a recompile; the CPU's never
# do. So exact resume is a CPU guarantee, and a GPU one under fconv.perf.enable_deterministic().
bit_exact = pytest.mark.skipif(
    jax.default_backend() == "gpu" and not perf.deterministic_enabled(),
    reason="bit-exact resume on GPU needs XLA_FLAGS=--xla_gpu_deterministic_ops=true "
    "(fconv.perf.enable_deterministic)",
)


@bit_exact
def test_resume_gives_exactly_the_uninterrupted_params(tmp_path):
    _, straight = _fit_tiny(epochs=2)
    _fit_tiny(epochs=1, out_dir=tmp_path)
    # A new model object: the resumed run compiles its own step, as a restarted process would.
    history, resumed = _fit_tiny(epochs=2, out_dir=tmp_path, resume=True, model=_stochastic_model())
    _assert_trees_equal(resumed.params, straight.params)
    _assert_trees_equal(resumed.opt_state, straight.opt_state)
    _assert_trees_equal(resumed.model_state, straight.model_state)  # BatchNorm statistics
    assert int(resumed.step) == int(straight.step) == 2 * 3
    assert [r["epoch"] for r in history] == [1, 2]
    assert [r["epoch"] for r in train.read_metrics(tmp_path)] == [1, 2]


@bit_exact
def test_resume_after_a_crash_trims_metrics_and_matches(tmp_path):
    history, straight = _fit_tiny(epochs=2, out_dir=tmp_path)
    # Crash after epoch 2's metrics line but before its checkpoint, mid-way through a write.
    for path in checkpoint.paths_for(tmp_path, int(straight.step)):
        os.remove(path)
    with open(tmp_path / train.METRICS_FILE, "a") as f:
        f.write('{"epoch": 3, "step"')
    resumed_history, resumed = _fit_tiny(epochs=2, out_dir=tmp_path, resume=True)
    _assert_trees_equal(resumed.params, straight.params)
    lines = (tmp_path / train.METRICS_FILE).read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert resumed_history[1]["test_acc"] == history[1]["test_acc"]


def test_metrics_file_and_checkpoints_written_every_epoch_keeping_three(tmp_path):
    ds = _tiny_dataset()
    model = models.lenet5(4, (1, 8, 8))
    seen = []
    history, state = train.fit(
        model,
        ds,
        epochs=4,
        batch_size=32,
        optimizer={"name": "sgd", "learning_rate": 0.1},
        seed=0,
        out_dir=tmp_path,
        progress=False,
        log=seen.append,
        config={"model": "lenet5"},
    )
    records = train.read_metrics(tmp_path / train.METRICS_FILE)
    assert records == history == seen
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert [r["step"] for r in records] == [3, 6, 9, 12]
    for r in records:
        assert set(r) == RECORD_KEYS
        assert 0.0 <= r["test_acc"] <= 1.0 and r["images_per_sec"] > 0
    assert checkpoint.all_steps(tmp_path) == [6, 9, 12]  # keep=3
    ckpt = checkpoint.restore(tmp_path, like={"opt_state": state.opt_state})
    cfg = ckpt.config
    assert cfg["model"] == "lenet5" and cfg["epoch"] == 4 and cfg["seed"] == 0
    assert cfg["num_classes"] == 4 and cfg["input_shape"] == [1, 8, 8]
    assert cfg["optimizer"] == {"name": "sgd", "learning_rate": 0.1, "total_steps": 12}
    _assert_trees_equal(ckpt.params, state.params)
    # load_run rebuilds the model from the config and gets the same predictions.
    run = train.load_run(tmp_path)
    loss, acc, pred = train.evaluate(run.model, run.params, run.model_state, ds.x_test, ds.y_test)
    assert acc == pytest.approx(records[-1]["test_acc"])
    assert loss == pytest.approx(records[-1]["test_loss"], rel=1e-6)
    assert pred.shape == (40,)


def test_checkpoint_every_saves_on_multiples_and_at_the_end(tmp_path):
    _fit_tiny(epochs=3, out_dir=tmp_path, checkpoint_every=2)
    assert checkpoint.all_steps(tmp_path) == [6, 9]


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    _fit_tiny(epochs=1, out_dir=tmp_path)
    with pytest.raises(FileExistsError, match="already holds a run"):
        _fit_tiny(epochs=1, out_dir=tmp_path)
    history, _ = _fit_tiny(epochs=1, out_dir=tmp_path, overwrite=True)
    assert len(train.read_metrics(tmp_path)) == 1 and checkpoint.all_steps(tmp_path) == [3]


def test_resume_refuses_a_different_seed(tmp_path):
    _fit_tiny(epochs=1, out_dir=tmp_path)
    with pytest.raises(ValueError, match="trained with seed=5, this run has seed=6"):
        _fit_tiny(epochs=2, out_dir=tmp_path, resume=True, seed=6)


def test_resume_without_checkpoint_starts_fresh_and_finished_run_does_nothing(tmp_path):
    history, state = _fit_tiny(epochs=1, out_dir=tmp_path, resume=True)
    assert len(history) == 1
    again, same = _fit_tiny(epochs=1, out_dir=tmp_path, resume=True)
    assert again == history
    _assert_trees_equal(same.params, state.params)


def test_resume_without_checkpoint_drops_the_interrupted_runs_epoch_records(tmp_path):
    class Crash(Exception):
        pass

    def crash_after_epoch_1(record):
        if record["epoch"] == 1:
            raise Crash

    # checkpoint_every=2: epoch 1 is logged, then the run dies before any checkpoint exists.
    with pytest.raises(Crash):
        _fit_tiny(epochs=3, out_dir=tmp_path, checkpoint_every=2, log=crash_after_epoch_1)
    assert checkpoint.all_steps(tmp_path) == []
    history, _ = _fit_tiny(epochs=3, out_dir=tmp_path, checkpoint_every=2, resume=True)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert [r["epoch"] for r in train.read_metrics(tmp_path)] == [1, 2, 3]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, "`epochs` must be >= 1"),
        ({"batch_size": 97}, r"`batch_size` \(97\) must be <= the number of training"),
        ({"resume": True}, "resume=True needs out_dir"),
        ({"seed": -1}, "`seed` must be >= 0"),
        ({"keep": 0}, "`keep` must be >= 1"),
        ({"eval_batch_size": 0}, "`eval_batch_size` must be >= 1"),
        ({"weight_decay": -1.0}, "`weight_decay` must be >= 0"),
        ({"weight_decay": float("inf")}, "`weight_decay` must be finite"),
    ],
)
def test_fit_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _fit_tiny(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"optimizer": "adam"}, "`optimizer` must be an optimizer with init and update"),
        ({"weight_decay": "x"}, "`weight_decay` must be a real number"),
        ({"keep": 2.5}, "`keep` must be an int"),
    ],
)
def test_fit_rejects_arguments_of_the_wrong_type(kwargs, match):
    with pytest.raises(TypeError, match=match):
        _fit_tiny(**kwargs)


def test_fit_takes_keep_none_and_any_optimizer_with_init_and_update(tmp_path):
    optax = pytest.importorskip("optax")
    history, _ = _fit_tiny(epochs=1, out_dir=tmp_path, keep=None, optimizer=optax.adam(1e-2))
    assert len(history) == 1 and checkpoint.all_steps(tmp_path) == [3]


def test_fit_checks_every_argument_before_touching_an_earlier_run(tmp_path):
    _fit_tiny(epochs=1, out_dir=tmp_path)
    before = sorted(os.listdir(tmp_path))
    for bad in ({"weight_decay": -1.0}, {"keep": 0}, {"eval_batch_size": 0}):
        with pytest.raises(ValueError):
            _fit_tiny(epochs=1, out_dir=tmp_path, overwrite=True, **bad)
        assert sorted(os.listdir(tmp_path)) == before  # the earlier run is still there


def test_fit_refuses_an_out_dir_that_is_a_file(tmp_path):
    path = tmp_path / "afile"
    path.write_text("not a run")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        _fit_tiny(epochs=1, out_dir=path, overwrite=True)
    assert path.read_text() == "not a run"
    with pytest.raises(ValueError, match="cannot create `out_dir`"):
        _fit_tiny(epochs=1, out_dir=path / "sub")


# ---------------------------------------------------------------------------------------------
# Steps, evaluation, confusion matrix


def test_train_step_threads_batchnorm_state_donates_and_counts():
    model, opt = _stochastic_model(), optim.sgd(0.1)
    state = train.init_train_state(model, opt, (1, 8, 8), seed=0)
    step = train.make_train_step(model, opt, weight_decay=1e-2)
    ds = _tiny_dataset()
    batch = (ds.x_train[:16], ds.y_train[:16])
    old_mean = np.asarray(state.model_state[1]["mean"])
    old_params = state.params
    new, metrics = step(state, batch)
    assert int(new.step) == 1
    assert set(metrics) == {"loss", "accuracy"} and metrics["loss"].dtype == jnp.float32
    assert not np.allclose(np.asarray(new.model_state[1]["mean"]), old_mean)
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves(old_params))  # donated
    np.testing.assert_array_equal(new.rng, train.init_train_state(model, opt, (1, 8, 8), 0).rng)


def test_weight_decay_adds_wd_times_w_to_the_gradient_but_not_to_the_bias():
    # Two SGD (lr 1) steps from the same state, differing only in weight_decay: the data
    # gradients are equal, so the kernels differ by exactly wd * w0.
    model, opt = models.lenet5(4, (1, 8, 8)), optim.sgd(1.0)
    ds = _tiny_dataset()
    batch = (ds.x_train[:8], ds.y_train[:8])
    plain = train.make_train_step(model, opt)(
        train.init_train_state(model, opt, (1, 8, 8), 0), batch
    )
    decayed = train.make_train_step(model, opt, weight_decay=0.5)(
        train.init_train_state(model, opt, (1, 8, 8), 0), batch
    )
    w0 = train.init_train_state(model, opt, (1, 8, 8), 0).params
    # Biases (leaves named "b") are not decayed.
    np.testing.assert_allclose(
        decayed[0].params[0]["w"], plain[0].params[0]["w"] - 0.5 * w0[0]["w"], atol=1e-6
    )
    np.testing.assert_array_equal(decayed[0].params[0]["b"], plain[0].params[0]["b"])
    assert decayed[1]["loss"] == plain[1]["loss"]  # metrics report the data loss


def test_eval_step_is_per_example_and_evaluate_pads_the_last_batch():
    model = models.lenet5(4, (1, 8, 8))
    _, params = model.init(jax.random.key(0))
    state = model.init_state()
    ds = _tiny_dataset()
    out = train.make_eval_step(model)(params, state, (ds.x_test[:5], ds.y_test[:5]))
    assert out["logits"].shape == (5, 4) and out["loss"].shape == (5,)
    assert out["correct"].dtype == jnp.bool_
    whole = train.evaluate(model, params, state, ds.x_test, ds.y_test, batch_size=40)
    padded = train.evaluate(model, params, state, ds.x_test, ds.y_test, batch_size=7)
    assert padded[0] == pytest.approx(whole[0], rel=1e-6) and padded[1] == whole[1]
    np.testing.assert_array_equal(padded[2], whole[2])
    np.testing.assert_array_equal(whole[2][:5], np.argmax(out["logits"], -1))
    with pytest.raises(ValueError, match="same number"):
        train.evaluate(model, params, state, ds.x_test, ds.y_test[:3])


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    m = train.confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert m.dtype == np.int64
    with pytest.raises(ValueError, match=r"y_pred must lie in \[0, 3\), got range \[0, 3\]"):
        train.confusion_matrix([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match="same shape"):
        train.confusion_matrix([0, 1], [0], 3)


# ---------------------------------------------------------------------------------------------
# Registries


def test_registries_reject_unknown_names():
    with pytest.raises(ValueError, match="unknown model 'lenet6'"):
        train.build_model("lenet6", 10, (1, 8, 8))
    with pytest.raises(ValueError, match="unknown optimizer 'adamax'"):
        train.make_optimizer("adamax", 1e-3)
    with pytest.raises(ValueError, match="schedule 'cosine' needs total_steps"):
        train.make_optimizer("adam", 1e-3, schedule="cosine")
    for lr in (0.0, -1.0):  # the cosine schedule's peak too (it used to train at rate 0)
        with pytest.raises(ValueError, match=f"learning_rate must be > 0, got {lr}"):
            train.make_optimizer("adam", lr, schedule="cosine", total_steps=10)
    with pytest.raises(TypeError, match="learning_rate must be a number"):
        train.make_optimizer("sgd", "0.1")
    assert train.make_optimizer("sgd", np.array(0.1)) is not None  # a concrete 0-d array
    with pytest.raises(ValueError, match="give data_dir"):
        train.load_dataset("mnist")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train.load_dataset("cifar10", "/nonexistent/fconv")


def test_every_optimizer_name_builds_and_updates():
    params = {"w": jnp.ones(3, jnp.float32)}
    for name in train.OPTIMIZERS:
        opt = train.make_optimizer(name, 0.1, schedule="cosine", total_steps=10, weight_decay=0.1)
        updates, _ = opt.update({"w": jnp.ones(3, jnp.float32)}, opt.init(params), params)
        assert float(updates["w"][0]) < 0, name


# ---------------------------------------------------------------------------------------------
# viz helpers that need no matplotlib


def test_conv_activations_are_the_conv_outputs_of_the_model():
    model = models.lenet5(10, (1, 8, 8))
    _, params = model.init(jax.random.key(0))
    x = np.random.default_rng(0).standard_normal((1, 8, 8)).astype(np.float32)
    maps = viz.conv_activations(model, params, model.init_state(), x)
    assert [(name, a.shape) for name, a in maps] == [("conv1", (6, 8, 8)), ("conv2", (16, 4, 4))]
    w, b = params[0]["w"], params[0]["b"]
    want = ops.conv(jnp.asarray(x[None]), w, b, padding="SAME")[0]
    np.testing.assert_allclose(maps[0][1], want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(viz.first_conv_weights(params), w)


def test_conv_activations_find_every_conv_of_a_residual_net():
    model = models.resnet_small(10, (1, 8, 8), widths=(4, 8))
    _, params = model.init(jax.random.key(0))
    maps = viz.conv_activations(model, params, model.init_state(), np.ones((1, 8, 8), np.float32))
    # stem, block 1 (two convs, identity shortcut), block 2 (two convs + projection)
    assert [a.shape for _, a in maps] == [(4, 8, 8)] * 3 + [(8, 4, 4)] * 3
    with pytest.raises(ValueError, match="one example"):
        viz.conv_activations(model, params, model.init_state(), np.ones((2, 1, 8, 8)))


@pytest.mark.parametrize("vjp", ["custom", "autodiff"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_conv_activations_of_back_to_back_convs_in_either_layout(layout, vjp):
    shape = (-1, 3, 7, 7) if layout == "channels_first" else (-1, 7, 7, 3)
    with default_vjp(vjp):
        layers = [
            Conv(4, 3, layout=layout),
            Conv(2, 3, layout=layout),  # right after another conv: no op between them
            ConvTranspose(5, 2, stride=2, layout=layout),
            Conv(3, 3, layout=layout),
        ]
    model = serial(*layers)
    _, params = model.init(jax.random.key(0), shape)
    x = jax.random.normal(jax.random.key(1), shape[1:])
    maps = viz.conv_activations(model, params, model.init_state(shape), x)
    assert [name for name, _ in maps] == ["conv1", "conv2", "conv_transpose1", "conv3"]
    h = x[None]
    for layer, p, (_, got) in zip(layers, params, maps):
        h = layer.apply(p, h)
        want = h[0] if layout == "channels_first" else jnp.moveaxis(h[0], -1, 0)  # (C, H, W)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_plots_reject_records_without_metrics_and_empty_kernels(tmp_path):
    metrics = tmp_path / train.METRICS_FILE
    metrics.write_text(json.dumps({"epoch": 1, "step": 3, "train_loss": 0.5}) + "\n")
    with pytest.raises(ValueError, match=r"the record of epoch 1 lacks \['train_acc'"):
        viz.plot_curves(metrics, tmp_path / "curves.png")
    with pytest.raises(ValueError, match="must be a non-empty"):
        viz.plot_filters(np.zeros((0, 1, 3, 3)), tmp_path / "filters.png")
    assert sorted(os.listdir(tmp_path)) == [train.METRICS_FILE]


# ---------------------------------------------------------------------------------------------
# Docs and examples


@pytest.mark.parametrize("module", [train, viz], ids=["train", "viz"])
def test_module_doctests_pass(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_examples_are_valid_python():
    examples = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))
    assert [p.name for p in examples] == [
        "compare_vjps.py",
        "train_cifar10.py",
        "train_digits.py",
        "train_mnist.py",
    ]
    for path in examples:
        compile(path.read_text(), str(path), "exec")


@pytest.mark.parametrize(
    "module_name",
    [
        "fconv.train",
        "fconv.train_state",
        "fconv.recipes",
        "fconv.metrics_log",
        "fconv.ops.batch_norm",
        "fconv.checkpoint",
    ],
)
def test_module_docstring_examples_run(module_name):
    import importlib

    result = doctest.testmod(importlib.import_module(module_name))
    assert result.failed == 0
