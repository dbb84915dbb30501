"""Tests for fconv.losses against hand-computed numpy values."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fconv.losses as fl

LOGITS = np.array([[1.0, 2.0, 3.0], [1.0, 0.0, -1.0], [0.5, 0.5, 0.5], [-2.0, 4.0, 0.0]])
LABELS = np.array([2, 0, 1, 0])


def np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_softmax(z):
    return np.exp(np_log_softmax(z))


# ----------------------------------------------------------------------------------------------
# softmax_cross_entropy
# ----------------------------------------------------------------------------------------------


def test_softmax_cross_entropy_int_labels_matches_numpy():
    # -log softmax(z)_y, computed the naive way (values are small enough).
    expected = np.array(
        [-np.log(np.exp(z[y]) / np.exp(z).sum()) for z, y in zip(LOGITS, LABELS, strict=True)]
    )
    got = fl.softmax_cross_entropy(LOGITS, LABELS, reduction="none")
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(fl.softmax_cross_entropy(LOGITS, LABELS), expected.mean())
    np.testing.assert_allclose(
        fl.softmax_cross_entropy(LOGITS, LABELS, reduction="sum"), expected.sum()
    )


def test_softmax_cross_entropy_onehot_equals_int_labels():
    onehot = np.eye(3)[LABELS]
    np.testing.assert_allclose(
        fl.softmax_cross_entropy(LOGITS, onehot, reduction="none"),
        fl.softmax_cross_entropy(LOGITS, LABELS, reduction="none"),
        rtol=1e-12,
    )


def test_softmax_cross_entropy_probability_labels():
    probs = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.1, 0.1, 0.8]])
    expected = -(probs * np_log_softmax(LOGITS)).sum(axis=-1)
    got = fl.softmax_cross_entropy(LOGITS, probs, reduction="none")
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_softmax_cross_entropy_label_smoothing_formula():
    eps, c = 0.1, 3
    targets = (1 - eps) * np.eye(c)[LABELS] + eps / c
    expected = -(targets * np_log_softmax(LOGITS)).sum(axis=-1)
    # Equivalent form: (1 - eps) * CE(y) + eps * mean_c(-log p_c).
    alt = (1 - eps) * -np_log_softmax(LOGITS)[np.arange(4), LABELS] + eps * -np_log_softmax(
        LOGITS
    ).mean(axis=-1)
    np.testing.assert_allclose(expected, alt, rtol=1e-12)
    got = fl.softmax_cross_entropy(LOGITS, LABELS, label_smoothing=eps, reduction="none")
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # The same smoothing is applied to one-hot labels.
    got_onehot = fl.softmax_cross_entropy(
        LOGITS, np.eye(c)[LABELS], label_smoothing=eps, reduction="none"
    )
    np.testing.assert_allclose(got_onehot, expected, rtol=1e-12)


def test_softmax_cross_entropy_huge_logits_stay_finite():
    logits = jnp.array([[1e4, 0.0, -1e4], [1e4, 0.0, -1e4], [-1e4, -1e4, 1e4]], jnp.float32)
    got = fl.softmax_cross_entropy(logits, jnp.array([0, 1, 2]), reduction="none")
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, [0.0, 1e4, 0.0], atol=1e-3)
    grads = jax.grad(lambda z: fl.softmax_cross_entropy(z, jnp.array([0, 1, 2])))(logits)
    assert np.all(np.isfinite(grads))


def test_softmax_cross_entropy_with_a_masked_class_is_finite():
    # A class masked with a -inf logit has target 0: it adds 0, not 0 * -inf = nan.
    logits = jnp.array([[2.0, -jnp.inf, 0.0]])
    want = -np.log(np.exp(2.0) / (np.exp(2.0) + 1.0))
    for labels in (jnp.array([0]), jnp.array([[1.0, 0.0, 0.0]])):
        np.testing.assert_allclose(fl.softmax_cross_entropy(logits, labels), want, rtol=1e-6)
        grad = jax.grad(lambda z, y=labels: fl.softmax_cross_entropy(z, y))(logits)
        assert np.all(np.isfinite(grad)) and grad[0, 1] == 0.0


def test_softmax_cross_entropy_gradient_in_probability_targets_is_minus_log_softmax():
    z = jnp.array([[2.0, 0.5, -1.0]])
    t = jnp.array([[0.7, 0.3, 0.0]])  # a zero target still gets its gradient -log p
    grad = jax.grad(lambda t: fl.softmax_cross_entropy(z, t))(t)
    np.testing.assert_allclose(grad, -jax.nn.log_softmax(z), rtol=1e-12)


def test_softmax_cross_entropy_ignores_a_common_offset_of_the_logits():
    z = np.random.default_rng(0).standard_normal((4, 10))
    y = jnp.array([1, 2, 3, 4])
    base = fl.softmax_cross_entropy(z, y, label_smoothing=0.1)
    shifted = fl.softmax_cross_entropy(z + 1e6, y, label_smoothing=0.1)  # float64 here
    np.testing.assert_allclose(shifted, base, rtol=1e-9)


def test_softmax_cross_entropy_gradient_is_softmax_minus_onehot_over_n():
    n = LOGITS.shape[0]
    grad = jax.grad(lambda z: fl.softmax_cross_entropy(z, LABELS))(jnp.asarray(LOGITS))
    expected = (np_softmax(LOGITS) - np.eye(3)[LABELS]) / n
    np.testing.assert_allclose(grad, expected, rtol=1e-10, atol=1e-14)


def test_softmax_cross_entropy_float32_stays_float32():
    out = fl.softmax_cross_entropy(jnp.asarray(LOGITS, jnp.float32), jnp.asarray(LABELS, jnp.int32))
    assert out.dtype == jnp.float32 and out.shape == ()


def test_softmax_cross_entropy_extra_leading_axes():
    logits = LOGITS.reshape(2, 2, 3)
    got = fl.softmax_cross_entropy(logits, LABELS.reshape(2, 2), reduction="none")
    assert got.shape == (2, 2)
    np.testing.assert_allclose(
        got.reshape(-1), fl.softmax_cross_entropy(LOGITS, LABELS, reduction="none")
    )


def test_softmax_cross_entropy_under_jit():
    f = jax.jit(lambda z, y: fl.softmax_cross_entropy(z, y, label_smoothing=0.2))
    np.testing.assert_allclose(
        f(LOGITS, LABELS), fl.softmax_cross_entropy(LOGITS, LABELS, label_smoothing=0.2)
    )


@pytest.mark.parametrize(
    "labels, exc, match",
    [
        (np.array([0, 1]), ValueError, r"`labels` must be integer class ids of shape \(4,\)"),
        (np.zeros((4, 2)), ValueError, r"got shape \(4, 2\)"),
        (np.array([0.0, 1.0, 2.0, 0.0]), TypeError, r"must have an integer dtype, got float64"),
    ],
)
def test_softmax_cross_entropy_bad_labels_raise(labels, exc, match):
    with pytest.raises(exc, match=match):
        fl.softmax_cross_entropy(LOGITS, labels)


def test_softmax_cross_entropy_bad_smoothing_raises():
    with pytest.raises(ValueError, match=r"`label_smoothing` must be in \[0, 1\], got 1.5"):
        fl.softmax_cross_entropy(LOGITS, LABELS, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"`label_smoothing` must be finite and >= 0"):
        fl.softmax_cross_entropy(LOGITS, LABELS, label_smoothing=-0.1)


# ----------------------------------------------------------------------------------------------
# reduction argument, shared by every loss
# ----------------------------------------------------------------------------------------------

X = np.array([[0.5, -1.0], [2.0, 0.0]])
Y = np.array([[0.0, 1.0], [-1.0, 0.5]])
E = np.array([[1.0, 0.0], [0.0, 0.0], [3.0, 4.0]])

ALL_LOSSES = [
    lambda r: fl.softmax_cross_entropy(LOGITS, LABELS, reduction=r),
    lambda r: fl.binary_cross_entropy_with_logits(X, np.abs(Y) / 2, reduction=r),
    lambda r: fl.multiclass_hinge(LOGITS, LABELS, reduction=r),
    lambda r: fl.l1_loss(X, Y, reduction=r),
    lambda r: fl.l2_loss(X, Y, reduction=r),
    lambda r: fl.huber(X, Y, reduction=r),
    lambda r: fl.contrastive_loss(E, E[::-1], np.array([1, 0, 1]), reduction=r),
    lambda r: fl.triplet_loss(E, E[::-1], E * 2, reduction=r),
]


@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_reduction_mean_sum_none_agree(loss):
    per = np.asarray(loss("none"))
    np.testing.assert_allclose(loss("mean"), per.mean(), rtol=1e-12)
    np.testing.assert_allclose(loss("sum"), per.sum(), rtol=1e-12)


@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_bad_reduction_raises(loss):
    with pytest.raises(ValueError, match=r"`reduction` must be one of .*got 'avg'"):
        loss("avg")


# ----------------------------------------------------------------------------------------------
# binary_cross_entropy_with_logits
# ----------------------------------------------------------------------------------------------


def test_bce_with_logits_matches_naive_formula():
    x = np.array([-3.0, -0.5, 0.0, 0.7, 4.0])
    t = np.array([0.0, 1.0, 0.5, 1.0, 0.2])
    s = 1 / (1 + np.exp(-x))
    expected = -(t * np.log(s) + (1 - t) * np.log(1 - s))
    got = fl.binary_cross_entropy_with_logits(x, t, reduction="none")
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_bce_with_logits_huge_logits_stay_finite():
    x = jnp.array([1e4, -1e4, 1e4, -1e4], jnp.float32)
    t = jnp.array([1.0, 0.0, 0.0, 1.0], jnp.float32)
    got = fl.binary_cross_entropy_with_logits(x, t, reduction="none")
    np.testing.assert_allclose(got, [0.0, 0.0, 1e4, 1e4], atol=1e-3)
    assert np.all(np.isfinite(jax.grad(lambda z: fl.binary_cross_entropy_with_logits(z, t))(x)))


def test_bce_with_logits_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"`targets` must have the same shape as `logits` \(3,\)"):
        fl.binary_cross_entropy_with_logits(np.zeros(3), np.zeros((3, 1)))


# ----------------------------------------------------------------------------------------------
# multiclass_hinge (Crammer-Singer)
# ----------------------------------------------------------------------------------------------


def test_multiclass_hinge_crammer_singer_values():
    # Row by row: max(0, 1 + max_{j != y} z_j - z_y).
    expected = np.array(
        [
            max(0.0, 1 + 2.0 - 3.0),  # y=2: best wrong 2.0 -> 0
            max(0.0, 1 + 0.0 - 1.0),  # y=0: best wrong 0.0 -> 0
            max(0.0, 1 + 0.5 - 0.5),  # y=1: tie -> 1
            max(0.0, 1 + 4.0 - -2.0),  # y=0: best wrong 4.0 -> 7
        ]
    )
    got = fl.multiclass_hinge(LOGITS, LABELS, reduction="none")
    np.testing.assert_allclose(got, expected)
    got2 = fl.multiclass_hinge(LOGITS, LABELS, margin=2.0, reduction="none")
    np.testing.assert_allclose(got2, [1.0, 1.0, 2.0, 8.0])


def test_multiclass_hinge_is_not_weston_watkins():
    # Weston-Watkins would sum both violating classes: (1 + 0.5 - 1) + (1 + 0.8 - 1) = 1.3.
    z = np.array([[1.0, 0.5, 0.8]])
    np.testing.assert_allclose(fl.multiclass_hinge(z, np.array([0])), 0.8)


def test_multiclass_hinge_errors():
    with pytest.raises(TypeError, match=r"`labels` of multiclass_hinge must be integer"):
        fl.multiclass_hinge(LOGITS, np.eye(3)[LABELS])
    with pytest.raises(ValueError, match=r"`margin` must be finite and >= 0, got -1"):
        fl.multiclass_hinge(LOGITS, LABELS, margin=-1.0)
    with pytest.raises(ValueError, match=r"at least 2 classes"):
        fl.multiclass_hinge(np.zeros((2, 1)), np.array([0, 0]))


# ----------------------------------------------------------------------------------------------
# Regression losses
# ----------------------------------------------------------------------------------------------


def test_l1_l2_values():
    d = X - Y
    np.testing.assert_allclose(fl.l1_loss(X, Y), np.abs(d).mean())
    np.testing.assert_allclose(fl.l2_loss(X, Y), (d**2).mean())
    np.testing.assert_allclose(fl.l2_loss(X, Y, reduction="none"), d**2)
    assert fl.mse is fl.l2_loss


def test_huber_both_branches():
    pred = np.array([0.0, 0.5, -0.9, 2.0, -3.0])
    target = np.zeros(5)
    # |r| <= 1: r^2 / 2; |r| > 1: |r| - 1/2.
    expected = np.array([0.0, 0.125, 0.405, 1.5, 2.5])
    np.testing.assert_allclose(fl.huber(pred, target, reduction="none"), expected, rtol=1e-12)
    # delta=2: |r| <= 2 quadratic; 3 -> 2 * (3 - 1) = 4.
    expected2 = np.array([0.0, 0.125, 0.405, 2.0, 4.0])
    got2 = fl.huber(pred, target, delta=2.0, reduction="none")
    np.testing.assert_allclose(got2, expected2, rtol=1e-12)


def test_huber_gradient_is_clipped_residual():
    pred = jnp.array([0.5, 3.0, -3.0])
    g = jax.grad(lambda p: fl.huber(p, jnp.zeros(3), reduction="sum"))(pred)
    np.testing.assert_allclose(g, [0.5, 1.0, -1.0])


def test_regression_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"`target` must have the same shape as `pred` \(2, 2\)"):
        fl.l2_loss(X, Y[0])


def test_huber_bad_delta_raises():
    with pytest.raises(ValueError, match=r"`delta` must be > 0, got 0.0"):
        fl.huber(X, Y, delta=0.0)
    # delta=inf would give inf * 0 = NaN in the linear branch.
    with pytest.raises(ValueError, match=r"`delta` must be finite and >= 0, got inf"):
        fl.huber(X, Y, delta=float("inf"))
    with pytest.raises(TypeError, match=r"`delta` must be a real number"):
        fl.huber(X, Y, delta="1")


def test_integer_predictions_become_float32():
    out = fl.l1_loss(np.array([1, 2], np.int32), np.array([0, 0], np.int32))
    assert out.dtype == jnp.float32
    assert float(out) == 1.5


# ----------------------------------------------------------------------------------------------
# Metric-learning losses
# ----------------------------------------------------------------------------------------------


def test_contrastive_loss_hadsell_values():
    e1 = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    e2 = np.array([[3.0, 4.0], [0.3, 0.4], [3.0, 4.0], [1.0, 1.0]])  # d = 5, 0.5, 5, 0
    same = np.array([1, 0, 0, 0])
    # similar: d^2 / 2; dissimilar: max(0, m - d)^2 / 2 with m = 1.
    expected = np.array([12.5, 0.125, 0.0, 0.5])
    got = fl.contrastive_loss(e1, e2, same, reduction="none")
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    got_bool = fl.contrastive_loss(e1, e2, same.astype(bool), margin=6.0, reduction="none")
    np.testing.assert_allclose(got_bool, [12.5, 0.5 * 5.5**2, 0.5, 18.0], rtol=1e-12)


def test_contrastive_loss_gradient_finite_at_zero_distance():
    e = jnp.ones((2, 3))
    g1, g2 = jax.grad(fl.contrastive_loss, argnums=(0, 1))(e, e, jnp.array([0, 1]))
    assert np.all(np.isfinite(g1)) and np.all(np.isfinite(g2))


def test_triplet_loss_values():
    a = np.array([[0.0, 0.0], [0.0, 0.0]])
    p = np.array([[3.0, 4.0], [1.0, 0.0]])  # d_pos = 5, 1
    n = np.array([[0.0, 5.5], [0.0, 3.0]])  # d_neg = 5.5, 3
    # max(0, d_pos - d_neg + 1): 0.5, 0
    got = fl.triplet_loss(a, p, n, reduction="none")
    np.testing.assert_allclose(got, [0.5, 0.0], rtol=1e-12)
    np.testing.assert_allclose(fl.triplet_loss(a, p, n, margin=3.0), (2.5 + 1.0) / 2)


def test_triplet_loss_gradient_finite_when_positive_equals_anchor():
    a = jnp.ones((1, 2))
    g = jax.grad(fl.triplet_loss)(a, a, jnp.zeros((1, 2)))
    assert np.all(np.isfinite(g))


def test_metric_losses_shape_errors():
    with pytest.raises(ValueError, match=r"`same` must have shape \(3,\)"):
        fl.contrastive_loss(E, E, np.ones(2))
    with pytest.raises(ValueError, match=r"`emb2` must have the same shape as `emb1`"):
        fl.contrastive_loss(E, E[:2], np.ones(3))
    with pytest.raises(ValueError, match=r"`negative` must have the same shape as `anchor`"):
        fl.triplet_loss(E, E, E[:, :1])


# ----------------------------------------------------------------------------------------------
# accuracy, l2_regularization
# ----------------------------------------------------------------------------------------------


def test_accuracy_int_and_onehot():
    # argmax rows: 2, 0, 0 (tie -> lowest), 1
    assert float(fl.accuracy(LOGITS, LABELS)) == 0.5
    assert float(fl.accuracy(LOGITS, np.eye(3)[LABELS])) == 0.5
    assert fl.accuracy(LOGITS, LABELS).dtype == jnp.float32


def test_accuracy_float_class_ids_raise():
    with pytest.raises(TypeError, match=r"`labels` of accuracy must be integer class ids"):
        fl.accuracy(LOGITS, LABELS.astype(np.float32))


def test_l2_regularization_of_float16_params_does_not_overflow():
    got = fl.l2_regularization({"w": jnp.full((1_000_000,), 0.3, jnp.float16)})
    np.testing.assert_allclose(got, 1_000_000 * float(np.float16(0.3)) ** 2, rtol=1e-5)


def test_l2_regularization_of_float64_params_stays_float64():  # the tests enable x64
    got = fl.l2_regularization({"w": jnp.array([1 + 1e-9, 2.0], jnp.float64)})
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(got, (1 + 1e-9) ** 2 + 4, rtol=1e-15)


def test_l2_regularization_excludes_b_leaves():
    params = {
        "conv": {"w": np.ones((2, 2)), "b": np.full(2, 10.0)},
        "blocks": [{"w": np.array([3.0]), "b": np.array([7.0])}, (np.array([1.0, 2.0]),)],
        "bias": np.array([2.0]),  # not named "b": always included
        "step": np.array(5, np.int32),  # integer leaves are skipped
    }
    np.testing.assert_allclose(fl.l2_regularization(params), 4 + 9 + 5 + 4)
    np.testing.assert_allclose(
        fl.l2_regularization(params, exclude_bias=False), 4 + 200 + 9 + 49 + 5 + 4
    )


def test_l2_regularization_gradient_and_jit():
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([3.0])}
    g = jax.jit(jax.grad(fl.l2_regularization))(params)
    np.testing.assert_allclose(g["w"], [2.0, -4.0])
    np.testing.assert_allclose(g["b"], [0.0])


def test_l2_regularization_empty_tree_is_zero_float32():
    out = fl.l2_regularization({})
    assert float(out) == 0.0 and out.dtype == jnp.float32


def test_docstring_examples():
    result = doctest.testmod(fl, extraglobs={"jax": jax, "jnp": jnp})
    assert result.attempted > 0 and result.failed == 0
