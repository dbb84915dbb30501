"""Loss functions and metrics.

Conventions shared by every loss here:

* Inputs are batches: the first axis is the batch axis ``N``; classification losses take logits of
  shape ``(N, C)`` (more generally ``(..., C)``, the last axis being classes).
* ``reduction`` (keyword-only) is ``"mean"`` (default: mean over all per-example losses),
  ``"sum"`` or ``"none"`` (per-example losses, shape ``(N,)`` or ``(...)``). Element-wise
  regression losses (``l1_loss``, ``l2_loss``, ``huber``) reduce over *all* elements, so with
  ``"none"`` they return the element-wise loss with the input's shape.
* Shapes are checked eagerly (they are static under ``jax.jit``) and mismatches raise
  ``ValueError``; there is no implicit broadcasting between predictions and targets.
* Class ids cannot be range-checked because their values are traced under ``jax.jit``: an id
  outside ``[0, C)`` is not an error; it selects no class (an all-zero one-hot row).
* Integer predictions are cast to float32; floating inputs keep their dtype.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "softmax_cross_entropy",
    "binary_cross_entropy_with_logits",
    "multiclass_hinge",
    "l1_loss",
    "l2_loss",
    "mse",
    "huber",
    "contrastive_loss",
    "triplet_loss",
    "accuracy",
    "l2_regularization",
]

_REDUCTIONS = ("mean", "sum", "none")


# ----------------------------------------------------------------------------------------------
# Helpers (private)
# ----------------------------------------------------------------------------------------------


def _check_reduction(reduction: Any) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"`reduction` must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(loss: jax.Array, reduction: str) -> jax.Array:
    if reduction == "mean":
        return jnp.mean(loss)
    if reduction == "sum":
        return jnp.sum(loss)
    return loss


def _float_dtype(x: jax.Array) -> Any:
    """``x``'s dtype if inexact, else float32 (integer predictions are cast)."""
    return x.dtype if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.float32


# Each public loss validates shapes/dtypes in Python, then calls a jitted core: one compiled
# program per input signature, instead of one per primitive, makes eager calls ~10x cheaper to
# start. Under an outer jax.jit the cores are simply inlined.
def _jit(*static_argnames: str):
    return functools.partial(jax.jit, static_argnames=static_argnames)


def _check_same_shape(name_a: str, a: jax.Array, name_b: str, b: jax.Array) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"`{name_b}` must have the same shape as `{name_a}` {a.shape}, got {b.shape}"
        )


def _check_nonneg(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    if not 0 <= value < float("inf"):
        raise ValueError(f"`{name}` must be finite and >= 0, got {value}")
    return float(value)


def _labels_are_ids(logits: jax.Array, labels: jax.Array, fn: str) -> bool:
    """Tells class ids (True) from one-hot/probability labels (False); raises for neither.

    Class ids have an integer dtype and shape ``logits.shape[:-1]``; one-hot/probability labels
    have ``logits``' shape (any dtype).
    """
    if logits.ndim < 1:
        raise ValueError(f"`logits` of {fn} must have rank >= 1 (..., C), got shape {logits.shape}")
    if jnp.issubdtype(labels.dtype, jnp.integer) and labels.shape == logits.shape[:-1]:
        return True
    if labels.shape == logits.shape:
        return False
    if labels.shape == logits.shape[:-1]:
        raise TypeError(
            f"`labels` of shape {labels.shape} (class ids) must have an integer dtype, "
            f"got {labels.dtype}"
        )
    raise ValueError(
        f"`labels` must be integer class ids of shape {logits.shape[:-1]} or one-hot/probabilities "
        f"of shape {logits.shape} to match `logits` {logits.shape}, got shape {labels.shape}"
    )


def _check_int_labels(logits: jax.Array, labels: jax.Array, fn: str) -> None:
    if logits.ndim < 1:
        raise ValueError(f"`logits` of {fn} must have rank >= 1 (..., C), got shape {logits.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"`labels` of {fn} must be integer class ids, got dtype {labels.dtype}")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"`labels` must have shape {logits.shape[:-1]} to match `logits` {logits.shape}, "
            f"got {labels.shape}"
        )


def _safe_norm(x: jax.Array) -> jax.Array:
    """Euclidean norm over the last axis with gradient 0 (not NaN) at x == 0."""
    sq = jnp.sum(x * x, axis=-1)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


# ----------------------------------------------------------------------------------------------
# Classification
# ----------------------------------------------------------------------------------------------


def softmax_cross_entropy(
    logits: Any, labels: Any, *, label_smoothing: float = 0.0, reduction: str = "mean"
) -> jax.Array:
    """Softmax cross-entropy ``-sum_c t_c log_softmax(z)_c``, computed stably.

    ``log_softmax`` is shifted by the row's largest logit, and a class masked with a ``-inf``
    logit and target 0 adds 0 (not nan). With ``label_smoothing = eps`` the targets become
    ``t' = (1 - eps) * t + eps / C``, for class ids as for probability labels.

    Args:
        logits: Unnormalised scores, shape ``(N, C)`` (or ``(..., C)``).
        labels: Either integer class ids of shape ``(N,)`` (``(...)``), detected by integer dtype
            and rank one less than ``logits``; or one-hot/probability targets with the shape of
            ``logits``. Ids outside ``[0, C)`` are not checked (see module docstring).
        label_smoothing: ``eps`` in ``[0, 1]`` (default 0.0: no smoothing).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (shape ``(N,)``).

    Returns:
        The reduced loss (a scalar), or per-example losses for ``reduction="none"``.

    Raises:
        ValueError: on mismatched shapes, ``label_smoothing`` outside ``[0, 1]`` or a bad
            ``reduction``.
        TypeError: if labels of shape ``(N,)`` are not integers.

    Example:
        >>> logits = jnp.array([[2.0, 0.0], [0.0, 2.0]])
        >>> round(float(softmax_cross_entropy(logits, jnp.array([0, 1]))), 4)
        0.1269
    """
    _check_reduction(reduction)
    eps = _check_nonneg("label_smoothing", label_smoothing)
    if eps > 1:
        raise ValueError(f"`label_smoothing` must be in [0, 1], got {label_smoothing}")
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    ids = _labels_are_ids(logits, labels, "softmax_cross_entropy")
    return _softmax_cross_entropy(logits, labels, eps, ids=ids, reduction=reduction)


@_jit("ids", "reduction")
def _softmax_cross_entropy(logits, labels, eps, *, ids, reduction):
    logits = logits.astype(_float_dtype(logits))
    if ids:
        targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    else:
        targets = labels.astype(logits.dtype)
    targets = (1.0 - eps) * targets + eps / logits.shape[-1]
    # -sum_c t_c log softmax(z)_c, with log softmax shifted by max z (no precision lost to a
    # common offset of the logits), and log softmax read as 0 where t_c = 0 and z_c = -inf (a
    # masked class): it adds 0, not 0 * -inf = nan. Rows of t need not sum to 1 (e.g. an
    # out-of-range id gives a zero row, loss 0).
    log_p = jax.nn.log_softmax(logits, axis=-1)
    masked = (targets == 0) & jnp.isneginf(log_p)  # only there; d/dt stays log_p elsewhere
    terms = targets * jnp.where(masked, jnp.zeros((), log_p.dtype), log_p)
    return _reduce(-jnp.sum(terms, axis=-1), reduction)


def binary_cross_entropy_with_logits(
    logits: Any, targets: Any, *, reduction: str = "mean"
) -> jax.Array:
    """Sigmoid binary cross-entropy, stable for large ``|logits|``.

    Element-wise ``-t log(sigmoid(x)) - (1 - t) log(1 - sigmoid(x))``, computed as
    ``max(x, 0) - x * t + log1p(exp(-|x|))``.

    Args:
        logits: Scores of any shape, e.g. ``(N,)`` or ``(N, K)`` for K independent labels.
        targets: Targets in ``[0, 1]`` with the shape of ``logits``.
        reduction: ``"mean"`` (default; over all elements), ``"sum"`` or ``"none"``.

    Returns:
        The reduced loss, or the element-wise loss for ``reduction="none"``.

    Raises:
        ValueError: on mismatched shapes or a bad ``reduction``.

    Example:
        >>> round(float(binary_cross_entropy_with_logits(jnp.array([0.0]), jnp.array([1.0]))), 4)
        0.6931
    """
    _check_reduction(reduction)
    logits, targets = jnp.asarray(logits), jnp.asarray(targets)
    _check_same_shape("logits", logits, "targets", targets)
    return _bce_with_logits(logits, targets, reduction=reduction)


@_jit("reduction")
def _bce_with_logits(logits, targets, *, reduction):
    logits = logits.astype(_float_dtype(logits))
    targets = targets.astype(logits.dtype)
    loss = jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    return _reduce(loss, reduction)


def multiclass_hinge(
    logits: Any, labels: Any, *, margin: float = 1.0, reduction: str = "mean"
) -> jax.Array:
    """Crammer-Singer multiclass hinge loss.

    Per example: ``max(0, margin + max_{j != y} z_j - z_y)`` — only the most-violating wrong class
    counts (Crammer & Singer, JMLR 2001). This is *not* the Weston-Watkins sum
    ``sum_{j != y} max(0, margin + z_j - z_y)`` used by PyTorch's ``MultiMarginLoss`` (which also
    divides by ``C``).

    Args:
        logits: Scores, shape ``(N, C)`` with ``C >= 2``.
        labels: Integer class ids, shape ``(N,)``; ids outside ``[0, C)`` are not checked.
        margin: Required score gap, >= 0 (default 1.0).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (shape ``(N,)``).

    Returns:
        The reduced loss, or per-example losses for ``reduction="none"``.

    Raises:
        ValueError: on mismatched shapes, ``C < 2``, ``margin < 0`` or a bad ``reduction``.
        TypeError: if ``labels`` are not integers.

    Example:
        >>> float(multiclass_hinge(jnp.array([[3.0, 2.5, 0.0]]), jnp.array([0])))
        0.5
    """
    _check_reduction(reduction)
    margin = _check_nonneg("margin", margin)
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    _check_int_labels(logits, labels, "multiclass_hinge")
    if logits.shape[-1] < 2:
        raise ValueError(f"`logits` must have at least 2 classes, got shape {logits.shape}")
    return _multiclass_hinge(logits, labels, margin, reduction=reduction)


@_jit("reduction")
def _multiclass_hinge(logits, labels, margin, *, reduction):
    logits = logits.astype(_float_dtype(logits))
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.bool_)
    true_score = jnp.sum(jnp.where(onehot, logits, 0), axis=-1)
    worst_other = jnp.max(jnp.where(onehot, -jnp.inf, logits), axis=-1)
    loss = jnp.maximum(0, margin + worst_other - true_score)
    return _reduce(loss, reduction)


def accuracy(logits: Any, labels: Any) -> jax.Array:
    """Fraction of examples whose arg-max logit is the label.

    Ties in ``logits`` go to the lowest class index (``jnp.argmax``).

    Args:
        logits: Scores, shape ``(N, C)`` (or ``(..., C)``).
        labels: Integer class ids of shape ``(N,)``, or one-hot/probability targets of shape
            ``(N, C)`` (their arg-max is the label).

    Returns:
        A float32 scalar in ``[0, 1]``.

    Raises:
        ValueError: on mismatched shapes.
        TypeError: if labels of shape ``(N,)`` are not integers.

    Example:
        >>> float(accuracy(jnp.array([[1.0, 0.0], [1.0, 0.0]]), jnp.array([0, 1])))
        0.5
    """
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    ids = not (labels.shape == logits.shape and logits.ndim >= 1)
    if ids:
        _check_int_labels(logits, labels, "accuracy")
    return _accuracy(logits, labels, ids=ids)


@_jit("ids")
def _accuracy(logits, labels, *, ids):
    if not ids:
        labels = jnp.argmax(labels, axis=-1)
    correct = jnp.argmax(logits, axis=-1) == labels
    return jnp.mean(correct.astype(jnp.float32))


# ----------------------------------------------------------------------------------------------
# Regression
# ----------------------------------------------------------------------------------------------


def _elementwise(pred: Any, target: Any, kind: str, reduction: str, delta: float = 1.0):
    pred, target = jnp.asarray(pred), jnp.asarray(target)
    _check_same_shape("pred", pred, "target", target)
    return _elementwise_core(pred, target, delta, kind=kind, reduction=reduction)


@_jit("kind", "reduction")
def _elementwise_core(pred, target, delta, *, kind, reduction):
    pred = pred.astype(_float_dtype(pred))
    r = pred - target.astype(pred.dtype)
    if kind == "l1":
        loss = jnp.abs(r)
    elif kind == "l2":
        loss = r * r
    else:  # huber
        r = jnp.abs(r)
        quad = jnp.minimum(r, delta)
        # 0.5 q^2 + delta (r - q): equals both branches and is smooth at r == delta.
        loss = 0.5 * quad * quad + delta * (r - quad)
    return _reduce(loss, reduction)


def l1_loss(pred: Any, target: Any, *, reduction: str = "mean") -> jax.Array:
    """Absolute error ``|pred - target|``.

    Args:
        pred: Predictions of any shape.
        target: Targets with the shape of ``pred``.
        reduction: ``"mean"`` (default; over all elements), ``"sum"`` or ``"none"``.

    Returns:
        The reduced loss, or the element-wise loss for ``reduction="none"``.

    Raises:
        ValueError: on mismatched shapes or a bad ``reduction``.
    """
    _check_reduction(reduction)
    return _elementwise(pred, target, "l1", reduction)


def l2_loss(pred: Any, target: Any, *, reduction: str = "mean") -> jax.Array:
    """Squared error ``(pred - target)**2``; with the default ``"mean"`` this is the MSE.

    There is no factor 1/2 (``optax.l2_loss`` has one; this equals ``optax.squared_error``).

    Args:
        pred: Predictions of any shape.
        target: Targets with the shape of ``pred``.
        reduction: ``"mean"`` (default; over all elements), ``"sum"`` or ``"none"``.

    Returns:
        The reduced loss, or the element-wise loss for ``reduction="none"``.

    Raises:
        ValueError: on mismatched shapes or a bad ``reduction``.

    Example:
        >>> float(l2_loss(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0])))
        2.5
    """
    _check_reduction(reduction)
    return _elementwise(pred, target, "l2", reduction)


mse = l2_loss


def huber(pred: Any, target: Any, *, delta: float = 1.0, reduction: str = "mean") -> jax.Array:
    """Huber loss: quadratic for small errors, linear for large ones.

    With ``r = |pred - target|``: ``0.5 * r**2`` if ``r <= delta``, else
    ``delta * (r - 0.5 * delta)`` (PyTorch's ``HuberLoss``, ``optax.huber_loss``).

    Args:
        pred: Predictions of any shape.
        target: Targets with the shape of ``pred``.
        delta: Switch point, > 0 (default 1.0).
        reduction: ``"mean"`` (default; over all elements), ``"sum"`` or ``"none"``.

    Returns:
        The reduced loss, or the element-wise loss for ``reduction="none"``.

    Raises:
        ValueError: on mismatched shapes, ``delta <= 0`` or a bad ``reduction``.
    """
    _check_reduction(reduction)
    delta = _check_nonneg("delta", delta)
    if delta == 0:
        raise ValueError(f"`delta` must be > 0, got {delta}")
    return _elementwise(pred, target, "huber", reduction, delta)


# ----------------------------------------------------------------------------------------------
# Metric learning
# ----------------------------------------------------------------------------------------------


def contrastive_loss(
    emb1: Any, emb2: Any, same: Any, *, margin: float = 1.0, reduction: str = "mean"
) -> jax.Array:
    """Contrastive loss of Hadsell, Chopra & LeCun (CVPR 2006).

    With Euclidean distance ``d = ||emb1 - emb2||`` per pair::

        loss = same * 0.5 * d**2 + (1 - same) * 0.5 * max(0, margin - d)**2

    so similar pairs are pulled together and dissimilar pairs pushed at least ``margin`` apart.
    (The paper writes ``Y = 0`` for similar pairs; here ``same = 1`` means similar.) The gradient
    at ``d == 0`` is 0, not NaN.

    Args:
        emb1: Embeddings, shape ``(N, D)``.
        emb2: Embeddings, shape ``(N, D)``.
        same: Shape ``(N,)``: 1/True for similar pairs, 0/False for dissimilar ones.
        margin: Distance dissimilar pairs must exceed, >= 0 (default 1.0).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (shape ``(N,)``).

    Returns:
        The reduced loss, or per-pair losses for ``reduction="none"``.

    Raises:
        ValueError: on mismatched shapes, embeddings of rank < 1, ``margin < 0`` or a bad
            ``reduction``.
    """
    _check_reduction(reduction)
    margin = _check_nonneg("margin", margin)
    emb1, emb2 = jnp.asarray(emb1), jnp.asarray(emb2)
    _check_same_shape("emb1", emb1, "emb2", emb2)
    if emb1.ndim < 1:
        raise ValueError(f"`emb1` must have rank >= 1 (N, D), got shape {emb1.shape}")
    same = jnp.asarray(same)
    if same.shape != emb1.shape[:-1]:
        raise ValueError(
            f"`same` must have shape {emb1.shape[:-1]} to match `emb1` {emb1.shape}, "
            f"got {same.shape}"
        )
    return _contrastive(emb1, emb2, same, margin, reduction=reduction)


@_jit("reduction")
def _contrastive(emb1, emb2, same, margin, *, reduction):
    emb1 = emb1.astype(_float_dtype(emb1))
    diff = emb1 - emb2.astype(emb1.dtype)
    same = same.astype(emb1.dtype)
    sq = jnp.sum(diff * diff, axis=-1)
    hinge = jnp.maximum(0, margin - _safe_norm(diff))
    loss = 0.5 * same * sq + 0.5 * (1 - same) * hinge * hinge
    return _reduce(loss, reduction)


def triplet_loss(
    anchor: Any, positive: Any, negative: Any, *, margin: float = 1.0, reduction: str = "mean"
) -> jax.Array:
    """Triplet margin loss with Euclidean (not squared) distances.

    Per triplet ``max(0, ||a - p|| - ||a - n|| + margin)``, as PyTorch's ``TripletMarginLoss``
    (``p=2``, ``eps=0``). FaceNet (Schroff et al., 2015) uses squared distances instead. The
    gradient at a zero distance is 0, not NaN.

    Args:
        anchor: Embeddings, shape ``(N, D)``.
        positive: Embeddings of the same identity, shape ``(N, D)``.
        negative: Embeddings of another identity, shape ``(N, D)``.
        margin: Required distance gap, >= 0 (default 1.0).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (shape ``(N,)``).

    Returns:
        The reduced loss, or per-triplet losses for ``reduction="none"``.

    Raises:
        ValueError: on mismatched shapes, embeddings of rank < 1, ``margin < 0`` or a bad
            ``reduction``.
    """
    _check_reduction(reduction)
    margin = _check_nonneg("margin", margin)
    anchor, positive, negative = jnp.asarray(anchor), jnp.asarray(positive), jnp.asarray(negative)
    _check_same_shape("anchor", anchor, "positive", positive)
    _check_same_shape("anchor", anchor, "negative", negative)
    if anchor.ndim < 1:
        raise ValueError(f"`anchor` must have rank >= 1 (N, D), got shape {anchor.shape}")
    return _triplet(anchor, positive, negative, margin, reduction=reduction)


@_jit("reduction")
def _triplet(anchor, positive, negative, margin, *, reduction):
    anchor = anchor.astype(_float_dtype(anchor))
    d_pos = _safe_norm(anchor - positive.astype(anchor.dtype))
    d_neg = _safe_norm(anchor - negative.astype(anchor.dtype))
    return _reduce(jnp.maximum(0, d_pos - d_neg + margin), reduction)


# ----------------------------------------------------------------------------------------------
# Regularisation
# ----------------------------------------------------------------------------------------------


def l2_regularization(params: Any, *, exclude_bias: bool = True) -> jax.Array:
    """Sum of squares of all floating-point leaves of a parameter pytree.

    ``sum_leaves sum(w**2)`` — no factor 1/2; multiply by your weight-decay coefficient (``wd``
    here adds gradient ``2 * wd * w``). Non-floating leaves (e.g. integer counters, complex
    arrays) and ``None`` are skipped.

    Args:
        params: Any pytree of arrays, e.g. ``{"conv1": {"w": ..., "b": ...}}``.
        exclude_bias: If True (default), skip every leaf whose own dict key is ``"b"`` — the
            fconv name for biases (``{"w": ..., "b": ...}``). Other names (e.g. ``"bias"``) and
            list/tuple entries are always included.

    Returns:
        A scalar (float32 for float32 parameters; 0.0 float32 if nothing is summed).

    Example:
        >>> params = {"w": jnp.array([1.0, 2.0]), "b": jnp.array([3.0])}
        >>> float(l2_regularization(params)), float(l2_regularization(params, exclude_bias=False))
        (5.0, 14.0)
    """
    selected = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        is_b = bool(path) and isinstance(path[-1], jax.tree_util.DictKey) and path[-1].key == "b"
        if exclude_bias and is_b:
            continue
        leaf = jnp.asarray(leaf)
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            selected.append(leaf)
    return _sum_of_squares(selected)


@jax.jit
def _sum_of_squares(leaves):
    total = jnp.zeros((), jnp.float32)
    for leaf in leaves:
        acc = jnp.promote_types(leaf.dtype, jnp.float32)  # no float16 overflow; float64 stays
        total = total + jnp.sum(jnp.square(leaf.astype(acc)))
    return total
