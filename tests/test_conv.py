"""Specification of fconv.ops.conv, conv_transpose and the gradient ops h and g."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fconv.ops import DTypeError, conv, conv_input_grad, conv_transpose, conv_weight_grad
from fconv.ops.conv import _strided_input_grad_mode, set_strided_input_grad
from fconv.testing import reference_vjp

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def conv_configs(draw, max_kernel=3):
    """Random conv: rank 1-3, odd/even kernels, stride, dilation, groups, every padding kind."""
    n = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2, 3]))
    cin = groups * draw(st.integers(1, 2))
    depthwise = draw(st.booleans())
    cout = cin if depthwise else groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, max_kernel)) for _ in range(n))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(n))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(n))
    eff = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    size = tuple(draw(st.integers(max(1, e - 1), e + 5)) for e in eff)
    kind = draw(st.sampled_from(["VALID", "SAME", "FULL", "explicit"]))
    if kind == "explicit":
        padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 3))) for _ in range(n))
    else:
        padding = kind
    pads = ref.pads_for(padding, size, eff, stride)
    if any(s + lo + hi < e for s, (lo, hi), e in zip(size, pads, eff)):
        padding, pads = "FULL", ref.pads_for("FULL", size, eff, stride)
    batch = draw(st.integers(1, 4))
    return dict(
        x_shape=(batch, cin, *size),
        w_shape=(cout, cin // groups, *kernel),
        kw=dict(stride=stride, padding=padding, dilation=dilation, groups=groups),
        pads=pads,
    )


def _arrays(cfg, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["x_shape"]).astype(dtype)
    w = rng.standard_normal(cfg["w_shape"]).astype(dtype)
    return x, w


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), 1e-30)


def _adjoint_transpose(g, w, cfg, x_shape):
    """conv_transpose configured as the adjoint of the drawn conv (output_padding = remainder)."""
    kw = cfg["kw"]
    r = [
        (sz + lo + hi - (d * (k - 1) + 1)) % s
        for sz, (lo, hi), d, k, s in zip(
            x_shape[2:], cfg["pads"], kw["dilation"], w.shape[2:], kw["stride"]
        )
    ]
    return conv_transpose(
        g,
        w,
        stride=kw["stride"],
        padding=cfg["pads"],
        output_padding=r,
        dilation=kw["dilation"],
        groups=kw["groups"],
    )


@SETTINGS
@given(conv_configs())
def test_conv_random_configuration_forward_vjp_h_g_and_adjoint(cfg):
    """One jitted program per drawn configuration, checked against NumPy loops (float64)."""
    x, w = _arrays(cfg)
    kw = cfg["kw"]
    g = np.random.default_rng(1).standard_normal(
        ref.conv(x, w, kw["stride"], cfg["pads"], kw["dilation"], kw["groups"]).shape
    )

    @jax.jit
    def everything(x, w, g):
        y, pullback = jax.vjp(functools.partial(conv, **kw), x, w)
        dx, dw = pullback(g)
        h = conv_input_grad(g, w, x.shape, **kw)
        gw = conv_weight_grad(x, g, w.shape, **kw)
        return y, dx, dw, h, gw, _adjoint_transpose(g, w, cfg, x.shape)

    y, dx, dw, h, gw, xt = everything(x, w, g)
    want_y = ref.conv(x, w, kw["stride"], cfg["pads"], kw["dilation"], kw["groups"])
    want_dx, want_dw = ref.conv_vjp(
        x, w, g, kw["stride"], cfg["pads"], kw["dilation"], kw["groups"]
    )
    chex.assert_shape(y, want_y.shape)
    assert _rel(y, want_y) <= 1e-12
    assert _rel(dx, want_dx) <= 1e-10  # custom VJP == truth, float64
    assert _rel(dw, want_dw) <= 1e-10
    np.testing.assert_allclose(h, dx, rtol=0, atol=1e-12)  # the public h op is the VJP
    np.testing.assert_allclose(gw, dw, rtol=0, atol=1e-12)  # the public g op is the VJP
    # <conv(x, w), g> == <x, conv_transpose(g, w)>: the transposed conv is the adjoint.
    chex.assert_shape(xt, x.shape)
    np.testing.assert_allclose(np.vdot(y, g), np.vdot(x, xt), rtol=1e-10)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_configs())
def test_conv_custom_vjp_float32_within_1e5_of_the_gradient_scale(cfg):
    x, w = _arrays(cfg)
    kw = cfg["kw"]
    g = np.random.default_rng(2).standard_normal(
        ref.conv(x, w, kw["stride"], cfg["pads"], kw["dilation"], kw["groups"]).shape
    )
    truth = ref.conv_vjp(x, w, g, kw["stride"], cfg["pads"], kw["dilation"], kw["groups"])
    f32 = [a.astype(np.float32) for a in (x, w, g)]
    dx, dw = jax.jit(lambda x, w, g: jax.vjp(functools.partial(conv, **kw), x, w)[1](g))(*f32)
    assert dx.dtype == jnp.float32 and dw.dtype == jnp.float32
    assert _rel(dx, truth[0]) <= 1e-5
    assert _rel(dw, truth[1]) <= 1e-5


@pytest.mark.parametrize("mode", ["polyphase", "subpixel", "interior_pad"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=conv_configs(max_kernel=4))
def test_every_strided_input_grad_mode_computes_the_exact_input_gradient(mode, cfg):
    x, w = _arrays(cfg)
    kw = cfg["kw"]
    g = np.random.default_rng(1).standard_normal(
        ref.conv(x, w, kw["stride"], cfg["pads"], kw["dilation"], kw["groups"]).shape
    )
    want, _ = ref.conv_vjp(x, w, g, kw["stride"], cfg["pads"], kw["dilation"], kw["groups"])
    set_strided_input_grad(mode)
    try:  # the mode is read at trace time
        dx = jax.jit(lambda g, w: conv_input_grad(g, w, x.shape, **kw))(g, w)
    finally:
        set_strided_input_grad("auto")
    assert _rel(dx, want) <= 1e-10


@pytest.mark.parametrize(
    "kernel, stride, dilation, mode",
    [
        ((4, 4), (2, 2), (1, 1), "subpixel"),  # every phase has 2 x 2 taps: no zero taps
        ((2, 2), (2, 2), (1, 1), "subpixel"),
        ((3, 3), (2, 2), (1, 1), "polyphase"),  # subpixel would hold 16 taps for 9
        ((1, 1), (2, 2), (1, 1), "polyphase"),
        ((4, 4), (2, 2), (2, 2), "polyphase"),  # dilation 2 sends every tap to phase 0
    ],
)
def test_auto_strided_mode_on_cpu_takes_subpixel_only_for_dense_kernels(
    kernel, stride, dilation, mode
):
    if jax.default_backend() != "cpu":
        pytest.skip("the auto choice is per backend")
    assert _strided_input_grad_mode(kernel, stride, dilation) == mode


def test_auto_strided_mode_off_cpu_is_subpixel_unless_dilation_inflates_it(monkeypatch):
    # GPU/TPU: one convolution, never lhs_dilation (slow on some GPUs).
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    for kernel in [(3, 3), (4, 4), (1, 1)]:
        assert _strided_input_grad_mode(kernel, (2, 2), (1, 1)) == "subpixel"
    assert _strided_input_grad_mode((3, 3), (2, 2), (2, 2)) == "subpixel"  # E = 3 = K
    # Dilation 3 at stride 2 spreads 3 taps over shifts 0, 1, 3: E = 4 > K = 3.
    assert _strided_input_grad_mode((3, 3), (2, 2), (3, 3)) == "interior_pad"


@pytest.mark.parametrize("mode", ["polyphase", "subpixel", "interior_pad"])
def test_strided_input_gradient_modes_use_no_lhs_dilation(mode):
    x, w = jnp.ones((2, 3, 9, 9)), jnp.ones((4, 3, 3, 3))
    set_strided_input_grad(mode)
    try:
        jaxpr = str(
            jax.make_jaxpr(lambda x, w: jax.grad(lambda x: conv(x, w, stride=2).sum())(x))(x, w)
        )
    finally:
        set_strided_input_grad("auto")
    assert "conv_general_dilated" in jaxpr
    assert "lhs_dilation=(2, 2)" not in jaxpr and "lhs_dilation=(1, 1)" in jaxpr


def test_unknown_strided_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        set_strided_input_grad("zero_stuffing")


def test_strided_config_that_aborts_autodiff_is_computed_by_fconvs_rule():
    # jax.vjp of lax.conv_general_dilated w.r.t. the input aborts the process on jaxlib 0.10.2 for
    # this configuration (backward-rules.md). fconv's interior-pad rule must compute it.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 10, 5))
    w = rng.standard_normal((1, 1, 2, 3))
    kw = dict(stride=(2, 2), padding=((1, 2), (0, 0)))
    y, pullback = jax.vjp(functools.partial(conv, **kw), x, w)
    g = rng.standard_normal(y.shape)
    dx, dw = pullback(g)
    rx, rw = reference_vjp(functools.partial(conv, vjp="autodiff", **kw), (x, w), g, (0, 1))
    assert _rel(dx, rx) <= 1e-12 and _rel(dw, rw) <= 1e-12
    # Remainder row (10 + 1 + 2 - 2 = 11 = 5 * 2 + 1): the last input row is reached by a window,
    # so nothing is dropped; every column is reached.
    chex.assert_shape(dx, x.shape)


def test_remainder_rows_never_reached_get_zero_gradient():
    # N=7, K=2, s=3: windows start at 0 and 3; rows 5 and 6 are never read.
    x = jnp.arange(7.0).reshape(1, 1, 7)
    w = jnp.ones((1, 1, 2))
    dx = jax.grad(lambda x: conv(x, w, stride=3).sum())(x)
    np.testing.assert_array_equal(dx[0, 0], [1, 1, 0, 1, 1, 0, 0])


def test_conv_exact_values_with_ones_and_bias():
    x = jnp.ones((1, 2, 5, 5))
    w = jnp.ones((3, 2, 3, 3))
    y = conv(x, w, jnp.ones(3), padding="VALID")
    np.testing.assert_array_equal(y, np.full((1, 3, 3, 3), 19.0))  # 2 * 9 + 1


def test_same_padding_puts_the_odd_pixel_on_the_high_side():
    # N=4, K=2, s=1: total pad 1 -> (0, 1). The last output sees x[3] and a zero.
    x = jnp.arange(1.0, 5.0).reshape(1, 1, 4)
    y = conv(x, jnp.ones((1, 1, 2)), padding="SAME")
    np.testing.assert_array_equal(y[0, 0], [3.0, 5.0, 7.0, 4.0])


def test_full_padding_is_the_full_convolution_of_the_lectures():
    x = jnp.array([[[1.0, 2.0, 3.0]]])
    w = jnp.array([[[1.0, 10.0]]])
    # Cross-correlation with K-1 zeros on each side: every partial overlap.
    np.testing.assert_array_equal(conv(x, w, padding="FULL")[0, 0], [10.0, 21.0, 32.0, 3.0])


def test_channels_last_layout_equals_channels_first():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6))
    w = rng.standard_normal((4, 3, 3, 2))
    kw = dict(stride=2, padding="SAME", dilation=(1, 2))
    y = conv(x, w, **kw)
    y_last = conv(
        np.moveaxis(x, 1, -1), np.transpose(w, (2, 3, 1, 0)), layout="channels_last", **kw
    )
    np.testing.assert_allclose(np.moveaxis(y_last, -1, 1), y, rtol=1e-12)
    gx = jax.grad(lambda x: (conv(x, w, **kw) ** 2).sum())(x)
    gx_last = jax.grad(
        lambda x: (conv(x, np.transpose(w, (2, 3, 1, 0)), layout="channels_last", **kw) ** 2).sum()
    )(np.moveaxis(x, 1, -1))
    np.testing.assert_allclose(np.moveaxis(gx_last, -1, 1), gx, rtol=1e-12)
    # h and g in channels-last layout.
    g = np.ones(y_last.shape)
    w_last = np.transpose(w, (2, 3, 1, 0))
    dx = conv_input_grad(g, w_last, x.transpose(0, 2, 3, 1).shape, layout="channels_last", **kw)
    dw = conv_weight_grad(x.transpose(0, 2, 3, 1), g, w_last.shape, layout="channels_last", **kw)
    _, pb = jax.vjp(
        lambda a, b: conv(a, b, layout="channels_last", **kw), x.transpose(0, 2, 3, 1), w_last
    )
    ex, ew = pb(g)
    np.testing.assert_allclose(dx, ex, rtol=1e-12)
    np.testing.assert_allclose(dw, ew, rtol=1e-12)


class TestTransforms(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_conv_grad_under_jit_and_not(self):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, 4, 9, 8))
        w = rng.standard_normal((6, 2, 3, 3))
        f = functools.partial(conv, stride=2, padding="SAME", groups=2)
        loss = lambda x, w: (f(x, w) ** 2).sum()  # noqa: E731
        loss_ref = lambda x, w: (f(x, w, vjp="autodiff") ** 2).sum()  # noqa: E731
        got = self.variant(jax.grad(loss, (0, 1)))(x, w)
        want = jax.grad(loss_ref, (0, 1))(x, w)
        chex.assert_trees_all_close(got, want, rtol=1e-10)

    def test_vmap_over_an_extra_batch_axis(self):
        rng = np.random.default_rng(1)
        xs = rng.standard_normal((3, 2, 2, 6, 6))
        w = rng.standard_normal((4, 2, 3, 3))
        f = lambda x: conv(x, w, padding="SAME")  # noqa: E731
        chex.assert_trees_all_close(jax.vmap(f)(xs), jnp.stack([f(x) for x in xs]), rtol=1e-12)
        gv = jax.vmap(jax.grad(lambda x: (f(x) ** 2).sum()))(xs)
        gl = jnp.stack([jax.grad(lambda x: (f(x) ** 2).sum())(x) for x in xs])
        chex.assert_trees_all_close(gv, gl, rtol=1e-12)

    def test_grad_of_grad_is_hand_written_and_correct(self):
        # Hessian-vector products through the custom rules equal autodiff's.
        for op in ("conv", "transpose"):
            rng = np.random.default_rng(2)
            if op == "conv":
                x = rng.standard_normal((2, 2, 7, 7))
                w = rng.standard_normal((4, 1, 3, 2))
                kw = dict(stride=(2, 1), padding=((1, 0), (1, 1)), dilation=(1, 2), groups=2)
                fn = conv
            else:
                x = rng.standard_normal((2, 4, 4, 4))
                w = rng.standard_normal((4, 1, 3, 3))
                kw = dict(stride=2, padding=1, output_padding=1, groups=2)
                fn = conv_transpose

            def loss(x, w, vjp, fn=fn, kw=kw):
                return (jnp.tanh(fn(x, w, vjp=vjp, **kw)) ** 2).sum()

            v = (rng.standard_normal(x.shape), rng.standard_normal(w.shape))

            def hvp(vjp, loss=loss, v=v, x=x, w=w):
                gdot = lambda a, b: sum(  # noqa: E731
                    jnp.vdot(p, q) for p, q in zip(jax.grad(loss, (0, 1))(a, b, vjp), v)
                )
                return jax.grad(gdot, (0, 1))(x, w)

            chex.assert_trees_all_close(hvp("custom"), hvp("autodiff"), rtol=1e-9, atol=1e-9)

    def test_grad_of_grad_uses_only_hand_written_rules(self):
        x = jnp.ones((1, 1, 5, 5))
        w = jnp.ones((1, 1, 3, 3))
        jaxpr = str(
            jax.make_jaxpr(
                jax.grad(
                    lambda x: (jax.grad(lambda x: (conv(x, w, stride=2) ** 2).sum())(x) ** 2).sum()
                )
            )(x)
        )
        assert "custom_vjp_call" in jaxpr
        assert "lhs_dilation=(2, 2)" not in jaxpr  # no autodiff transpose of a strided conv


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.bfloat16])
def test_forward_and_backward_dtypes(dtype):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 3, 8, 8)), dtype)
    w = jnp.asarray(rng.standard_normal((4, 3, 3, 3)), dtype)
    y = conv(x, w, padding="SAME", stride=2)
    assert y.dtype == dtype
    want = ref.conv(
        np.asarray(x, np.float64), np.asarray(w, np.float64), (2, 2), [(0, 1), (0, 1)], (1, 1), 1
    )
    tol = 5e-2 if dtype == jnp.bfloat16 else 1e-5
    assert _rel(y, want) <= tol
    dx, dw = jax.grad(lambda x, w: conv(x, w, padding="SAME", stride=2).sum(), (0, 1))(x, w)
    assert dx.dtype == dtype and dw.dtype == dtype


def test_conv_transpose_output_size_and_torch_semantics_by_hand():
    # 1-D, s=2, K=3, padding=1, output_padding=1: out = (M-1)*2 - 2 + 3 + 1 + 1 = 2M.
    x = jnp.array([[[1.0, 2.0]]])
    w = jnp.array([[[1.0, 10.0, 100.0]]])
    y = conv_transpose(x, w, stride=2, padding=1, output_padding=1)
    # Full transposed output before cropping: positions 0..5 = [1, 10, 100+2, 20, 200, 0];
    # crop 1 on the low side -> [10, 102, 20, 200].
    np.testing.assert_array_equal(y[0, 0], [10.0, 102.0, 20.0, 200.0])


def test_conv_transpose_same_padding_gives_m_times_s():
    x = jnp.ones((1, 2, 5, 3))
    w = jnp.ones((2, 3, 4, 4))
    chex.assert_shape(conv_transpose(x, w, stride=2, padding="SAME"), (1, 3, 10, 6))


def test_against_pytorch_functional():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    cases = [
        dict(x=(2, 4, 9, 8), w=(6, 2, 3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2),
        dict(x=(1, 3, 7, 7), w=(3, 1, 3, 3), stride=2, padding=0, dilation=1, groups=3),
        dict(x=(2, 2, 10), w=(4, 2, 4), stride=3, padding=2, dilation=2, groups=1),
    ]
    for c in cases:
        x = rng.standard_normal(c["x"])
        w = rng.standard_normal(c["w"])
        n = x.ndim - 2
        kw = dict(
            stride=c["stride"], padding=c["padding"], dilation=c["dilation"], groups=c["groups"]
        )
        tx = torch.tensor(x, requires_grad=True)
        tw = torch.tensor(w, requires_grad=True)
        ty = getattr(F, f"conv{n}d")(tx, tw, **kw)
        g = rng.standard_normal(tuple(ty.shape))
        ty.backward(torch.tensor(g))
        y, pb = jax.vjp(functools.partial(conv, **kw), x, w)
        dx, dw = pb(g)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-10, atol=1e-10)
        # conv_transpose with the largest output_padding (stride - 1 per dim) against torch.
        xt = rng.standard_normal(ty.shape)
        strides = (c["stride"],) * n if isinstance(c["stride"], int) else c["stride"]
        op = tuple(s - 1 for s in strides)
        tt = getattr(F, f"conv_transpose{n}d")(
            torch.tensor(xt),
            tw.detach(),
            stride=c["stride"],
            padding=c["padding"],
            output_padding=op,
            dilation=c["dilation"],
            groups=c["groups"],
        )
        ours = conv_transpose(
            xt,
            w,
            stride=c["stride"],
            padding=c["padding"],
            output_padding=op,
            dilation=c["dilation"],
            groups=c["groups"],
        )
        np.testing.assert_allclose(ours, tt.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "call, match",
    [
        # channel mismatch
        (lambda: conv(jnp.ones((1, 3, 5, 5)), jnp.ones((2, 2, 3, 3))), "channel mismatch"),
        # groups does not divide the input channels
        (lambda: conv(jnp.ones((1, 3, 5, 5)), jnp.ones((2, 1, 3, 3)), groups=2), "must divide"),
        # groups does not divide the output channels
        (lambda: conv(jnp.ones((1, 4, 5, 5)), jnp.ones((3, 2, 3, 3)), groups=2), "out_channels"),
        # kernel larger than padded input
        (lambda: conv(jnp.ones((1, 1, 2, 2)), jnp.ones((1, 1, 3, 3))), "larger than the padded"),
        (lambda: conv(jnp.ones((1, 1, 5, 5)), jnp.ones((1, 1, 3, 3)), stride=0), "`stride`"),
        (lambda: conv(jnp.ones((1, 1, 5, 5)), jnp.ones((1, 1, 3, 3)), dilation=-1), "`dilation`"),
        (
            lambda: conv(jnp.ones((1, 1, 5, 5)), jnp.ones((1, 1, 3, 3)), stride=(1, 2, 3)),
            "one entry per spatial dimension",
        ),
        (lambda: conv(jnp.ones((5, 5)), jnp.ones((1, 1, 3))), "3-, 4- or 5-D"),
        (lambda: conv(jnp.ones((1, 1, 5, 5)), jnp.ones((1, 1, 3))), "must be 4-D"),
        (
            lambda: conv(jnp.ones((1, 1, 5, 5)), jnp.ones((1, 1, 3, 3)), padding="same-ish"),
            "'VALID', 'SAME' or 'FULL'",
        ),
        (lambda: conv(jnp.ones((1, 1, 5, 5)), jnp.ones((1, 1, 3, 3)), padding=-1), "non-negative"),
        (lambda: conv(jnp.ones((1, 1, 5, 5)), jnp.ones((1, 1, 3, 3)), layout="NHWC"), "`layout`"),
        (lambda: conv(jnp.ones((1, 1, 5, 5)), jnp.ones((1, 1, 3, 3)), vjp="fast"), "`vjp`"),
        (lambda: conv(jnp.ones((1, 1, 5, 5)), jnp.ones((1, 1, 3, 3)), jnp.ones(2)), "`bias`"),
        (
            lambda: conv_transpose(
                jnp.ones((1, 1, 4)), jnp.ones((1, 1, 3)), stride=2, output_padding=2
            ),
            "output_padding",
        ),
        (
            lambda: conv_input_grad(jnp.ones((1, 1, 4)), jnp.ones((1, 1, 3)), (1, 1, 5)),
            "`g` has shape",
        ),
        # empty kernels and inputs
        (lambda: conv(jnp.ones((1, 2, 5, 5)), jnp.ones((0, 2, 3, 3))), "every size >= 1"),
        (lambda: conv_transpose(jnp.ones((1, 2, 5)), jnp.ones((2, 3, 0))), "every size >= 1"),
        (
            lambda: conv_transpose(jnp.ones((1, 2, 0, 5)), jnp.ones((2, 3, 3, 3))),
            r"`x` must have every spatial size >= 1, got shape \(1, 2, 0, 5\)",
        ),
        (
            lambda: conv(jnp.ones((1, 5, 5, 3)), jnp.ones((3, 3, 2, 4)), layout="channels_last"),
            r"kernel expects w.shape\[-2\] \* groups = 2",
        ),
        # conv_transpose names its own kernel layout (C_in, C_out / groups, *kernel)
        (
            lambda: conv_transpose(jnp.ones((1, 2, 5)), jnp.ones((2, 3, 3)), groups=3),
            r"must divide the kernel's C_in \(=2\)",
        ),
        (
            lambda: conv_transpose(jnp.ones((1, 2, 5, 5)), jnp.ones((2, 3, 3))),
            r"`w` must be 4-D \(C_in, C_out / groups, \*kernel\)",
        ),
        (
            lambda: conv_transpose(
                jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 3, 4)), layout="channels_last"
            ),
            r"`w` \(3, 3, 3, 4\) expects w.shape\[-1\] = 4 \(layout \(\*kernel, C_out",
        ),
    ],
)
def test_bad_input_raises_a_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_integer_input_raises_dtype_error_that_is_a_value_and_type_error():
    with pytest.raises(DTypeError, match="`x` must have a floating dtype"):
        conv(jnp.ones((1, 1, 5, 5), jnp.int32), jnp.ones((1, 1, 3, 3)))
    assert issubclass(DTypeError, ValueError) and issubclass(DTypeError, TypeError)


def test_forward_mode_through_custom_vjp_is_refused_but_autodiff_twin_supports_it():
    x, w = jnp.ones((1, 1, 4, 4)), jnp.ones((1, 1, 2, 2))
    with pytest.raises(TypeError):
        jax.jvp(lambda x: conv(x, w), (x,), (x,))
    _, t = jax.jvp(lambda x: conv(x, w, vjp="autodiff"), (x,), (x,))
    np.testing.assert_array_equal(t, np.full((1, 1, 3, 3), 4.0))


@pytest.mark.parametrize(
    "x_shape, kernel, kw",
    [
        ((2, 4, 9, 8), (3, 3), dict(padding="SAME")),  # the MobileNet case
        ((2, 3, 11, 7), (3, 2), dict(stride=(2, 3), padding=((1, 2), (0, 1)), dilation=(2, 1))),
        ((1, 2, 9), (4,), dict(stride=2, padding="FULL")),  # 1-D, even kernel
        ((1, 2, 5, 6, 7), (2, 3, 2), dict(stride=(1, 2, 1), padding="SAME")),  # 3-D
    ],
)
def test_depthwise_conv_by_kernel_taps_on_cpu(x_shape, kernel, kw):
    # groups == C == O: on CPU the forward and input gradient are sums over kernel taps of
    # shifted products (no grouped lax convolution); values and gradients stay exact.
    rng = np.random.default_rng(0)
    c = x_shape[1]
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((c, 1, *kernel))
    f = functools.partial(conv, groups=c, **kw)
    jaxpr = str(jax.make_jaxpr(f)(x, w))
    if jax.default_backend() == "cpu":
        assert "conv_general_dilated" not in jaxpr
    y, pullback = jax.vjp(f, x, w)
    n = len(kernel)
    stride = kw.get("stride", 1)
    stride = (stride,) * n if isinstance(stride, int) else stride
    dilation = kw.get("dilation", 1)
    dilation = (dilation,) * n if isinstance(dilation, int) else dilation
    eff = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    pads = ref.pads_for(kw["padding"], x_shape[2:], eff, stride)
    np.testing.assert_allclose(y, ref.conv(x, w, stride, pads, dilation, c), atol=1e-12)
    g = rng.standard_normal(y.shape)
    dx, dw = pullback(g)
    want_dx, want_dw = ref.conv_vjp(x, w, g, stride, pads, dilation, c)
    np.testing.assert_allclose(dx, want_dx, atol=1e-12)
    np.testing.assert_allclose(dw, want_dw, atol=1e-12)

    # Second order through the taps rules equals autodiff's.
    def hvp(vjp):
        loss = lambda x: (jnp.tanh(f(x, w, vjp=vjp)) ** 2).sum()  # noqa: E731
        return jax.grad(lambda x: jnp.vdot(jax.grad(loss)(x), g.sum() * x))(x)

    chex.assert_trees_all_close(hvp("custom"), hvp("autodiff"), rtol=1e-9, atol=1e-9)


def test_convolution_is_equivariant_to_translation():
    # Lecture 001: f(g(x)) = g(f(x)) for a shift g. With the support away from the borders, a
    # shifted input gives the shifted output exactly; with stride s, a shift of s t moves the
    # output by t.
    rng = np.random.default_rng(0)
    x = np.zeros((1, 2, 16, 16))
    x[:, :, 4:9, 5:10] = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    shift = lambda a, t: np.roll(a, t, axis=(2, 3))  # noqa: E731
    np.testing.assert_allclose(
        conv(shift(x, (2, 3)), w, padding="SAME"),
        shift(conv(x, w, padding="SAME"), (2, 3)),
        atol=1e-12,
    )
    y = conv(x, w, stride=2)
    np.testing.assert_allclose(conv(shift(x, (2, 4)), w, stride=2), shift(y, (1, 2)), atol=1e-12)


@pytest.mark.parametrize(
    "c, kw",
    [
        (3, dict(padding="SAME")),  # an RGB input layer
        (5, dict(stride=2, padding=((1, 0), (2, 1)), dilation=(1, 2))),
    ],
)
def test_odd_input_channels_padded_with_a_zero_channel_on_cpu(c, kw):
    # 2-D, ungrouped, odd C > 1: on CPU the three maps run with one extra zero input channel
    # (XLA's CPU convolutions are 2-3x slower at odd C); values and gradients stay exact.
    from fconv.ops.conv import _geometry

    geo = _geometry((9, 8), (3, 3), 1, "SAME", 1, 1, None, in_channels=c)
    assert geo.in_channel_pad == (1 if jax.default_backend() == "cpu" else 0)
    assert _geometry((9, 8), (3, 3), 1, "SAME", 1, 1, None, in_channels=4).in_channel_pad == 0
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, c, 9, 8))
    w = rng.standard_normal((4, c, 3, 3))
    f = functools.partial(conv, **kw)
    y, pullback = jax.vjp(f, x, w)
    stride = kw.get("stride", 1)
    stride = (stride,) * 2 if isinstance(stride, int) else stride
    dilation = kw.get("dilation", 1)
    dilation = (dilation,) * 2 if isinstance(dilation, int) else dilation
    eff = [d * 2 + 1 for d in dilation]
    pads = ref.pads_for(kw["padding"], x.shape[2:], eff, stride)
    np.testing.assert_allclose(y, ref.conv(x, w, stride, pads, dilation, 1), atol=1e-12)
    g = rng.standard_normal(y.shape)
    dx, dw = pullback(g)
    want_dx, want_dw = ref.conv_vjp(x, w, g, stride, pads, dilation, 1)
    chex.assert_shape((dx, dw), (x.shape, w.shape))
    np.testing.assert_allclose(dx, want_dx, atol=1e-12)
    np.testing.assert_allclose(dw, want_dw, atol=1e-12)
    # The transposed convolution over the same geometry (input gradient map) and second order.
    wt = rng.standard_normal((4, c, 3, 3))
    ct = functools.partial(conv_transpose, **kw)
    chex.assert_trees_all_close(ct(g, wt), ct(g, wt, vjp="autodiff"), rtol=1e-12, atol=1e-12)

    def hvp(vjp):
        loss = lambda x: (jnp.tanh(f(x, w, vjp=vjp)) ** 2).sum()  # noqa: E731
        return jax.grad(lambda x: jnp.vdot(jax.grad(loss)(x), g.sum() * x))(x)

    chex.assert_trees_all_close(hvp("custom"), hvp("autodiff"), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "kernel, kw",
    [
        ((5, 5), dict()),  # LeNet's first layer
        ((3, 2), dict(stride=(2, 1), padding=((1, 0), (0, 1)), dilation=(1, 2))),
    ],
)
def test_single_channel_convolution_by_patch_matrix_product_on_cpu(kernel, kw):
    # 2-D, one input channel, <= 25 taps: on CPU the forward and weight gradient are one matrix
    # product over the patches (no XLA convolution for them); values and gradients stay exact.
    from fconv.ops.conv import _geometry

    cpu = jax.default_backend() == "cpu"
    assert _geometry((9, 8), kernel, 1, "VALID", 1, 1, None, in_channels=1).patch_matmul == cpu
    assert not _geometry((9, 8), (3, 3), 1, "VALID", 1, 1, None, in_channels=2).patch_matmul
    assert not _geometry((9, 8), (6, 6), 1, "VALID", 1, 1, None, in_channels=1).patch_matmul
    # a large image would make the patches (25 copies of the input) a memory cost: not taken
    assert not _geometry((512, 512), (5, 5), 1, "SAME", 1, 1, None, in_channels=1).patch_matmul
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 1, 11, 9))
    w = rng.standard_normal((4, 1, *kernel))
    f = functools.partial(conv, **{"padding": "VALID", **kw})
    if cpu:
        fwd_jaxpr = str(jax.make_jaxpr(f)(x, w))
        assert "conv_general_dilated" not in fwd_jaxpr and "dot_general" in fwd_jaxpr
    y, pullback = jax.vjp(f, x, w)
    stride = kw.get("stride", (1, 1))
    dilation = kw.get("dilation", (1, 1))
    eff = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    pads = ref.pads_for(kw.get("padding", "VALID"), x.shape[2:], eff, stride)
    np.testing.assert_allclose(y, ref.conv(x, w, stride, pads, dilation, 1), atol=1e-12)
    g = rng.standard_normal(y.shape)
    dx, dw = pullback(g)
    want_dx, want_dw = ref.conv_vjp(x, w, g, stride, pads, dilation, 1)
    np.testing.assert_allclose(dx, want_dx, atol=1e-12)
    np.testing.assert_allclose(dw, want_dw, atol=1e-12)

    def hvp(vjp):
        loss = lambda w: (jnp.tanh(f(x, w, vjp=vjp)) ** 2).sum()  # noqa: E731
        return jax.grad(lambda w: jnp.vdot(jax.grad(loss)(w), w))(w)

    chex.assert_trees_all_close(hvp("custom"), hvp("autodiff"), rtol=1e-9, atol=1e-9)


def test_stride_1_conv_custom_vjp_compiles_to_autodiffs_program():
    # The stride-1 rules (flipped-kernel convolution for dx, input/g correlation for dw) are the
    # convolutions XLA gets from jax.grad: the optimised programs are the same, so the custom VJP
    # runs at autodiff's speed by construction (benchmark ratios around 1.0 are timing noise).
    import re

    x = jnp.zeros((4, 8, 10, 10), jnp.float32)
    w = jnp.zeros((16, 8, 3, 3), jnp.float32)
    g = jnp.ones((4, 16, 10, 10), jnp.float32)

    def program(vjp):
        f = functools.partial(conv, padding="SAME", vjp=vjp)
        step = jax.jit(lambda x, w: (lambda y, pb: (y, pb(g)))(*jax.vjp(f, x, w)))
        text = step.lower(x, w).compile().as_text()
        entry = text[text.index("ENTRY") :]
        return [re.sub(r", metadata=\{[^}]*\}", "", line) for line in entry.splitlines()[1:]]

    assert program("custom") == program("autodiff")
