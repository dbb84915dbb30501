"""Run directories on disk: set up and resumed by :func:`fconv.train.fit`, or a finished one loaded.

A run directory holds the checkpoints of :mod:`fconv.checkpoint` (``ckpt_*.json`` + ``.npz``,
each with the run's config) and the per-epoch :data:`fconv.metrics_log.METRICS_FILE`.

* :func:`_start_run` -- what :func:`fconv.train.fit` does with its ``out_dir`` before the first
  epoch: refuse (or, with ``overwrite``, clear) an earlier run, or with ``resume`` restore the
  latest checkpoint into a :class:`fconv.train_state.TrainState` (checking that it belongs to
  this run) and trim the metrics file to the epochs it covers. With several processes only
  process 0 touches the directory and sends the result (or its error) to the others.
* :class:`Run`, :func:`load_run` -- a model rebuilt from a checkpoint's config (through
  :func:`fconv.recipes.build_model`) with its parameters and model state, for evaluation and
  plots (``fconv eval``, ``fconv plot``).

``Run`` and ``load_run`` are also re-exported as ``fconv.train.Run`` and ``fconv.train.load_run``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fconv import checkpoint, data
from fconv.atomic_io import write_bytes_atomic
from fconv.metrics_log import METRICS_FILE, read_metrics
from fconv.recipes import build_model
from fconv.train_state import TrainState, _batch_shape

__all__ = ["Run", "load_run"]

# --------------------------------------------------------------------------------------------
# Preparing and resuming the run directory of fit.

#: Config entries a resumed run must share with its checkpoint (where both record them).
_RESUME_KEYS = ("dataset", "num_classes", "input_shape", "seed", "batch_size", "model")


def _prepare_out_dir(out_dir: str, resume: bool, overwrite: bool) -> None:
    """Creates ``out_dir``; unless resuming, refuses an earlier run in it (``FileExistsError``)
    or, with ``overwrite``, deletes that run's checkpoints and metrics file."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"`out_dir` {out_dir!r} exists and is not a directory")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:  # e.g. a parent that is a file, or no permission
        raise ValueError(f"cannot create `out_dir` {out_dir!r}: {e.strerror or e}") from e
    metrics_path = os.path.join(out_dir, METRICS_FILE)
    steps = checkpoint.all_steps(out_dir)
    if resume or not (steps or os.path.exists(metrics_path)):
        return
    if not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds a run ({METRICS_FILE} or checkpoints); resume it, or "
            f"start over with overwrite, or choose another output directory"
        )
    for step in steps:
        for path in checkpoint.paths_for(out_dir, step):
            os.remove(path)
    if os.path.exists(metrics_path):
        os.remove(metrics_path)


def _restore(
    out_dir: str, template: TrainState, config: Mapping[str, Any]
) -> tuple[TrainState, int]:
    """Loads the latest checkpoint into ``template``'s structure; returns (state, epoch)."""
    like = {
        "params": template.params,
        "opt_state": template.opt_state,
        "model_state": template.model_state,
    }
    ckpt = checkpoint.restore(out_dir, like=like)
    saved = ckpt.config or {}
    for key in _RESUME_KEYS:
        if key in saved and key in config and saved[key] != config[key]:
            raise ValueError(
                f"cannot resume the run in {out_dir}: it was trained with {key}={saved[key]!r}, "
                f"this run has {key}={config[key]!r}"
            )
    if "epoch" not in saved:
        raise ValueError(f"cannot resume: the latest checkpoint in {out_dir} records no epoch")
    state = TrainState(
        params=jax.tree.map(jnp.asarray, ckpt.params),
        opt_state=jax.tree.map(jnp.asarray, ckpt.opt_state),
        model_state=jax.tree.map(jnp.asarray, ckpt.model_state),
        step=jnp.asarray(ckpt.step, jnp.int32),
        rng=template.rng,
    )
    return state, int(saved["epoch"])


def _history_up_to(out_dir: str, epoch: int) -> list[dict[str, Any]]:
    """Records of epochs <= ``epoch``; rewrites the metrics file to hold exactly those."""
    path = os.path.join(out_dir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    kept = [
        r for r in read_metrics(path) if isinstance(r.get("epoch"), int) and r["epoch"] <= epoch
    ]
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept)
    write_bytes_atomic(path, text.encode("utf-8"))
    return kept


#: Exception types process 0 can report to the other processes in :func:`_start_run`.
_SHARED_ERRORS = (FileExistsError, FileNotFoundError, ValueError)


def _start_run(
    out_dir: str, state: TrainState, cfg: dict[str, Any], resume: bool, overwrite: bool
) -> tuple[TrainState, int, list[dict[str, Any]]]:
    """Prepares ``out_dir`` and resumes from it: ``(state, start_epoch, history)``.

    With several processes only process 0 touches the directory; it sends the (restored)
    state and epoch to the others -- or its error, which they raise too (same type and
    message), so that every process stops instead of waiting for process 0.
    """
    start_epoch, history, error = 0, [], None
    if jax.process_index() == 0:
        try:
            _prepare_out_dir(out_dir, resume, overwrite)
            if resume and checkpoint.latest_step(out_dir) is not None:
                state, start_epoch = _restore(out_dir, state, cfg)
                history = _history_up_to(out_dir, start_epoch)
            elif resume:  # nothing to resume from: start over, without the stale epoch records
                _history_up_to(out_dir, 0)
        except Exception as e:  # noqa: BLE001 - re-raised below, after telling the others
            error = e
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        code = 0  # no error; else 1 + the index of its kind in _SHARED_ERRORS + (Exception,)
        if error is not None:
            kinds = (*_SHARED_ERRORS, Exception)
            code = 1 + next(i for i, kind in enumerate(kinds) if isinstance(error, kind))
        text = np.zeros(1024, np.uint8)
        encoded = str(error or "").encode("utf-8")[: text.size]
        text[: len(encoded)] = np.frombuffer(encoded, np.uint8)
        code, text, state, start_epoch = multihost_utils.broadcast_one_to_all(
            (np.int32(code), text, state, np.int32(start_epoch))
        )
        if code and error is None:
            kind = (*_SHARED_ERRORS, RuntimeError)[int(code) - 1]  # other kinds: RuntimeError
            message = bytes(np.asarray(text)).rstrip(b"\0").decode("utf-8", "replace")
            raise kind(f"{message} (reported by process 0)")
        state = jax.tree.map(jnp.asarray, state)
        start_epoch = int(start_epoch)
    if error is not None:
        raise error
    return state, start_epoch, history


# --------------------------------------------------------------------------------------------
# Loading a finished run.


class Run(NamedTuple):
    """A model rebuilt from a checkpoint (see :func:`load_run`).

    Attributes:
        model: The ``Layer``, built from the config's ``"model"`` and ``"model_kwargs"``.
        params: Parameters (numpy leaves).
        model_state: Model state (numpy leaves).
        config: The checkpoint's config dict.
        step: The step it was saved at.
    """

    model: Any
    params: Any
    model_state: Any
    config: dict[str, Any]
    step: int

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """``x`` standardised as in training (unchanged if training did not normalise)."""
        norm = self.config.get("normalization")
        if not norm:
            return np.asarray(x, np.float32)
        mean = np.asarray(norm["mean"], np.float32)
        std = np.asarray(norm["std"], np.float32)
        return data.normalize(np.asarray(x, np.float32), mean, std).astype(np.float32)


def load_run(directory_or_file: str | os.PathLike[str], *, step: int | None = None) -> Run:
    """Rebuilds the model of a :func:`fconv.train.fit` checkpoint and loads its parameters.

    The config must name the model (``"model"``, optional ``"model_kwargs"``), as written by
    ``fconv train`` or by :func:`fconv.train.fit` given ``config={"model": ...}``. Only the
    parameters and the model state (BatchNorm statistics) are read: the optimizer and its state
    are not needed.

    Args:
        directory_or_file: A run directory or one checkpoint file.
        step: The step to load from a directory; default the latest.

    Raises:
        FileNotFoundError: No checkpoint found.
        ValueError: The config lacks the entries above or does not match the checkpoint.
    """
    path = os.fspath(directory_or_file)
    meta_path = path
    if os.path.isdir(path):
        found = checkpoint.latest_step(path) if step is None else step
        if found is None:
            raise FileNotFoundError(f"no complete checkpoint (ckpt_*.json + .npz) in {path}")
        meta_path = checkpoint.paths_for(path, found)[1]
    elif path.endswith(".npz"):
        meta_path = path[: -len(".npz")] + ".json"
    if not os.path.isfile(meta_path):
        raise FileNotFoundError(f"checkpoint metadata {meta_path} not found")
    try:
        with open(meta_path, encoding="utf-8") as f:
            cfg = json.load(f).get("config") or {}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise ValueError(f"checkpoint {meta_path} is corrupt: {e}") from e
    missing = [k for k in ("model", "num_classes", "input_shape") if k not in cfg]
    if missing:
        raise ValueError(
            f"checkpoint {meta_path} config lacks {missing}: it was not written by `fconv "
            f"train` (give fit config={{'model': name}} for loadable runs)"
        )
    model = build_model(
        cfg["model"], cfg["num_classes"], cfg["input_shape"], **cfg.get("model_kwargs", {})
    )
    shape = _batch_shape(cfg["input_shape"])
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), shape)[1])  # shapes only
    like = {"params": params, "model_state": jax.eval_shape(lambda: model.init_state(shape))}
    # The optimizer state is not rebuilt (nor its settings needed): evaluation uses none.
    ckpt = checkpoint.restore(
        path,
        step=step if os.path.isdir(path) else None,
        like=like,
        trees=("params", "model_state"),
    )
    return Run(model, ckpt.params, ckpt.model_state, cfg, ckpt.step)
