"""Pictures of a training run: learning curves, first-layer filters, feature maps.

Plotting needs matplotlib (``pip install 'fconv[viz]'``); it is imported inside each plotting
function and drawn on matplotlib's Agg canvas (``matplotlib.figure.Figure`` plus
``FigureCanvasAgg``), so no display is needed and a user's pyplot backend is left alone. PNGs are
written atomically (temporary file, then ``os.replace``).

:func:`first_conv_weights` and :func:`conv_activations` need no matplotlib.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from fconv.models import lenet5
    >>> model = lenet5(10, (1, 8, 8))
    >>> _, params = model.init(jax.random.key(0))
    >>> first_conv_weights(params).shape
    (6, 1, 5, 5)
    >>> [(name, a.shape) for name, a in conv_activations(model, params, model.init_state(),
    ...                                                   jnp.zeros((1, 8, 8)))]
    [('conv1', (6, 8, 8)), ('conv2', (16, 4, 4))]
"""

from __future__ import annotations

import io
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

from fconv.atomic_io import write_bytes_atomic
from fconv.metrics_log import read_metrics

__all__ = [
    "first_conv_weights",
    "conv_activations",
    "plot_curves",
    "plot_filters",
    "plot_feature_maps",
]

_MAX_TILES = 64


def _figure(figsize: tuple[float, float]):
    """A matplotlib ``Figure`` attached to an Agg canvas (no pyplot, no global backend)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "fconv.viz needs matplotlib; install it with: pip install 'fconv[viz]'"
        ) from e
    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, out_png: str | os.PathLike[str]) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_bytes_atomic(out_png, buf.getvalue())
    return os.fspath(out_png)


# --------------------------------------------------------------------------------------------
# Arrays to plot (no matplotlib needed).


def first_conv_weights(params: Any) -> np.ndarray:
    """The kernel of the first convolution in a parameter pytree.

    The first leaf named ``"w"`` with 3 to 5 dimensions in ``jax.tree_util`` order (child order
    for ``serial`` models, so the stem convolution).

    Returns:
        A numpy array, ``(O, C, *kernel)`` for a channels-first conv.

    Raises:
        ValueError: If ``params`` holds no such leaf.
    """
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        key = path[-1] if path else None
        if isinstance(key, jax.tree_util.DictKey) and key.key == "w" and 3 <= np.ndim(leaf) <= 5:
            return np.asarray(leaf)
    raise ValueError("params holds no convolution kernel (a leaf 'w' with 3 to 5 dimensions)")


_OP_PRIMITIVES = ("custom_vjp_call", "custom_vjp_call_jaxpr", "conv_general_dilated", "pjit", "jit")


def conv_activations(
    model: Any, params: Any, model_state: Any, x: Any
) -> list[tuple[str, np.ndarray]]:
    """The output of every convolution layer for one example, in inference mode.

    The model's forward pass is traced once (``jax.make_jaxpr``). Every ``Conv`` layer's apply
    runs inside ``jax.named_scope("fconv.Conv")`` and its op inside ``"fconv.conv"`` (likewise
    ``fconv.ConvTranspose`` / ``fconv.conv_transpose``), where it computes channels-first (a
    ``channels_last`` layer transposes around it). Each convolution primitive in such an op
    scope whose result is used starts one layer; the layer's output is the last value of that
    scope which is computed from the convolution's result and has its shape -- the convolution
    plus bias, channels-first, before any activation. The traced program is then evaluated
    with those values as its outputs. Works for any model built from ``fconv.layers``
    (residual branches included).

    Args:
        model: A ``Layer``.
        params: Its parameters.
        model_state: Its state (``model.init_state(...)`` for stateless models).
        x: One example ``(C, H, W)`` or a batch of one ``(1, C, H, W)`` (or ``(H, W, C)`` /
            ``(1, H, W, C)`` for a channels-last model).

    Returns:
        ``[(name, activation)]`` in execution order: names ``"conv1"``, ``"conv2"``, ... (or
        ``"conv_transpose1"``...), activations numpy ``(C_out, H_out, W_out)`` for the example,
        whatever the layers' layout.

    Raises:
        ValueError: If ``x`` is not one image.
    """
    x = jnp.asarray(x, jnp.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one example (C, H, W) or (1, C, H, W), got shape {x.shape}")

    def forward(params, model_state, x):
        return model.apply(params, x, train=False, state=model_state)[0]

    closed = jax.make_jaxpr(forward)(params, model_state, x)
    found: list[tuple[str, Any]] = []  # (layer scope, output var)
    current = None  # [layer scope, output var, its shape, vars computed from the convolution]
    used = {v for e in closed.jaxpr.eqns for v in e.invars if isinstance(v, jex_core.Var)}
    used.update(v for v in closed.jaxpr.outvars if isinstance(v, jex_core.Var))
    for eqn in closed.jaxpr.eqns:
        parts = str(eqn.source_info.name_stack).split("/")
        if not (
            parts[0].startswith("fconv.Conv")
            and len(parts) > 1
            and parts[1].startswith("fconv.conv")
        ):
            continue  # not inside a conv layer's op (e.g. a channels-last layer's transposes)
        if eqn.primitive.name in _OP_PRIMITIVES and eqn.outvars[0] in used:
            # The convolution (an unused one, e.g. the primal of an autodiff transpose, is
            # skipped): a new layer starts.
            if current is not None:
                found.append((current[0], current[1]))
            out = eqn.outvars[0]
            current = [parts[0], out, out.aval.shape, set(eqn.outvars)]
        elif current is not None and any(
            isinstance(v, jex_core.Var) and v in current[3] for v in eqn.invars
        ):
            current[3].update(eqn.outvars)
            if eqn.outvars[0].aval.shape == current[2]:  # e.g. the bias add
                current[1] = eqn.outvars[0]
    if current is not None:
        found.append((current[0], current[1]))
    if not found:
        return []
    jaxpr = closed.jaxpr.replace(outvars=[v for _, v in found])
    run = jex_core.jaxpr_as_fun(jex_core.ClosedJaxpr(jaxpr, closed.consts))
    values = run(*jax.tree_util.tree_leaves((params, model_state, x)))
    counts: dict[str, int] = {}
    result = []
    for (scope, _), value in zip(found, values):
        base = "conv_transpose" if scope.startswith("fconv.ConvTranspose") else "conv"
        counts[base] = counts.get(base, 0) + 1
        result.append((f"{base}{counts[base]}", np.asarray(value)[0]))
    return result


# --------------------------------------------------------------------------------------------
# Plots.


def plot_curves(metrics_jsonl: str | os.PathLike[str], out_png: str | os.PathLike[str]) -> str:
    """Loss and accuracy per epoch, train and test, from a ``metrics.jsonl`` file.

    Args:
        metrics_jsonl: The file :func:`fconv.train.fit` writes (or its run directory).
        out_png: Destination PNG; its directory must exist.

    Returns:
        ``out_png`` as a string.

    Raises:
        ImportError: Without matplotlib.
        FileNotFoundError: If the metrics file does not exist.
        ValueError: If it holds no epoch records, or one lacks a loss or accuracy.
    """
    records = [r for r in read_metrics(metrics_jsonl) if "epoch" in r]
    if not records:
        raise ValueError(f"{os.fspath(metrics_jsonl)} holds no epoch records")
    keys = [f"{split}_{metric}" for split in ("train", "test") for metric in ("loss", "acc")]
    for r in records:
        missing = [k for k in keys if k not in r]
        if missing:
            raise ValueError(
                f"{os.fspath(metrics_jsonl)}: the record of epoch {r['epoch']} lacks {missing} "
                "(expected the records fconv.train.fit writes)"
            )
    epochs = [r["epoch"] for r in records]
    fig = _figure((10, 4))
    for ax, metric, title in zip(fig.subplots(1, 2), ("loss", "acc"), ("loss", "accuracy")):
        for split, style in (("train", "-o"), ("test", "-s")):
            ax.plot(epochs, [r[f"{split}_{metric}"] for r in records], style, ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _save(fig, out_png)


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _tiles(fig: Any, images: list[np.ndarray], titles: list[str] | None, cmap: str) -> None:
    rows, cols = _grid(len(images))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= len(images):
            ax.set_axis_off()
            continue
        ax.imshow(images[i], cmap=cmap, interpolation="nearest")
        if titles:
            ax.set_title(titles[i], fontsize=7)


def plot_filters(first_conv_weights: Any, out_png: str | os.PathLike[str]) -> str:
    """A grid of first-layer kernels.

    RGB kernels (3 input channels) are shown as colour images, each scaled to ``[0, 1]``; other
    kernels as one grey tile per (output, input) channel pair, scaled together so tiles compare.
    At most 64 tiles are drawn.

    Args:
        first_conv_weights: Kernel ``(O, C, kh, kw)`` (see :func:`first_conv_weights`).
        out_png: Destination PNG; its directory must exist.

    Returns:
        ``out_png`` as a string.

    Raises:
        ImportError: Without matplotlib.
        ValueError: If the kernel is not 4-D or is empty.
    """
    w = np.asarray(first_conv_weights, np.float64)
    if w.ndim != 4 or 0 in w.shape:
        raise ValueError(
            f"first_conv_weights must be a non-empty (O, C, kh, kw) array, got shape {w.shape}"
        )
    o, c = w.shape[:2]
    if c == 3:
        images = []
        for k in w[:_MAX_TILES]:
            lo, hi = k.min(), k.max()
            images.append(np.transpose((k - lo) / (hi - lo if hi > lo else 1.0), (1, 2, 0)))
        titles = [f"{i}" for i in range(len(images))]
    else:
        pairs = [(i, j) for i in range(o) for j in range(c)][:_MAX_TILES]
        images = [w[i, j] for i, j in pairs]
        titles = [f"{i}" if c == 1 else f"{i}:{j}" for i, j in pairs]
        bound = max(np.abs(w).max(), 1e-12)
        images = [0.5 + 0.5 * im / bound for im in images]
    rows, cols = _grid(len(images))
    fig = _figure((1.2 * cols + 0.5, 1.2 * rows + 0.6))
    _tiles(fig, images, titles, "gray")
    fig.suptitle(f"first-layer kernels {tuple(w.shape)}")
    fig.tight_layout()
    return _save(fig, out_png)


def plot_feature_maps(
    model: Any,
    params: Any,
    model_state: Any,
    x_single: Any,
    out_png: str | os.PathLike[str],
    *,
    max_channels: int = 16,
) -> str:
    """The input and each convolution layer's output (see :func:`conv_activations`).

    One row for the input, then one row per conv layer showing its first ``max_channels``
    channels, each tile with its own colour scale.

    Args:
        model: A ``Layer``.
        params: Its parameters.
        model_state: Its state.
        x_single: One example ``(C, H, W)``, preprocessed as in training.
        out_png: Destination PNG; its directory must exist.
        max_channels: Channels shown per layer; default 16.

    Returns:
        ``out_png`` as a string.

    Raises:
        ImportError: Without matplotlib.
        ValueError: If ``x_single`` is not one example or the model has no conv layer.
    """
    maps = conv_activations(model, params, model_state, x_single)
    maps = [(name, a) for name, a in maps if a.ndim == 3]
    if not maps:
        raise ValueError("the model has no 2-D convolution layer to show")
    x = np.asarray(x_single, np.float32).reshape(np.shape(x_single)[-3:])
    rows = [("input", x)] + maps
    cols = min(max(a.shape[0] for _, a in rows), max_channels)
    fig = _figure((1.3 * cols + 1.0, 1.4 * len(rows) + 0.4))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, (name, a) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= a.shape[0]:
                ax.set_axis_off()
                continue
            ax.imshow(a[c], cmap="viridis", interpolation="nearest")
            if c == 0:
                ax.set_ylabel(f"{name}\n{tuple(a.shape)}", fontsize=7)
    fig.suptitle("feature maps after each convolution (before the activation)")
    fig.tight_layout()
    return _save(fig, out_png)
