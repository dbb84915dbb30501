"""Training: a jitted train step, evaluation, and an epoch loop with exact resume.

The pieces, from small to large:

* :class:`TrainState` -- ``params``, ``opt_state``, ``model_state`` (BatchNorm statistics, ``()``
  per stateless layer), the int32 ``step`` and the ``rng`` key *data*; :func:`init_train_state`
  draws a fresh one from a seed. Both live in :mod:`fconv.train_state`.
* :func:`make_train_step` -- ``train_step(state, (x, y)) -> (state, metrics)``, jitted with the
  state donated. All randomness of step ``s`` (dropout, augmentation) comes from
  ``fold_in(rng, s)``, so a run is a pure function of the seed and the data order.
* :func:`make_eval_step`, :func:`evaluate`, :func:`confusion_matrix` -- inference mode
  (``train=False``, running statistics).
* :func:`fit` -- epochs over :func:`fconv.data.batches` shuffled from ``(seed, epoch)``, a test
  evaluation and a ``metrics.jsonl`` line per epoch, checkpoints via :mod:`fconv.checkpoint`, and
  ``resume=True`` that continues bit-for-bit where an uninterrupted run would be.

:func:`fit` builds on modules below this one, whose public names are re-exported here so that
``fconv.train.X`` keeps working for all of them:

* :mod:`fconv.recipes` -- the name registries used by the command line and by :func:`load_run`:
  :func:`build_model`, :func:`make_optimizer`, :func:`load_dataset`, :func:`make_augment`.
* :mod:`fconv.metrics_log` -- :data:`METRICS_FILE` and :func:`read_metrics`.
* :mod:`fconv.runs` -- the run directory (checkpoints, resume) and :func:`load_run`.
* :mod:`fconv.progress` -- the progress bar or lines that :func:`fit` shows.

Example:
    >>> from fconv import data, models, optim
    >>> ds = data.synthetic(64, 32, (1, 8, 8), num_classes=4)
    >>> model = models.lenet5(4, (1, 8, 8))
    >>> history, state = fit(model, ds, epochs=1, batch_size=32, optimizer=optim.adam(1e-3),
    ...                      seed=0, progress=False)
    >>> history[0]["epoch"], int(state.step)
    (1, 2)
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fconv import checkpoint, data, optim
from fconv.losses import accuracy, l2_regularization, softmax_cross_entropy

# The modules fit builds on. Their public names are re-exported (see __all__), so that
# fconv.train.X keeps working for every name that used to be defined here.
from fconv.metrics_log import METRICS_FILE, _append_line, read_metrics
from fconv.optim._checks import _check_real
from fconv.progress import _Progress
from fconv.recipes import (
    AUGMENTATIONS,
    DATASETS,
    FILE_DATASETS,
    MODELS,
    OPTIMIZERS,
    build_model,
    load_dataset,
    make_augment,
    make_optimizer,
)
from fconv.runs import Run, _start_run, load_run
from fconv.train_state import TrainState, _check_int, init_train_state

__all__ = [
    # Defined here.
    "make_train_step",
    "make_train_step_fn",
    "make_eval_step",
    "make_eval_step_fn",
    "evaluate",
    "confusion_matrix",
    "fit",
    # Re-exported from fconv.train_state.
    "TrainState",
    "init_train_state",
    # Re-exported from fconv.metrics_log.
    "METRICS_FILE",
    "read_metrics",
    # Re-exported from fconv.recipes.
    "MODELS",
    "build_model",
    "OPTIMIZERS",
    "make_optimizer",
    "DATASETS",
    "FILE_DATASETS",
    "load_dataset",
    "AUGMENTATIONS",
    "make_augment",
    # Re-exported from fconv.runs.
    "Run",
    "load_run",
]

#: ``loss(logits, labels) -> scalar``, as :func:`make_train_step` and :func:`evaluate` take it.
Loss = Callable[[jax.Array, jax.Array], jax.Array]
#: ``augment(key, x) -> x``, applied to each training batch (:func:`fconv.recipes.make_augment`).
Augment = Callable[[jax.Array, jax.Array], jax.Array]


def _step_keys(state: TrainState) -> tuple[jax.Array, jax.Array]:
    """The (dropout, augmentation) keys of ``state.step``: ``split(fold_in(key, step))``."""
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    dropout_key, augment_key = jax.random.split(key)
    return dropout_key, augment_key


def make_train_step_fn(
    model: Any,
    optimizer: optim.Optimizer,
    *,
    weight_decay: float = 0.0,
    loss: Loss = softmax_cross_entropy,
    augment: Augment | None = None,
) -> Callable[[TrainState, tuple[Any, Any]], tuple[TrainState, dict[str, jax.Array]]]:
    """The body of :func:`make_train_step`, not jitted: for callers that jit it themselves.

    :func:`make_train_step` jits it for one device; :func:`fconv.parallel.make_parallel_train_step`
    jits it with a batch sharded over a device mesh. Arguments, the step and its metrics are as
    documented in :func:`make_train_step`.

    Raises:
        TypeError: If ``weight_decay`` is not a real number.
        ValueError: If ``weight_decay`` is negative or not finite.
    """
    wd = _check_real("weight_decay", weight_decay, lo=0.0)

    def objective(params, model_state, x, y, key):
        logits, new_model_state = model.apply(params, x, rng=key, train=True, state=model_state)
        data_loss = loss(logits, y)
        total = data_loss
        if wd:
            total = total + jnp.float32(0.5 * wd) * l2_regularization(params)
        return total, (data_loss, logits, new_model_state)

    def train_step(state: TrainState, batch):
        x, y = batch
        dropout_key, augment_key = _step_keys(state)
        if augment is not None:
            x = augment(augment_key, x)
        grad_fn = jax.value_and_grad(objective, has_aux=True)
        (_, (data_loss, logits, model_state)), grads = grad_fn(
            state.params, state.model_state, x, y, dropout_key
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optim.apply_updates(state.params, updates)
        metrics = {"loss": data_loss, "accuracy": accuracy(logits, y)}
        new_state = TrainState(params, opt_state, model_state, state.step + 1, state.rng)
        return new_state, metrics

    return train_step


def make_train_step(
    model: Any,
    optimizer: optim.Optimizer,
    *,
    weight_decay: float = 0.0,
    loss: Loss = softmax_cross_entropy,
    augment: Augment | None = None,
) -> Callable[[TrainState, tuple[Any, Any]], tuple[TrainState, dict[str, jax.Array]]]:
    """Builds ``train_step(state, batch) -> (new_state, metrics)``, jitted, ``state`` donated.

    One step: augment ``x`` (if asked), run the model with ``train=True`` and the model state,
    take the gradient of ``loss(logits, y) + weight_decay / 2 * l2_regularization(params)``, and
    apply the optimizer. The model is always given its state (``()`` entries for stateless
    layers come back unchanged), so BatchNorm statistics are threaded through.

    The input ``state``'s buffers are donated: do not use it after the call.

    Args:
        model: A ``Layer`` returning logits ``(N, num_classes)``.
        optimizer: An :class:`fconv.optim.Optimizer`.
        weight_decay: Coefficient ``wd >= 0`` of the L2 penalty ``wd / 2 * sum(w**2)`` over all
            parameters except biases (leaves named ``"b"``): it adds ``wd * w`` to each gradient
            (PyTorch's coupled ``weight_decay``). Default 0. For decoupled decay use
            :func:`fconv.optim.adamw`.
        loss: ``loss(logits, labels) -> scalar``; default :func:`softmax_cross_entropy`.
        augment: Optional ``augment(key, x) -> x`` applied to each batch (e.g.
            ``functools.partial(fconv.data.augment, crop_padding=4, flip=True)``).

    Returns:
        The jitted ``train_step``. ``batch`` is ``(x, y)``: ``x`` float32 ``(N, C, H, W)``, ``y``
        int32 ``(N,)``. ``metrics`` is ``{"loss": data loss, "accuracy": batch accuracy}``, float32
        scalars (the L2 penalty is not included in ``"loss"``).

    Raises:
        TypeError: If ``weight_decay`` is not a real number.
        ValueError: If ``weight_decay`` is negative or not finite.
    """
    return jax.jit(
        make_train_step_fn(model, optimizer, weight_decay=weight_decay, loss=loss, augment=augment),
        donate_argnums=(0,),
    )


def make_eval_step_fn(
    model: Any, *, loss: Loss = softmax_cross_entropy
) -> Callable[[Any, Any, tuple[Any, Any]], dict[str, jax.Array]]:
    """The body of :func:`make_eval_step`, not jitted (``fconv.parallel`` jits it sharded)."""

    def per_example(logits, y):
        return loss(logits[None], y[None])

    def eval_step(params, model_state, batch):
        x, y = batch
        logits, _ = model.apply(params, x, train=False, state=model_state)
        return {
            "logits": logits,
            "loss": jax.vmap(per_example)(logits, y),
            "correct": jnp.argmax(logits, axis=-1) == y,
        }

    return eval_step


def make_eval_step(
    model: Any, *, loss: Loss = softmax_cross_entropy
) -> Callable[[Any, Any, tuple[Any, Any]], dict[str, jax.Array]]:
    """Builds ``eval_step(params, model_state, batch) -> per-example outputs``, jitted.

    Inference mode: ``train=False``, no rng, BatchNorm uses the running statistics in
    ``model_state`` (which is not updated).

    Args:
        model: A ``Layer`` returning logits.
        loss: ``loss(logits, labels) -> scalar`` (mean over the batch); it is applied to each
            example separately. Default :func:`softmax_cross_entropy`.

    Returns:
        The jitted ``eval_step``; ``batch`` is ``(x, y)``. It returns ``{"logits": (N, K),
        "loss": (N,) per-example losses, "correct": (N,) bool}``; per-example outputs let
        callers average over batches of any size (see :func:`evaluate`).
    """
    return jax.jit(make_eval_step_fn(model, loss=loss))


@functools.lru_cache(maxsize=8)
def _cached_train_step(model, optimizer, weight_decay, loss, augment, mesh=None):
    """One jitted step per configuration, so fitting the same objects again (e.g. a resume in
    the same process) reuses the compiled program. With a ``mesh``, the data-parallel step."""
    kwargs = dict(weight_decay=weight_decay, loss=loss, augment=augment)
    if mesh is None:
        return make_train_step(model, optimizer, **kwargs)
    from fconv import parallel  # parallel builds on this module

    return parallel.make_parallel_train_step(model, optimizer, mesh, **kwargs)


@functools.lru_cache(maxsize=16)
def _cached_eval_step(model: Any, loss: Loss, mesh=None):
    if mesh is None:
        return make_eval_step(model, loss=loss)
    from fconv import parallel  # parallel builds on this module

    return parallel.make_parallel_eval_step(model, mesh, loss=loss)


def evaluate(
    model: Any,
    params: Any,
    model_state: Any,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int = 500,
    *,
    loss: Loss = softmax_cross_entropy,
    mesh: Any = None,
) -> tuple[float, float, np.ndarray]:
    """Mean loss, accuracy and predicted classes over a whole split, in inference mode.

    The data is cut into batches of ``min(batch_size, N)`` examples; the last one is padded to
    that size (and the padding ignored), so one compiled shape serves every batch. With a
    ``mesh`` each batch is split over its devices (the batch size rounded up to a multiple of
    the device count, the padding again ignored) and the parameters are replicated; every
    process must pass the same ``x`` and ``y``, and every process gets the same result.

    Args:
        model: A ``Layer`` returning logits ``(N, K)``.
        params: Its parameters.
        model_state: Its state (``model.init_state(...)`` or the trained one).
        x: Images ``(N, C, H, W)`` (already normalised like the training data).
        y: int labels ``(N,)``.
        batch_size: Examples per batch, >= 1; default 500.
        loss: As for :func:`make_eval_step`.
        mesh: Optional ``jax.sharding.Mesh`` from :func:`fconv.parallel.make_mesh`.

    Returns:
        ``(loss, accuracy, predictions)``: Python floats and an int64 array ``(N,)``.

    Raises:
        ValueError: If ``x`` and ``y`` differ in length or are empty.
    """
    batch_size = _check_int("batch_size", batch_size, lo=1)
    x, y = np.asarray(x), np.asarray(y)
    n = int(x.shape[0]) if x.ndim else 0
    if n == 0 or y.shape != (n,):
        raise ValueError(
            f"x and y must hold the same number (>= 1) of examples, got shapes {x.shape} and "
            f"{y.shape}"
        )
    step = _cached_eval_step(model, loss, mesh)
    size = min(batch_size, n)
    if mesh is not None:
        from fconv import parallel  # parallel builds on this module

        size = -(-size // mesh.size) * mesh.size
        params, model_state = parallel.replicate((params, model_state), mesh)
    losses, correct, preds = [], [], []
    for start in range(0, n, size):
        xb, yb = x[start : start + size], y[start : start + size].astype(np.int32)
        m = xb.shape[0]
        if m < size:  # pad the last batch to the compiled shape
            xb = np.concatenate([xb, np.zeros((size - m, *xb.shape[1:]), xb.dtype)])
            yb = np.concatenate([yb, np.zeros(size - m, np.int32)])
        if mesh is not None:
            xb, yb = parallel.shard_batch((xb, yb), mesh)
        out = step(params, model_state, (xb, yb))
        out = jax.device_get(out if mesh is None else parallel.host_local(out))
        losses.append(np.asarray(out["loss"][:m], np.float64))
        correct.append(np.asarray(out["correct"][:m]))
        preds.append(np.argmax(out["logits"][:m], axis=-1).astype(np.int64))
    return (
        float(np.mean(np.concatenate(losses))),
        float(np.mean(np.concatenate(correct))),
        np.concatenate(preds),
    )


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Args:
        y_true: int labels ``(N,)`` in ``[0, num_classes)``.
        y_pred: int predictions ``(N,)`` in ``[0, num_classes)``.
        num_classes: Number of classes, >= 1.

    Returns:
        int64 array ``(num_classes, num_classes)``; entry ``[i, j]`` counts examples of class
        ``i`` predicted as ``j`` (rows: truth, columns: prediction; the diagonal is correct).

    Raises:
        ValueError: If the shapes differ or a label is out of range.

    Example:
        >>> confusion_matrix([0, 1, 1], [0, 1, 0], 2).tolist()
        [[1, 0], [1, 1]]
    """
    num_classes = _check_int("num_classes", num_classes, lo=1)
    t = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(y_pred).astype(np.int64).ravel()
    if np.shape(y_true) != np.shape(y_pred) or np.ndim(y_true) != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-D with the same shape, got {np.shape(y_true)} and "
            f"{np.shape(y_pred)}"
        )
    for name, v in (("y_true", t), ("y_pred", p)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(
                f"{name} must lie in [0, {num_classes}), got range [{v.min()}, {v.max()}]"
            )
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


# --------------------------------------------------------------------------------------------
# fit.


def _fit_mesh(devices: int | None):
    """The data-parallel mesh of :func:`fit`, or None for the single-device step."""
    if devices is not None:
        devices = _check_int("devices", devices, lo=1)
    if jax.process_count() == 1 and (devices or jax.device_count()) == 1:
        return None
    from fconv import parallel  # parallel builds on this module

    return parallel.make_mesh(devices)


def fit(
    model: Any,
    dataset: data.Dataset,
    *,
    epochs: int,
    batch_size: int,
    optimizer: optim.Optimizer | Mapping[str, Any],
    seed: int = 0,
    out_dir: str | os.PathLike[str] | None = None,
    augment: Augment | None = None,
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int = 1,
    keep: int | None = 3,
    log: Callable[[dict[str, Any]], None] | None = None,
    weight_decay: float = 0.0,
    loss: Loss = softmax_cross_entropy,
    normalize: bool = False,
    eval_batch_size: int = 500,
    config: Mapping[str, Any] | None = None,
    devices: int | None = None,
) -> tuple[list[dict[str, Any]], TrainState]:
    """Trains ``model`` on ``dataset`` for ``epochs`` epochs, evaluating after each.

    Epoch ``e`` (0-based) visits the training set in the order of
    ``fconv.data.batches(..., seed=seed, epoch=e)`` (the last ``N % batch_size`` examples of each
    shuffle are dropped, so every step has one shape). Randomness of step ``s`` (dropout,
    augmentation) comes from ``fold_in(training key, s)``, the training key drawn from ``seed``.
    After each epoch the test split is evaluated and a record
    ``{epoch, step, train_loss, train_acc, test_loss, test_acc, images_per_sec, seconds}`` is
    appended to the history (and to ``out_dir/metrics.jsonl``); ``images_per_sec`` counts the
    training part of the epoch only (the first epoch includes compilation), ``seconds`` the
    whole epoch.

    Resume is exact: ``fit(epochs=1)`` then ``fit(epochs=2, resume=True)`` ends with the same
    parameters, bit for bit, as ``fit(epochs=2)`` -- provided the optimizer's schedule does not
    depend on ``epochs`` (a cosine schedule over ``epochs`` epochs does) and the number of
    devices is unchanged.

    Data parallel (:mod:`fconv.parallel`): with more than one device, each global batch of
    ``batch_size`` examples is split evenly over the devices and the state replicated; the
    result equals the single-device run up to floating-point summation order. After
    :func:`fconv.parallel.initialize_distributed` the devices of every process take part:
    call ``fit`` with the same arguments in every process; each one feeds only its own rows of
    every (deterministic) global batch, evaluates the test split locally, and only process 0
    prints progress and writes to ``out_dir`` (which must be on a filesystem every process can
    read for ``resume``; process 0 reads the checkpoint and sends it to the others, and only
    its history includes the epochs of the earlier run).

    Args:
        model: A ``Layer`` mapping ``(N, C, H, W)`` to logits ``(N, num_classes)``.
        dataset: A :class:`fconv.data.Dataset`.
        epochs: Total number of epochs, >= 1 (a resumed run counts the epochs already done).
        batch_size: Training examples per step, ``1 <= batch_size <= N_train``.
        optimizer: An :class:`fconv.optim.Optimizer`, or a dict of :func:`make_optimizer`
            keyword arguments (``{"name": "adam", "learning_rate": 1e-3, ...}``), which is also
            recorded in the checkpoint config; its ``total_steps`` defaults to the run's length.
        seed: Non-negative int seeding initialisation, shuffling and per-step randomness.
        out_dir: Directory for ``metrics.jsonl`` and checkpoints; None (default) writes nothing.
        augment: Optional ``augment(key, x) -> x`` applied to every training batch.
        progress: Show progress (default True): a tqdm bar per epoch when tqdm is installed and
            stderr is a terminal, else one printed line per epoch. False prints nothing.
        resume: Continue from the latest checkpoint in ``out_dir`` (with the next epoch); the
            metrics file is trimmed to the epochs that checkpoint covers. Without a checkpoint
            the run starts from scratch, and the metrics file is emptied of the earlier records.
        overwrite: Delete the checkpoints and metrics of an earlier run in ``out_dir`` instead
            of raising ``FileExistsError``. Default False.
        checkpoint_every: Save a checkpoint every this many epochs (and after the last); default 1.
        keep: Number of most recent checkpoints kept, >= 1, or None to keep all; default 3.
        log: Optional callable given each epoch's record.
        weight_decay: L2 coefficient for :func:`make_train_step`; default 0.
        loss: ``loss(logits, labels) -> scalar``; default softmax cross-entropy.
        normalize: Standardise train and test images per channel with the training set's
            mean and std (:func:`fconv.data.compute_mean_std`), recorded in the checkpoint
            config as ``"normalization"``. Default False. The returned parameters then expect
            standardised inputs: evaluate on ``data.normalize(x, mean, std)`` (a loaded
            :class:`Run` does it with ``run.normalize(x)``).
        eval_batch_size: Batch size of the test evaluation; default 500.
        config: Extra JSON-serialisable entries for the checkpoint config (e.g. ``{"model":
            "lenet5"}``); :func:`load_run` needs ``"model"`` (and ``"model_kwargs"`` if any).
        devices: Number of devices to train on (the total over all processes), >= 1. Default
            None: every device (``jax.device_count()``); with a single device this is the
            plain single-device step. ``batch_size`` must be divisible by it.

    Returns:
        ``(history, state)``: the list of epoch records (including those of a resumed run's
        earlier epochs) and the final :class:`TrainState`.

    Raises:
        TypeError: An argument of the wrong type (e.g. an ``optimizer`` without callable
            ``init`` and ``update`` that is not a dict). All arguments are checked before
            ``out_dir`` is touched.
        ValueError: Bad arguments, ``resume`` without ``out_dir``, a ``batch_size`` not
            divisible by the number of devices, or a checkpoint that does not match this run
            (other seed, batch size, dataset, model or parameter shapes).
        FileExistsError: ``out_dir`` holds an earlier run and neither ``resume`` nor
            ``overwrite`` is set.
    """
    # Every argument is checked before anything on disk is touched or any training starts.
    epochs = _check_int("epochs", epochs, lo=1)
    seed = _check_int("seed", seed, lo=0)
    checkpoint_every = _check_int("checkpoint_every", checkpoint_every, lo=1)
    keep = None if keep is None else _check_int("keep", keep, lo=1)
    eval_batch_size = _check_int("eval_batch_size", eval_batch_size, lo=1)
    weight_decay = _check_real("weight_decay", weight_decay, lo=0.0)
    if not isinstance(optimizer, Mapping) and not (
        callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))
    ):
        raise TypeError(
            "`optimizer` must be an optimizer with init and update (e.g. fconv.optim.adam(1e-3)) "
            f'or a dict of make_optimizer arguments (e.g. {{"name": "adam", "learning_rate": '
            f"1e-3}}), got {optimizer!r}"
        )
    n_train = dataset.num_train
    batch_size = _check_int("batch_size", batch_size, lo=1)
    if batch_size > n_train:
        raise ValueError(
            f"`batch_size` ({batch_size}) must be <= the number of training examples ({n_train})"
        )
    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir, the directory holding the checkpoints")
    steps_per_epoch = data.num_batches(n_train, batch_size)
    mesh = _fit_mesh(devices)  # None: the single-device step
    if mesh is not None:
        from fconv import parallel  # parallel builds on this module

        rows = parallel.local_rows(batch_size, mesh)  # checks batch_size % devices
    main_process = jax.process_index() == 0

    cfg: dict[str, Any] = dict(config or {})
    if isinstance(optimizer, Mapping):
        spec = dict(optimizer)
        spec.setdefault("total_steps", epochs * steps_per_epoch)
        cfg["optimizer"] = spec
        optimizer = make_optimizer(**spec)
    x_train, x_test = dataset.x_train, dataset.x_test
    if normalize:
        mean, std = data.compute_mean_std(x_train)
        x_train = data.normalize(x_train, mean, std).astype(np.float32)
        x_test = data.normalize(x_test, mean, std).astype(np.float32)
        cfg["normalization"] = {"mean": mean.tolist(), "std": std.tolist()}
    y_train = dataset.y_train.astype(np.int32)
    cfg.update(
        dataset=dataset.name,
        num_classes=int(dataset.num_classes),
        input_shape=list(dataset.input_shape),
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        weight_decay=float(weight_decay),
        devices=1 if mesh is None else int(mesh.size),
        processes=jax.process_count(),
    )
    json.dumps(cfg)  # fail now, not after the first epoch, on a non-JSON config

    state = init_train_state(model, optimizer, dataset.input_shape, seed)
    start_epoch, history = 0, []
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        state, start_epoch, history = _start_run(out_dir, state, cfg, resume, overwrite)

    train_step = _cached_train_step(model, optimizer, float(weight_decay), loss, augment, mesh)
    if mesh is None:

        def feed(idx):
            return x_train[idx], y_train[idx]

    else:
        state = parallel.replicate(state, mesh)

        def feed(idx):  # this process's rows of the global batch only
            mine = idx[rows]
            return parallel.shard_local_batch((x_train[mine], y_train[mine]), mesh, batch_size)

    bar = _Progress(progress and main_process, epochs)
    refresh = max(1, steps_per_epoch // 20)

    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        bar.start(epoch + 1, steps_per_epoch)
        loss_sum = jnp.zeros((), jnp.float32)
        acc_sum = jnp.zeros((), jnp.float32)
        pending = 0
        for i, (idx, _) in enumerate(
            data.batches(np.arange(n_train), y_train, batch_size, seed=seed, epoch=epoch)
        ):
            state, metrics = train_step(state, feed(idx))
            if mesh is not None:
                metrics = parallel.host_local(metrics)
            loss_sum = loss_sum + metrics["loss"]
            acc_sum = acc_sum + metrics["accuracy"]
            pending += 1
            if bar.bar is not None and (pending == refresh or i == steps_per_epoch - 1):
                ips = (i + 1) * batch_size / (time.perf_counter() - t0)
                bar.update(pending, float(metrics["loss"]), float(metrics["accuracy"]), ips)
                pending = 0
        train_loss = float(loss_sum) / steps_per_epoch  # waits for the last step
        train_acc = float(acc_sum) / steps_per_epoch
        train_seconds = time.perf_counter() - t0
        test_loss, test_acc, _ = evaluate(  # split over the devices, like training
            model,
            state.params,
            state.model_state,
            x_test,
            dataset.y_test,
            eval_batch_size,
            loss=loss,
            mesh=mesh,
        )
        record = {
            "epoch": epoch + 1,
            "step": int(state.step),
            "train_loss": train_loss,
            "train_acc": train_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "images_per_sec": steps_per_epoch * batch_size / train_seconds,
            "seconds": time.perf_counter() - t0,
        }
        history.append(record)
        if out_dir is not None and main_process:
            _append_line(os.path.join(out_dir, METRICS_FILE), record)
            if (epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs:
                saved = state if mesh is None else parallel.host_local(state)
                checkpoint.save(
                    out_dir,
                    params=saved.params,
                    opt_state=saved.opt_state,
                    model_state=saved.model_state,
                    step=int(state.step),
                    config={**cfg, "epoch": epoch + 1, "test_acc": test_acc},
                    keep=keep,
                    overwrite=True,
                )
        bar.end(record)
        if log is not None:
            log(record)
    return history, state
