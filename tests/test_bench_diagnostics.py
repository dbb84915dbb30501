"""The diagnostic benchmarks: per-family memory mixes and the per-op step profile (no timings
asserted, only that they measure what they say)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from benchmarks import memory_breakdown, profile_step
from fconv import layers as L

KEY = jax.random.key(0)


def _uses_custom_vjp(layer, shape):
    _, params = layer.init(KEY, shape)
    state = layer.init_state(shape)
    x = jnp.ones(shape, jnp.float32)
    jaxpr = jax.make_jaxpr(lambda p: layer.apply(p, x, train=True, state=state))(params)
    return "custom_vjp_call" in str(jaxpr)


@pytest.mark.parametrize("conv", ["custom", "autodiff"])
@pytest.mark.parametrize("norm", ["custom", "autodiff"])
def test_family_vjps_switches_each_family_and_restores_the_default(conv, norm):
    shape = (2, 2, 6, 6)
    with memory_breakdown.family_vjps(dict(conv=conv, norm=norm, pool="autodiff")):
        built = dict(conv=L.Conv(2, 3), norm=L.BatchNorm(), pool=L.MaxPool(2))
        keyword = L.MaxPool(2, vjp="custom")  # an explicit vjp still wins
    assert _uses_custom_vjp(built["conv"], shape) == (conv == "custom")
    assert _uses_custom_vjp(built["norm"], shape) == (norm == "custom")
    assert not _uses_custom_vjp(built["pool"], shape)
    assert _uses_custom_vjp(keyword, shape)
    assert _uses_custom_vjp(L.MaxPool(2), shape)  # outside: the library default again


def test_family_vjps_refuses_a_layer_module_outside_every_family(monkeypatch):
    monkeypatch.setattr(memory_breakdown, "FAMILIES", {"conv": ("fconv.layers.conv",)})
    with memory_breakdown.family_vjps(dict(conv="custom")):
        L.Conv(2, 3)
        with pytest.raises(RuntimeError, match="fconv.layers.pooling resolves a vjp"):
            L.MaxPool(2)


def test_memory_breakdown_refuses_an_unknown_strided_mode():
    with pytest.raises(SystemExit):
        memory_breakdown.main(["--strided-input-grad", "zero_stuffing"])


def test_cudnn_scratch_is_summed_from_the_conv_custom_calls_only():
    target = 'custom-call(%x), custom_call_target="__{}"'
    hlo = "\n".join(
        [
            "%a = (f32[4,8]{1,0}, u8[1024]{0}) " + target.format("cudnn$convForward"),
            "%b = (f32[8]{0}, u8[64]{0}) " + target.format("cudnn$convBackwardInput"),
            "%c = (f32[4]{0}, u8[999]{0}) " + target.format("cublas$gemm"),
            "%d = u8[5]{0} parameter(0)",
        ]
    )
    assert memory_breakdown.cudnn_workspace_bytes(hlo) == 1024 + 64


@pytest.mark.slow
def test_memory_breakdown_covers_every_mix_relative_to_all_autodiff():
    rows = memory_breakdown.run("lenet5")
    assert len(rows) == 2 ** len(memory_breakdown.FAMILIES)
    picks = {tuple(r[f] for f in memory_breakdown.FAMILIES) for r in rows}
    assert len(picks) == len(rows)
    base = next(r for r in rows if all(r[f] == "autodiff" for f in memory_breakdown.FAMILIES))
    assert base["vs_all_autodiff"] == 1.0
    assert all(r["temp_bytes"] > 0 for r in rows)
    if jax.default_backend() == "cpu":  # no cuDNN: nothing to count
        assert all(r["cudnn_scratch_bytes"] == 0 for r in rows)


def test_hlo_ops_sorts_entry_ops_into_categories():
    def f(x, w):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME")
        return jnp.transpose(jnp.maximum(y, 0.0), (3, 1, 2, 0)), jnp.sum(y)

    x, w = jnp.ones((2, 3, 8, 8)), jnp.ones((4, 3, 3, 3))
    ops = profile_step.hlo_ops(jax.jit(f).lower(x, w).compile().as_text())
    categories = {info["category"] for info in ops.values()}
    assert "convolution" in categories  # an HLO convolution, or cuDNN's custom call on GPU
    if jax.default_backend() == "cpu":
        assert {"transpose/copy", "reduce"} <= categories
    conv = [info for info in ops.values() if info["category"] == "convolution"]
    assert any("conv_general_dilated" in info["origin"] for info in conv)


def test_hlo_ops_reads_multi_output_custom_calls_as_gpu_convolutions_and_gemms():
    hlo = "\n".join(
        [
            "HloModule m",
            "",
            "ENTRY %main (p: f32[2]) -> f32[2] {",
            "  %p = f32[2]{0} parameter(0)",
            "  %cudnn-conv.1 = (f32[2]{0}, u8[0]{0}) custom-call(%p), "
            'custom_call_target="__cudnn$convForward", metadata={op_name="jit(f)/conv"}',
            '  %gemm.2 = (f32[2]{0}, s8[8]{0}) custom-call(%p), custom_call_target="__cublas$gemm"',
            "  ROOT %gte = f32[2]{0} get-tuple-element(%cudnn-conv.1), index=0",
            "}",
        ]
    )
    ops = profile_step.hlo_ops(hlo)
    assert ops["cudnn-conv.1"] == dict(
        shape="(f32[2]{0}, u8[0]{0})", category="convolution", origin="jit(f)/conv"
    )
    assert ops["gemm.2"]["category"] == "dot"


def test_instruction_lines_keep_nested_tuple_and_tiled_shapes_whole():
    read = profile_step._instruction
    assert read("  %w = ((f32[], s32[]), u8[4]{0}) while(%t), condition=%c") == (
        "w",
        "((f32[], s32[]), u8[4]{0})",
        "while",
    )
    assert read("  ROOT %a = f32[8,128]{1,0:T(8,128)} add(%x, %y)") == (
        "a",
        "f32[8,128]{1,0:T(8,128)}",
        "add",
    )
    assert read("HloModule m") is None


def test_a_fusion_ending_in_a_bitcast_of_a_transpose_is_a_layout_change():
    body = [
        "  %p = f32[4,2]{1,0} parameter(0)",
        "  %t = f32[2,4]{0,1} transpose(%p), dimensions={1,0}",
        "  %c = f32[2,4]{1,0} copy(%t)",
        "  ROOT %b = f32[8]{0} bitcast(%c)",
    ]
    assert profile_step._category("fusion", body, "") == "transpose/copy"
    assert profile_step._category("fusion", [*body[:1], "  ROOT %m = f32[4,2]{1,0} "
                                  "maximum(%p, %p)"], "") == "elementwise"  # fmt: skip


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="per-op trace events are CPU-only")
def test_profile_attributes_step_time_to_named_ops():
    result = profile_step.profile("lenet5", reps=1)
    assert result["ops"] and all(r["ms"] >= 0 for r in result["ops"])
    assert result["categories"]["convolution"] > 0
    assert sum(result["categories"].values()) == pytest.approx(sum(r["ms"] for r in result["ops"]))
    with pytest.raises(SystemExit):
        profile_step.main(["--reps", "0"])
