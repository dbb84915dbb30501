"""Tests for fconv.optim: hand-computed trajectories, optax agreement, schedules, composition."""

import doctest
import importlib
import math
import pkgutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import fconv.optim as fo

# A tiny quadratic problem on a nested pytree (dict, list, tuple):
#   loss(p) = sum(0.5 * A * p**2 + 0.1 * p)  ->  grad = A * p + 0.1
PARAMS0 = {
    "w": np.array([1.0, -2.0]),
    "nested": [np.array([0.5]), (np.array([[1.5, -0.25]]),)],
}
CURV = {
    "w": np.array([1.0, 3.0]),
    "nested": [np.array([2.0]), (np.array([[0.5, 4.0]]),)],
}
A_FLAT = np.asarray(ravel_pytree(CURV)[0])
X0_FLAT = np.asarray(ravel_pytree(PARAMS0)[0])


def loss(params):
    terms = jax.tree_util.tree_map(lambda p, a: jnp.sum(0.5 * a * p * p + 0.1 * p), params, CURV)
    return sum(jax.tree_util.tree_leaves(terms))


def np_grad(x):
    return A_FLAT * x + 0.1


def run(opt, steps=3, dtype=jnp.float64, jit=False):
    """Runs `opt` on the tiny problem; returns the flat parameters after each step.

    With ``jit=True`` the whole step (grad, update, apply) is one jitted function, as in a real
    training loop. The default runs eagerly: once the per-op compile cache is warm this is much
    cheaper in a test suite than compiling one program per optimizer.
    """
    params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), PARAMS0)
    state = opt.init(params)

    def step(params, state):
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        return fo.apply_updates(params, updates), state

    step = jax.jit(step) if jit else step
    out = []
    for _ in range(steps):
        params, state = step(params, state)
        out.append(np.asarray(ravel_pytree(params)[0], np.float64))
    return np.stack(out)


# ----------------------------------------------------------------------------------------------
# Hand-computed 3-step trajectories (float64)
# ----------------------------------------------------------------------------------------------


def test_sgd_momentum_nesterov_scalar_literal_values():
    # loss = w**2, grad = 2w, w0 = 1, lr = 0.1, beta = 0.9 — worked out by hand:
    #   sgd:      w = 0.8, 0.64, 0.512
    #   momentum: v = 2, 3.4, 3.98           ; w = 0.8, 0.46, 0.062
    #   nesterov: v = 2, 3.04, 3.1808        ; step g + 0.9 v = 3.8, 3.976, 3.30752
    #             w = 0.62, 0.2224, -0.108352
    expected = {
        "sgd": [0.8, 0.64, 0.512],
        "momentum": [0.8, 0.46, 0.062],
        "nesterov": [0.62, 0.2224, -0.108352],
    }
    makers = {
        "sgd": lambda: fo.sgd(0.1),
        "momentum": lambda: fo.momentum(0.1, beta=0.9),
        "nesterov": lambda: fo.nesterov(0.1, beta=0.9),
    }
    for name, make in makers.items():
        opt = make()
        w = jnp.array(1.0, jnp.float64)
        state = opt.init(w)
        got = []
        for _ in range(3):
            updates, state = opt.update(2 * w, state, w)
            w = fo.apply_updates(w, updates)
            got.append(float(w))
        np.testing.assert_allclose(got, expected[name], rtol=1e-12, err_msg=name)


def test_sgd_trajectory():
    lr = 0.1
    x, ref = X0_FLAT.copy(), []
    for _ in range(3):
        x = x - lr * np_grad(x)
        ref.append(x)
    np.testing.assert_allclose(run(fo.sgd(lr)), ref, rtol=1e-12)


def test_momentum_trajectory():
    lr, beta = 0.1, 0.9
    x, v, ref = X0_FLAT.copy(), np.zeros_like(X0_FLAT), []
    for _ in range(3):
        g = np_grad(x)
        v = beta * v + g
        x = x - lr * v
        ref.append(x)
    np.testing.assert_allclose(run(fo.momentum(lr, beta=beta)), ref, rtol=1e-12)


def test_nesterov_trajectory():
    lr, beta = 0.1, 0.8
    x, v, ref = X0_FLAT.copy(), np.zeros_like(X0_FLAT), []
    for _ in range(3):
        g = np_grad(x)
        v = beta * v + g
        x = x - lr * (g + beta * v)
        ref.append(x)
    np.testing.assert_allclose(run(fo.nesterov(lr, beta=beta)), ref, rtol=1e-12)


def test_adam_trajectory():
    lr, b1, b2, eps = 0.05, 0.8, 0.95, 0.1  # large eps so its placement matters
    x, m, v, ref = X0_FLAT.copy(), np.zeros_like(X0_FLAT), np.zeros_like(X0_FLAT), []
    for t in range(1, 4):
        g = np_grad(x)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        x = x - lr * m_hat / (np.sqrt(v_hat) + eps)
        ref.append(x)
    np.testing.assert_allclose(run(fo.adam(lr, b1=b1, b2=b2, eps=eps)), ref, rtol=1e-12)


def test_adamw_trajectory_decoupled_decay():
    lr, b1, b2, eps, wd = 0.05, 0.9, 0.999, 1e-8, 0.3
    x, m, v, ref = X0_FLAT.copy(), np.zeros_like(X0_FLAT), np.zeros_like(X0_FLAT), []
    for t in range(1, 4):
        g = np_grad(x)  # the decay does NOT enter the moments
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        adam_step = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        x = x - lr * (adam_step + wd * x)
        ref.append(x)
    opt = fo.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd)
    np.testing.assert_allclose(run(opt), ref, rtol=1e-12)


def test_rmsprop_trajectory():
    lr, decay, eps = 0.01, 0.7, 0.05
    x, s, ref = X0_FLAT.copy(), np.zeros_like(X0_FLAT), []
    for _ in range(3):
        g = np_grad(x)
        s = decay * s + (1 - decay) * g * g
        x = x - lr * g / (np.sqrt(s) + eps)
        ref.append(x)
    np.testing.assert_allclose(run(fo.rmsprop(lr, decay=decay, eps=eps)), ref, rtol=1e-12)


def test_adagrad_trajectory():
    lr, eps, init_acc = 0.5, 0.01, 0.2
    x, acc, ref = X0_FLAT.copy(), np.full_like(X0_FLAT, init_acc), []
    for _ in range(3):
        g = np_grad(x)
        acc = acc + g * g
        x = x - lr * g / (np.sqrt(acc) + eps)
        ref.append(x)
    opt = fo.adagrad(lr, eps=eps, initial_accumulator=init_acc)
    np.testing.assert_allclose(run(opt), ref, rtol=1e-12)


def test_schedule_learning_rate_trajectory_starts_at_step_zero():
    schedule = lambda step: 0.1 / (1.0 + step)  # noqa: E731
    x, ref = X0_FLAT.copy(), []
    for t in range(3):
        x = x - schedule(t) * np_grad(x)
        ref.append(x)
    np.testing.assert_allclose(run(fo.sgd(schedule)), ref, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Agreement with optax (float32, 10 steps)
# ----------------------------------------------------------------------------------------------


def _optax_pairs(optax):
    cosine = dict(peak_value=0.02, warmup_steps=3, total_steps=10, end_value=0.001)
    return {
        "sgd": (fo.sgd(0.1), optax.sgd(0.1)),
        "momentum": (fo.momentum(0.1, beta=0.9), optax.sgd(0.1, momentum=0.9)),
        "nesterov": (
            fo.nesterov(0.1, beta=0.9),
            optax.sgd(0.1, momentum=0.9, nesterov=True),
        ),
        "adam": (fo.adam(0.01), optax.adam(0.01)),
        "adamw": (fo.adamw(0.01, weight_decay=0.1), optax.adamw(0.01, weight_decay=0.1)),
        # optax puts eps inside the sqrt by default; PyTorch (and fconv) add it outside.
        "rmsprop": (fo.rmsprop(0.01), optax.rmsprop(0.01, decay=0.9, eps=1e-8, eps_in_sqrt=False)),
        # optax: g * rsqrt(G + eps); fconv/PyTorch: g / (sqrt(G) + eps). Equal to ~1e-10 here.
        "adagrad": (
            fo.adagrad(0.1),
            optax.adagrad(0.1, initial_accumulator_value=0.0, eps=1e-10),
        ),
        "clip+adam": (
            fo.chain(fo.clip_by_global_norm(0.5), fo.adam(0.01)),
            optax.chain(optax.clip_by_global_norm(0.5), optax.adam(0.01)),
        ),
        "adam+cosine": (
            fo.adam(fo.cosine_decay_with_warmup(**cosine)),
            optax.adam(
                optax.warmup_cosine_decay_schedule(
                    0.0,
                    cosine["peak_value"],
                    cosine["warmup_steps"],
                    cosine["total_steps"],
                    cosine["end_value"],
                )
            ),
        ),
        "sgd+piecewise": (
            fo.sgd(fo.step_schedule(0.1, {3: 0.5, 6: 0.1})),
            optax.sgd(optax.piecewise_constant_schedule(0.1, {3: 0.5, 6: 0.1})),
        ),
        "momentum+exponential": (
            fo.momentum(fo.exponential_decay(0.1, 0.5, 4)),
            optax.sgd(optax.exponential_decay(0.1, 4, 0.5), momentum=0.9),
        ),
    }


OPTAX_CASES = [
    "sgd",
    "momentum",
    "nesterov",
    "adam",
    "adamw",
    "rmsprop",
    "adagrad",
    "clip+adam",
    "adam+cosine",
    "sgd+piecewise",
    "momentum+exponential",
]


@pytest.mark.parametrize("case", OPTAX_CASES)
def test_matches_optax_over_10_steps(case):
    optax = pytest.importorskip("optax")
    ours, theirs = _optax_pairs(optax)[case]

    def trajectory(opt, apply):
        # 10 steps in one jitted lax.scan: a single compile per optimizer (cheapest for tests).
        params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float32), PARAMS0)

        def body(carry, _):
            params, state = carry
            updates, state = opt.update(jax.grad(loss)(params), state, params)
            params = apply(params, updates)
            return (params, state), ravel_pytree(params)[0]

        run10 = jax.jit(lambda p, s: jax.lax.scan(body, (p, s), None, length=10)[1])
        return np.asarray(run10(params, opt.init(params)))

    np.testing.assert_allclose(
        trajectory(ours, fo.apply_updates), trajectory(theirs, optax.apply_updates), atol=1e-6
    )


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (
            lambda: fo.cosine_decay_with_warmup(1.0, 5, 20, end_value=0.1, init_value=0.2),
            lambda o: o.warmup_cosine_decay_schedule(0.2, 1.0, 5, 20, 0.1),
        ),
        (
            lambda: fo.exponential_decay(2.0, 0.3, 7, staircase=True),
            lambda o: o.exponential_decay(2.0, 7, 0.3, staircase=True),
        ),
        (
            lambda: fo.step_schedule(1.0, {5: 0.5, 10: 0.2}),
            lambda o: o.piecewise_constant_schedule(1.0, {5: 0.5, 10: 0.2}),
        ),
    ],
)
def test_schedules_match_optax(ours, theirs):
    optax = pytest.importorskip("optax")
    steps = jnp.arange(0, 30)
    np.testing.assert_allclose(
        jax.jit(jax.vmap(ours()))(steps),
        jax.jit(jax.vmap(theirs(optax)))(steps),
        rtol=1e-6,
        atol=1e-7,
    )


# ----------------------------------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------------------------------


def test_constant_schedule():
    s = fo.constant_schedule(0.3)
    assert s(0).dtype == jnp.float32
    np.testing.assert_allclose([s(0), s(1000)], [0.3, 0.3], rtol=1e-7)


def test_step_schedule_boundaries_cumulative():
    s = fo.step_schedule(1.0, {100: 0.1, 200: 0.5})
    got = [float(s(t)) for t in (0, 99, 100, 199, 200, 10_000)]
    np.testing.assert_allclose(got, [1.0, 1.0, 0.1, 0.1, 0.05, 0.05], rtol=1e-6)


def test_step_schedule_step_size_gamma():
    s = fo.step_schedule(0.1, step_size=30, gamma=0.5)
    got = [float(s(t)) for t in (0, 29, 30, 59, 60, 95)]
    np.testing.assert_allclose(got, [0.1, 0.1, 0.05, 0.05, 0.025, 0.0125], rtol=1e-6)


def test_exponential_decay_smooth_and_staircase():
    smooth = fo.exponential_decay(1.0, 0.5, 10)
    stairs = fo.exponential_decay(1.0, 0.5, 10, staircase=True)
    np.testing.assert_allclose(
        [float(smooth(t)) for t in (0, 5, 10, 25)], [1.0, 0.5**0.5, 0.5, 0.5**2.5], rtol=1e-6
    )
    np.testing.assert_allclose(
        [float(stairs(t)) for t in (0, 5, 10, 25)], [1.0, 1.0, 0.5, 0.25], rtol=1e-6
    )


def test_cosine_decay_with_warmup_values():
    s = fo.cosine_decay_with_warmup(1.0, 10, 110, end_value=0.1)
    expected = {
        0: 0.0,  # warm-up starts at init_value = 0
        5: 0.5,  # linear warm-up
        10: 1.0,  # peak
        60: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)),  # half-way: 0.55
        85: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.75)),
        110: 0.1,  # end
        500: 0.1,  # stays at end_value
    }
    got = [float(s(t)) for t in expected]
    np.testing.assert_allclose(got, list(expected.values()), rtol=1e-6, atol=1e-7)


def test_cosine_decay_reaches_end_value_at_total_steps_even_when_it_is_all_warmup():
    s = fo.cosine_decay_with_warmup(1.0, 4, 4, end_value=0.1)
    got = [float(s(t)) for t in range(7)]
    np.testing.assert_allclose(got, [0.0, 0.25, 0.5, 0.75, 0.1, 0.1, 0.1], atol=1e-7)


def test_cosine_decay_without_warmup_starts_at_peak():
    s = fo.cosine_decay_with_warmup(2.0, 0, 10)
    np.testing.assert_allclose([float(s(0)), float(s(5)), float(s(10))], [2.0, 1.0, 0.0], atol=1e-6)


@pytest.mark.parametrize(
    "schedule",
    [
        fo.constant_schedule(0.1),
        fo.step_schedule(0.1, {3: 0.1}),
        fo.step_schedule(0.1, step_size=3),
        fo.exponential_decay(0.1, 0.9, 2, staircase=True),
        fo.cosine_decay_with_warmup(0.1, 2, 10),
    ],
)
def test_schedules_jit_with_traced_int32_step(schedule):
    steps = [0, 1, 2, 3, 7, 12]
    jitted = jax.jit(schedule)
    for t in steps:
        out = jitted(jnp.asarray(t, jnp.int32))
        assert out.dtype == jnp.float32 and out.shape == ()
        np.testing.assert_allclose(out, schedule(t), rtol=1e-7)


# ----------------------------------------------------------------------------------------------
# Gradient transformations, chain, global norm
# ----------------------------------------------------------------------------------------------


def test_global_norm_over_nested_tree():
    tree = {"a": jnp.array([3.0]), "b": [jnp.array([[0.0, 4.0]]), (jnp.array(12.0),)]}
    np.testing.assert_allclose(fo.global_norm(tree), 13.0)
    np.testing.assert_allclose(fo.global_norm({}), 0.0)


def test_clip_by_global_norm_rescales_across_leaves():
    grads = {"a": jnp.array([3.0]), "b": [jnp.array([4.0])]}  # global norm 5
    clip = fo.clip_by_global_norm(1.0)
    clipped, _ = clip.update(grads, clip.init(grads))
    np.testing.assert_allclose(clipped["a"], [0.6], rtol=1e-12)
    np.testing.assert_allclose(clipped["b"][0], [0.8], rtol=1e-12)
    np.testing.assert_allclose(fo.global_norm(clipped), 1.0, rtol=1e-12)


def test_clip_by_global_norm_leaves_small_and_zero_grads_unchanged():
    clip = fo.clip_by_global_norm(10.0)
    grads = {"a": jnp.array([3.0]), "b": [jnp.array([4.0])]}
    out, _ = clip.update(grads, clip.init(grads))
    np.testing.assert_array_equal(out["a"], grads["a"])
    zeros = {"a": jnp.zeros(2)}
    out, _ = fo.clip_by_global_norm(1.0).update(zeros, fo.EmptyState())
    np.testing.assert_array_equal(out["a"], [0.0, 0.0])


def test_chain_order_matters():
    grads = [jnp.array([3.0, 4.0])]
    clip_then_scale = fo.chain(fo.clip_by_global_norm(1.0), fo.scale(10.0))
    scale_then_clip = fo.chain(fo.scale(10.0), fo.clip_by_global_norm(1.0))
    a, _ = clip_then_scale.update(grads, clip_then_scale.init(grads))
    b, _ = scale_then_clip.update(grads, scale_then_clip.init(grads))
    np.testing.assert_allclose(fo.global_norm(a), 10.0, rtol=1e-12)
    np.testing.assert_allclose(fo.global_norm(b), 1.0, rtol=1e-12)


def test_chain_state_is_tuple_of_member_states():
    opt = fo.chain(fo.clip_by_global_norm(1.0), fo.trace(0.9), fo.scale_by_learning_rate(0.1))
    state = opt.init({"w": jnp.zeros(2)})
    assert isinstance(state, tuple) and len(state) == 3
    assert isinstance(state[0], fo.EmptyState)
    assert isinstance(state[1], fo.TraceState)
    assert isinstance(state[2], fo.CountState)


def test_adamw_equals_chain_with_decay_after_adam_not_before():
    lr, wd = 0.05, 0.3
    decoupled = fo.chain(fo.scale_by_adam(), fo.add_weight_decay(wd), fo.scale_by_learning_rate(lr))
    coupled = fo.chain(fo.add_weight_decay(wd), fo.scale_by_adam(), fo.scale_by_learning_rate(lr))
    np.testing.assert_allclose(run(decoupled), run(fo.adamw(lr, weight_decay=wd)), rtol=1e-12)
    assert not np.allclose(run(coupled), run(decoupled))


def test_add_weight_decay_needs_params():
    opt = fo.adamw(0.1)
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"add_weight_decay needs the parameters"):
        opt.update(params, opt.init(params))


def test_step_counter_is_int32_and_counts():
    params = {"w": jnp.ones(2, jnp.float32)}
    opt = fo.adam(fo.constant_schedule(0.1))
    state = opt.init(params)
    for _ in range(3):
        _, state = opt.update(params, state, params)
    adam_state, lr_state = state
    assert adam_state.count.dtype == jnp.int32 and int(adam_state.count) == 3
    assert lr_state.count.dtype == jnp.int32 and int(lr_state.count) == 3
    # A constant float rate keeps the same state structure (and counter).
    float_state = fo.adam(0.1).init(params)
    assert jax.tree_util.tree_structure(float_state) == jax.tree_util.tree_structure(state)


def test_step_counter_saturates_instead_of_wrapping():
    opt = fo.sgd(0.1)
    state = fo.CountState(jnp.asarray(np.iinfo(np.int32).max, jnp.int32))
    _, state = opt.update({"w": jnp.ones(1)}, state)
    assert int(state.count) == np.iinfo(np.int32).max


# ----------------------------------------------------------------------------------------------
# jit, pytrees, dtypes
# ----------------------------------------------------------------------------------------------

ALL_OPTIMIZERS = {
    "sgd": lambda lr: fo.sgd(lr),
    "momentum": lambda lr: fo.momentum(lr),
    "nesterov": lambda lr: fo.nesterov(lr),
    "adam": lambda lr: fo.adam(lr),
    "adamw": lambda lr: fo.adamw(lr),
    "rmsprop": lambda lr: fo.rmsprop(lr),
    "adagrad": lambda lr: fo.adagrad(lr),
}


# Every optimizer also runs under jit (in lax.scan) in test_matches_optax_over_10_steps; these
# three cover the momentum buffer, a params-needing chain and an accumulator without optax.
@pytest.mark.parametrize("name", ["nesterov", "adamw", "adagrad"])
def test_jit_matches_eager_with_schedule(name):
    opt = ALL_OPTIMIZERS[name](fo.cosine_decay_with_warmup(0.1, 1, 5))
    np.testing.assert_allclose(run(opt, jit=True), run(opt), rtol=1e-12)


def test_state_is_a_pytree_usable_in_scan():
    opt = fo.adamw(0.01)
    params = jax.tree_util.tree_map(jnp.asarray, PARAMS0)

    def body(carry, _):
        params, state = carry
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        return (fo.apply_updates(params, updates), state), loss(params)

    (_, state), losses = jax.lax.scan(body, (params, opt.init(params)), None, length=5)
    assert losses.shape == (5,) and losses[-1] < losses[0]
    assert int(state[0].count) == 5


def test_none_leaves_pass_through():
    params = {"w": jnp.ones(2), "frozen": None}
    opt = fo.chain(fo.clip_by_global_norm(1.0), fo.adam(0.1))
    state = opt.init(params)
    updates, state = opt.update({"w": jnp.ones(2), "frozen": None}, state, params)
    assert updates["frozen"] is None
    new = fo.apply_updates(params, updates)
    assert new["frozen"] is None and new["w"].shape == (2,)


@pytest.mark.parametrize("name, dtype", [("sgd", jnp.float32), ("adam", jnp.bfloat16)])
def test_param_dtype_preserved_under_x64(name, dtype):
    opt = ALL_OPTIMIZERS[name](fo.exponential_decay(0.1, 0.5, 2))
    params = {"w": jnp.ones(3, dtype)}
    state = opt.init(params)
    grads = {"w": jnp.full(3, 0.5, dtype)}
    updates, state = opt.update(grads, state, params)
    assert updates["w"].dtype == dtype
    assert fo.apply_updates(params, updates)["w"].dtype == dtype


def test_apply_updates_structure_mismatch_raises():
    with pytest.raises(ValueError, match=r"`updates` must have the tree structure of `params`"):
        fo.apply_updates({"w": jnp.ones(2)}, {"v": jnp.ones(2)})


# ----------------------------------------------------------------------------------------------
# Argument validation
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: fo.sgd(0.0), ValueError, r"`learning_rate` must be > 0.0, got 0.0"),
        (lambda: fo.adam(-1e-3), ValueError, r"`learning_rate` must be > 0.0, got -0.001"),
        (lambda: fo.sgd(float("inf")), ValueError, r"`learning_rate` must be finite"),
        (lambda: fo.sgd("0.1"), TypeError, r"`learning_rate` must be a positive number or"),
        (lambda: fo.momentum(0.1, beta=1.0), ValueError, r"`beta` must be < 1.0, got 1.0"),
        (lambda: fo.nesterov(0.1, beta=-0.1), ValueError, r"`beta` must be >= 0.0"),
        (lambda: fo.adam(0.1, b1=1.0), ValueError, r"`b1` must be < 1.0"),
        (lambda: fo.adam(0.1, b2=1.5), ValueError, r"`b2` must be < 1.0"),
        (lambda: fo.adam(0.1, eps=-1.0), ValueError, r"`eps` must be >= 0.0"),
        (lambda: fo.adamw(0.1, weight_decay=-0.1), ValueError, r"`weight_decay` must be >= 0"),
        (lambda: fo.rmsprop(0.1, decay=1.0), ValueError, r"`decay` must be < 1.0"),
        (lambda: fo.adagrad(0.1, initial_accumulator=-1), ValueError, r"`initial_accumulator`"),
        (lambda: fo.clip_by_global_norm(0.0), ValueError, r"`max_norm` must be > 0.0"),
        (lambda: fo.chain(fo.sgd(0.1), (1, 2)), TypeError, r"`transforms\[1\]` must be an fconv"),
        (lambda: fo.scale_by_schedule(0.1), TypeError, r"`schedule` must be callable"),
        (lambda: fo.step_schedule(0.1), ValueError, r"exactly one of `boundaries_and_scales`"),
        (
            lambda: fo.step_schedule(0.1, {5: 0.1}, step_size=3),
            ValueError,
            r"exactly one of `boundaries_and_scales`",
        ),
        (lambda: fo.step_schedule(0.1, [(5, 0.1)]), TypeError, r"must be a mapping"),
        (lambda: fo.step_schedule(0.1, step_size=0), ValueError, r"`step_size` must be >= 1"),
        (lambda: fo.exponential_decay(0.1, 0.0, 10), ValueError, r"`decay_rate` must be > 0.0"),
        (lambda: fo.exponential_decay(0.1, 0.5, 2.5), TypeError, r"`decay_steps` must be an int"),
        (
            lambda: fo.cosine_decay_with_warmup(0.1, 20, 10),
            ValueError,
            r"`warmup_steps` \(=20\) must be <= `total_steps` \(=10\)",
        ),
        (lambda: fo.constant_schedule(-1.0), ValueError, r"`value` must be >= 0.0"),
    ],
)
def test_bad_arguments_raise(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_learning_rate_accepts_numpy_and_0d_jax_scalars():
    ref = run(fo.sgd(0.1))
    np.testing.assert_allclose(run(fo.sgd(np.float32(0.1))), ref, rtol=1e-6)
    np.testing.assert_allclose(run(fo.sgd(jnp.asarray(0.1))), ref, rtol=1e-12)
    with pytest.raises(TypeError, match=r"`learning_rate` must be a positive number or"):
        fo.sgd(jnp.array([0.1]))


def test_chain_rejects_foreign_state():
    opt = fo.chain(fo.sgd(0.1), fo.scale(2.0))
    with pytest.raises(ValueError, match=r"`state` must be the tuple of 2 states"):
        opt.update({"w": jnp.ones(1)}, fo.EmptyState())


def test_docstring_examples():
    # doctest collects only what a module defines itself, so walk the package's modules too.
    names = [fo.__name__] + [f"{fo.__name__}.{m.name}" for m in pkgutil.iter_modules(fo.__path__)]
    modules = [importlib.import_module(name) for name in names]
    results = {m.__name__: doctest.testmod(m, extraglobs={"jax": jax, "jnp": jnp}) for m in modules}
    assert all(r.failed == 0 for r in results.values()), results
    assert results["fconv.optim"].attempted > 0 and results["fconv.optim.base"].attempted > 0
