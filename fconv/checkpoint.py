"""Checkpoints: pytrees of arrays saved as ``.npz`` plus a JSON metadata file.

A checkpoint for step ``s`` is two files in one directory:

* ``ckpt_{s:08d}.npz`` -- every leaf of ``params``, ``opt_state`` and ``model_state`` as a
  numpy array, keyed by the tree name plus :func:`jax.tree_util.keystr` of its path, e.g.
  ``params['conv1']['w']`` or ``opt_state[0].mu['conv1']['w']``. Dtypes numpy cannot store
  natively (``bfloat16`` and the other ``ml_dtypes``) are stored as an unsigned-integer view
  of the same width and restored from the dtype name in the metadata.
* ``ckpt_{s:08d}.json`` -- the step, the user's ``config``, for each tree its structure string
  (``str(tree_structure)``), a JSON skeleton for rebuilding it, and every leaf's key, shape and
  dtype, and the sha256 of the npz bytes.

Both are written atomically (temporary file in the same directory, fsync, ``os.replace``), the
JSON last: a checkpoint is complete exactly when its JSON exists. :func:`restore` verifies the
checksum before returning anything and loads with ``allow_pickle=False``.

Rebuilding trees: dicts (string or int keys), lists, tuples and None are rebuilt from the
skeleton in the metadata. Any other pytree node -- a NamedTuple optimizer state, a dataclass, a
custom node -- needs a template: pass ``like={"opt_state": template, ...}`` to :func:`restore`.
A template fixes the exact tree structure; the stored leaves must match its leaf paths, shapes
and dtypes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import ml_dtypes
import numpy as np

from fconv.atomic_io import save_json_atomic, write_bytes_atomic

__all__ = ["Checkpoint", "save", "restore", "all_steps", "latest_step", "latest", "paths_for"]

_FORMAT = "fconv.checkpoint"
_VERSION = 1
_TREES = ("params", "opt_state", "model_state")
_NAME_RE = re.compile(r"^ckpt_(\d{8,})\.json$")


class Checkpoint(NamedTuple):
    """A restored checkpoint.

    Attributes:
        params: The parameter tree (leaves are numpy arrays).
        opt_state: The optimizer-state tree, or None if none was saved.
        model_state: The model-state tree (e.g. batch-norm statistics), or None.
        step: The training step the checkpoint was saved at.
        config: The JSON config saved with it, or None.
    """

    params: Any
    opt_state: Any
    model_state: Any
    step: int
    config: Any


def paths_for(directory: str | os.PathLike[str], step: int) -> tuple[str, str]:
    """The ``(npz_path, json_path)`` of the checkpoint for ``step`` in ``directory``.

    Args:
        directory: Checkpoint directory.
        step: Non-negative step.

    Returns:
        The two paths, ``ckpt_{step:08d}.npz`` and ``ckpt_{step:08d}.json``.

    Raises:
        TypeError: If ``step`` is not an int.
        ValueError: If ``step`` is negative.
    """
    step = _check_step(step)
    base = os.path.join(os.fspath(directory), f"ckpt_{step:08d}")
    return base + ".npz", base + ".json"


def _check_step(step: object) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"step must be an int, got {step!r} of type {type(step).__name__}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return int(step)


# --------------------------------------------------------------------------------------------
# Tree encoding.


def _skeleton(node: Any) -> Any:
    """JSON skeleton of a tree whose leaves were replaced by their flat indices.

    Returns None when the tree holds a node type that cannot be rebuilt without a template;
    the caller records the offending type name separately (see :func:`_opaque_type`).
    """
    if node is None:
        return {"none": None}
    if type(node) is int:
        return {"leaf": node}
    if type(node) is dict:
        items = []
        for k, v in node.items():
            if type(k) not in (str, int):
                return None
            sub = _skeleton(v)
            if sub is None:
                return None
            items.append([k, sub])
        return {"dict": items}
    if type(node) in (list, tuple):
        subs = [_skeleton(v) for v in node]
        if any(s is None for s in subs):
            return None
        return {type(node).__name__: subs}
    return None


def _opaque_type(node: Any) -> str | None:
    """Name of the first node type :func:`_skeleton` cannot encode, or None."""
    if node is None or type(node) is int:
        return None
    if type(node) is dict:
        for k, v in node.items():
            if type(k) not in (str, int):
                return f"dict with a key of type {type(k).__name__}"
            found = _opaque_type(v)
            if found:
                return found
        return None
    if type(node) in (list, tuple):
        for v in node:
            found = _opaque_type(v)
            if found:
                return found
        return None
    return type(node).__qualname__


def _unskeleton(skel: Any, leaves: list) -> Any:
    ((kind, value),) = skel.items()
    if kind == "none":
        return None
    if kind == "leaf":
        return leaves[value]
    if kind == "dict":
        return {k: _unskeleton(v, leaves) for k, v in value}
    if kind == "list":
        return [_unskeleton(v, leaves) for v in value]
    if kind == "tuple":
        return tuple(_unskeleton(v, leaves) for v in value)
    raise ValueError(f"unknown skeleton node {kind!r}")


def _is_native(dtype: np.dtype) -> bool:
    """Whether ``np.save`` round-trips ``dtype`` without pickling (bfloat16 does not)."""
    try:
        return dtype.kind in "biufc" and np.dtype(dtype.str) == dtype
    except TypeError:
        return False


def _is_ml_dtype(dtype: np.dtype) -> bool:
    """Whether ``dtype`` is one of the ``ml_dtypes`` (bfloat16, float8_*, int4, ...)."""
    return dtype.type.__module__.split(".")[0] == "ml_dtypes" and dtype.itemsize in (1, 2, 4, 8)


def _lookup_dtype(name: str) -> np.dtype:
    try:
        return np.dtype(name)
    except TypeError:
        pass
    if hasattr(ml_dtypes, name):
        return np.dtype(getattr(ml_dtypes, name))
    raise ValueError(f"unknown dtype {name!r}")


def _flatten(name: str, tree: Any) -> tuple[list[tuple[str, np.ndarray]], Any]:
    """``[(key, array)]`` in flatten order, and the treedef."""
    with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    out = []
    for path, leaf in with_path:
        key = name + jax.tree_util.keystr(path)
        arr = np.asarray(leaf)
        if not (_is_native(arr.dtype) or _is_ml_dtype(arr.dtype)):
            raise TypeError(
                f"{key}: leaf of type {type(leaf).__name__} (dtype {arr.dtype}) is not a numeric "
                "array; checkpoints store bool, integer, float and complex arrays only"
            )
        out.append((key, arr))
    return out, treedef


def _leaf_spec(leaf: Any) -> tuple[tuple[int, ...], np.dtype]:
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return tuple(int(d) for d in leaf.shape), np.dtype(leaf.dtype)
    arr = np.asarray(leaf)
    return arr.shape, arr.dtype


# --------------------------------------------------------------------------------------------
# Listing.


def all_steps(directory: str | os.PathLike[str]) -> list[int]:
    """Steps of the complete checkpoints in ``directory``, ascending.

    A checkpoint is complete when both its ``.json`` and ``.npz`` exist; npz files without
    JSON (an interrupted save) and temporary files are ignored.

    Args:
        directory: Checkpoint directory; a missing directory has no checkpoints.

    Returns:
        The sorted list of steps.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return []
    names = set(os.listdir(directory))
    steps = []
    for name in names:
        m = _NAME_RE.match(name)
        if m and name[: -len(".json")] + ".npz" in names:
            steps.append(int(m.group(1)))
    return sorted(steps)


def latest_step(directory: str | os.PathLike[str]) -> int | None:
    """The highest step with a complete checkpoint in ``directory``, or None if there is none.

    Args:
        directory: Checkpoint directory.

    Returns:
        The step, or None.
    """
    steps = all_steps(directory)
    return steps[-1] if steps else None


def latest(directory: str | os.PathLike[str]) -> str | None:
    """Path of the ``.npz`` of the latest complete checkpoint in ``directory``, or None.

    Args:
        directory: Checkpoint directory.

    Returns:
        The path, or None if ``directory`` holds no complete checkpoint.
    """
    step = latest_step(directory)
    return None if step is None else paths_for(directory, step)[0]


# --------------------------------------------------------------------------------------------
# Save.


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def save(
    directory: str | os.PathLike[str],
    *,
    params: Any,
    opt_state: Any = None,
    model_state: Any = None,
    step: int,
    config: dict | None = None,
    keep: int | None = None,
    overwrite: bool = False,
) -> str:
    """Save a checkpoint for ``step`` in ``directory`` (created if missing).

    Writes ``ckpt_{step:08d}.npz`` and then ``ckpt_{step:08d}.json``, each atomically; the
    checkpoint counts as complete only once the JSON exists, so a crash leaves either no new
    checkpoint or a complete one, and earlier checkpoints intact.

    Args:
        directory: Checkpoint directory.
        params: Parameter pytree; leaves are arrays or numbers (JAX or numpy).
        opt_state: Optimizer-state pytree, or None (default).
        model_state: Model-state pytree, or None (default).
        step: Non-negative training step; names the files.
        config: JSON-serialisable configuration stored in the metadata, or None (default).
        keep: If given (>= 1), after saving keep ``keep`` complete checkpoints: the one just
            written and the ``keep - 1`` highest-step others (so saving a lower step never
            deletes what it wrote); delete the rest, and any leftover npz without JSON below
            ``step``. Default None keeps everything.
        overwrite: If False (default), saving a step that already has a checkpoint raises
            ``FileExistsError``; if True it is replaced (its JSON is removed first, so the old
            checkpoint is never mistaken for the new one).

    Returns:
        The path of the written ``.npz``.

    Raises:
        TypeError: If ``step`` or ``keep`` is not an int, ``config`` is not JSON-serialisable,
            or a leaf is not a numeric array.
        ValueError: If ``step`` is negative, ``keep`` < 1, or two leaves map to the same key.
        FileExistsError: If the step exists and ``overwrite`` is False.
    """
    step = _check_step(step)
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int)):
        raise TypeError(f"keep must be an int or None, got {keep!r}")
    if keep is not None and keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    try:
        json.dumps(config)
    except (TypeError, ValueError) as e:
        raise TypeError(f"config must be JSON-serialisable, got {config!r}: {e}") from e

    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    npz_path, json_path = paths_for(directory, step)
    if os.path.exists(json_path):
        if not overwrite:
            raise FileExistsError(
                f"checkpoint for step {step} already exists at {json_path}; pass overwrite=True"
            )
        _remove(json_path)

    arrays: dict[str, np.ndarray] = {}
    trees_meta = {}
    for name, tree in zip(_TREES, (params, opt_state, model_state), strict=True):
        leaves, treedef = _flatten(name, tree)
        index_tree = jax.tree_util.tree_unflatten(treedef, list(range(len(leaves))))
        leaf_meta = []
        for key, arr in leaves:
            if key in arrays:
                raise ValueError(f"two leaves map to the same checkpoint key {key!r}")
            stored = arr if _is_native(arr.dtype) else arr.view(f"u{arr.dtype.itemsize}")
            arrays[key] = stored
            leaf_meta.append(
                {
                    "key": key,
                    "shape": list(arr.shape),
                    "dtype": arr.dtype.name,
                    "stored_dtype": stored.dtype.name,
                }
            )
        trees_meta[name] = {
            "structure": str(treedef),
            "skeleton": _skeleton(index_tree),
            "opaque_type": _opaque_type(index_tree),
            "leaves": leaf_meta,
        }

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    write_bytes_atomic(npz_path, data)
    meta = {
        "format": _FORMAT,
        "version": _VERSION,
        "step": step,
        "config": config,
        "npz": os.path.basename(npz_path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "trees": trees_meta,
    }
    save_json_atomic(json_path, meta)

    if keep is not None:
        others = [s for s in all_steps(directory) if s != step]  # ascending
        for old in others[: len(others) - (keep - 1)]:
            old_npz, old_json = paths_for(directory, old)
            _remove(old_json)  # JSON first: the checkpoint stops being complete at once
            _remove(old_npz)
        for fname in os.listdir(directory):
            m = re.match(r"^ckpt_(\d{8,})\.npz$", fname)
            if m and int(m.group(1)) < step:
                if not os.path.exists(os.path.join(directory, fname[: -len(".npz")] + ".json")):
                    _remove(os.path.join(directory, fname))
    return npz_path


# --------------------------------------------------------------------------------------------
# Restore.


def _resolve(directory_or_file: str, step: int | None) -> tuple[str, str]:
    path = os.fspath(directory_or_file)
    if os.path.isdir(path):
        if step is None:
            step = latest_step(path)
            if step is None:
                raise FileNotFoundError(f"no complete checkpoint (ckpt_*.json + .npz) in {path}")
        npz_path, json_path = paths_for(path, step)
    else:
        base, ext = os.path.splitext(path)
        if ext not in (".npz", ".json"):
            raise ValueError(
                f"directory_or_file must be a directory or a ckpt_*.npz/.json file, got {path!r}"
            )
        npz_path, json_path = base + ".npz", base + ".json"
    if not os.path.isfile(json_path):
        raise FileNotFoundError(
            f"checkpoint metadata {json_path} not found (missing or incomplete checkpoint)"
        )
    if not os.path.isfile(npz_path):
        raise FileNotFoundError(f"checkpoint data {npz_path} not found")
    return npz_path, json_path


def _check_meta(meta: dict[str, Any], json_path: str, wanted: Sequence[str]) -> None:
    """Raises ``ValueError("checkpoint ... is corrupt ...")`` unless ``meta`` has the entries
    :func:`restore` reads (as :func:`save` writes them) for the trees in ``wanted``."""

    def corrupt(what: str) -> ValueError:
        return ValueError(f"checkpoint {json_path} is corrupt: {what}")

    if not isinstance(meta.get("sha256"), str):
        raise corrupt('no "sha256" checksum string')
    step = meta.get("step")
    if isinstance(step, bool) or not isinstance(step, int):
        raise corrupt(f'"step" must be an int, got {step!r}')
    if "config" not in meta:
        raise corrupt('no "config" entry')
    trees = meta.get("trees")
    if not isinstance(trees, dict):
        raise corrupt('no "trees" mapping')
    for name in wanted:
        tmeta = trees.get(name)
        if not isinstance(tmeta, dict) or "skeleton" not in tmeta:
            raise corrupt(f'no metadata (with a "skeleton") for tree {name!r}')
        leaves = tmeta.get("leaves")
        if not isinstance(leaves, list) or not all(
            isinstance(leaf, dict)
            and isinstance(leaf.get("key"), str)
            and isinstance(leaf.get("shape"), list)
            and isinstance(leaf.get("dtype"), str)
            and isinstance(leaf.get("stored_dtype"), str)
            for leaf in leaves
        ):
            raise corrupt(
                f'tree {name!r} needs "leaves": a list of {{"key", "shape", "dtype", '
                '"stored_dtype"} entries'
            )


def _rebuild_like(name: str, template: Any, stored: dict[str, np.ndarray], keys: list[str]):
    with_path, treedef = jax.tree_util.tree_flatten_with_path(template)
    want = [name + jax.tree_util.keystr(p) for p, _ in with_path]
    missing = [k for k in want if k not in stored]
    if missing:
        raise ValueError(
            f"like[{name!r}] does not match the checkpoint: leaf {missing[0]} is not in it "
            f"(the checkpoint's {name} leaves are {keys})"
        )
    extra = [k for k in keys if k not in set(want)]
    if extra:
        raise ValueError(
            f"like[{name!r}] does not match the checkpoint: checkpoint leaf {extra[0]} has no "
            f"counterpart in the template"
        )
    leaves = []
    for key, (_, t_leaf) in zip(want, with_path, strict=True):
        shape, dtype = _leaf_spec(t_leaf)
        arr = stored[key]
        if arr.shape != shape or arr.dtype != dtype:
            raise ValueError(
                f"like[{name!r}] does not match the checkpoint at leaf {key}: template has "
                f"shape {shape} dtype {dtype}, checkpoint has shape {arr.shape} dtype {arr.dtype}"
            )
        leaves.append(arr)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _check_trees(trees: Any) -> tuple[str, ...]:
    if trees is None:
        return _TREES
    if isinstance(trees, str) or not isinstance(trees, Sequence):
        raise TypeError(f"trees must be a sequence of tree names (e.g. a tuple), got {trees!r}")
    trees = tuple(trees)
    if not trees or not all(isinstance(t, str) for t in trees):
        raise TypeError(f"trees must be one or more tree names from {_TREES}, got {trees!r}")
    unknown = sorted(set(trees) - set(_TREES))
    if unknown:
        raise ValueError(f"trees has unknown names {unknown}; expected a subset of {_TREES}")
    return tuple(t for t in _TREES if t in trees)


def restore(
    directory_or_file: str | os.PathLike[str],
    *,
    step: int | None = None,
    like: dict[str, Any] | None = None,
    trees: Sequence[str] | None = None,
) -> Checkpoint:
    """Load a checkpoint, verifying its checksum first.

    Args:
        directory_or_file: A checkpoint directory, or one checkpoint's ``.npz`` or ``.json``.
        step: With a directory, the step to load; default None loads the latest complete one.
            Must be None when a file is given.
        like: Optional templates, a dict with some or all of the keys ``"params"``,
            ``"opt_state"``, ``"model_state"``, each a pytree with the saved structure (leaves
            may be arrays or ``jax.ShapeDtypeStruct``). A tree with a template is rebuilt into
            exactly the template's structure after checking every leaf path, shape and dtype;
            a tree without one is rebuilt from the stored skeleton, which only works for
            dicts, lists, tuples and None (NamedTuple optimizer states need a template).
        trees: Which of ``"params"``, ``"opt_state"``, ``"model_state"`` to rebuild; the others
            come back as None. Default None rebuilds all three. ``trees=("params",
            "model_state")`` evaluates a model without the optimizer's state or its template.
            The checksum always covers the whole file.

    Returns:
        A :class:`Checkpoint` whose trees have numpy-array leaves, with their saved dtypes
        (``bfloat16`` included).

    Raises:
        FileNotFoundError: If no (complete) checkpoint is found.
        ValueError: If the checksum does not match ("checkpoint X is corrupt"), the metadata
            or npz are malformed, ``like`` has unknown keys or does not match (naming the
            first mismatching leaf path), or a tree needs a template that was not given.
        TypeError: If ``like`` is not a dict or ``step`` is not an int.
    """
    wanted = _check_trees(trees)
    if like is not None:
        if not isinstance(like, dict):
            raise TypeError(f"like must be a dict of templates or None, got {type(like).__name__}")
        unknown = sorted(set(like) - set(_TREES))
        if unknown:
            raise ValueError(f"like has unknown keys {unknown}; expected a subset of {_TREES}")
    if step is not None:
        step = _check_step(step)
        if not os.path.isdir(os.fspath(directory_or_file)):
            raise ValueError(
                f"step={step} can only be given with a directory, got file {directory_or_file}"
            )
    npz_path, json_path = _resolve(directory_or_file, step)

    try:
        with open(json_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"checkpoint {json_path} is corrupt: invalid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(f"checkpoint {json_path} is not an fconv checkpoint metadata file")
    if meta.get("version") != _VERSION:
        raise ValueError(
            f"checkpoint {json_path} has format version {meta.get('version')}, this fconv "
            f"reads version {_VERSION}"
        )

    _check_meta(meta, json_path, wanted)

    with open(npz_path, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["sha256"]:
        raise ValueError(
            f"checkpoint {npz_path} is corrupt: checksum sha256 {digest} does not match "
            f"{meta['sha256']} recorded in {json_path}"
        )

    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        raw = {k: npz[k] for k in npz.files}

    result: dict[str, Any] = dict.fromkeys(_TREES)
    for name in wanted:
        tmeta = meta["trees"][name]
        keys = [leaf["key"] for leaf in tmeta["leaves"]]
        stored: dict[str, np.ndarray] = {}
        for leaf in tmeta["leaves"]:
            key = leaf["key"]
            if key not in raw:
                raise ValueError(f"checkpoint {npz_path} is corrupt: leaf {key} is missing")
            arr = raw[key]
            if arr.dtype.name != leaf["stored_dtype"] or list(arr.shape) != leaf["shape"]:
                raise ValueError(
                    f"checkpoint {npz_path} is corrupt: leaf {key} has shape {arr.shape} dtype "
                    f"{arr.dtype}, metadata says {tuple(leaf['shape'])} {leaf['stored_dtype']}"
                )
            if leaf["dtype"] != leaf["stored_dtype"]:
                arr = arr.view(_lookup_dtype(leaf["dtype"]))
            stored[key] = arr
        if like is not None and name in like:
            result[name] = _rebuild_like(name, like[name], stored, keys)
        elif tmeta["skeleton"] is None:
            raise ValueError(
                f"checkpoint {json_path}: {name} contains a pytree node of type "
                f"{tmeta.get('opaque_type')} that cannot be rebuilt without a template; pass "
                f"like={{{name!r}: template}} to restore"
            )
        else:
            try:
                result[name] = _unskeleton(tmeta["skeleton"], [stored[k] for k in keys])
            except (AttributeError, KeyError, TypeError, IndexError, ValueError) as e:  # metadata
                raise ValueError(
                    f"checkpoint {json_path} is corrupt: the skeleton of {name} is malformed ({e})"
                ) from e
    return Checkpoint(
        result["params"],
        result["opt_state"],
        result["model_state"],
        int(meta["step"]),
        meta["config"],
    )
