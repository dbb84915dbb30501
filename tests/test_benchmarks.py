"""The benchmark harness: round-robin timing and a smoke run of the suite (no timings asserted)."""

from __future__ import annotations

import json

import pytest

from benchmarks.run import main, markdown_table
from benchmarks.timing import time_interleaved


def test_time_interleaved_calls_every_contender_once_per_round_rotating_the_start():
    calls = []
    fns = {name: (lambda name=name: calls.append(name) or 0.0) for name in ("a", "b", "c")}
    ms = time_interleaved(fns, iters=4, warmup=1, inner=1)  # one call per sample (CPU default)
    assert set(ms) == {"a", "b", "c"} and all(v >= 0.0 for v in ms.values())
    assert calls[:3] == ["a", "b", "c"]  # warm-up, then rounds starting one place later each
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]


def test_markdown_table_leaves_missing_cells_blank():
    table = markdown_table([dict(name="x", v=1.23456), dict(name="y")], ["name", "v"])
    assert table.splitlines() == ["| name | v |", "|---|---|", "| x | 1.23 |", "| y |  |"]


@pytest.mark.slow
def test_quick_suite_writes_json_with_ratios(tmp_path):
    out = tmp_path / "bench.json"
    main(["--quick", "--sections", "train", "--no-peers", "--iters", "2", "--json", str(out)])
    rows = {r["model"]: r for r in json.loads(out.read_text())["train"]}
    assert set(rows) == {"lenet5", "vgg_small"}
    for r in rows.values():
        assert r["fconv_custom_ms"] > 0 and r["speedup_vs_autodiff"] > 0
        assert r["temp_memory_ratio"] <= 1.0  # the hand-written rules never need more memory


def test_time_interleaved_inner_calls_back_to_back_within_a_sample():
    calls = []
    fns = {name: (lambda name=name: calls.append(name) or 0.0) for name in ("a", "b")}
    time_interleaved(fns, iters=2, warmup=0, inner=3)
    assert calls == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3


def test_time_interleaved_of_no_contenders_is_empty():
    assert time_interleaved({}, iters=3) == {}


def test_time_interleaved_rejects_inner_below_one():
    with pytest.raises(ValueError, match="inner"):
        time_interleaved({"a": lambda: 0.0}, iters=1, inner=0)


def test_runner_lists_the_strided_modes_of_fconv():
    from benchmarks.run import STRIDED_MODES
    from fconv.ops.conv import _STRIDED_MODES

    assert STRIDED_MODES == _STRIDED_MODES


def test_runner_refuses_an_unknown_strided_mode():
    with pytest.raises(SystemExit):
        main(["--sections", "ops", "--strided-input-grad", "zero_stuffing"])


@pytest.mark.slow
def test_fastcpu_section_reruns_ops_and_train_under_the_flag_in_a_child_process(tmp_path):
    from fconv.perf import FAST_CPU_FLAG

    out = tmp_path / "bench.json"
    main(["--quick", "--sections", "fastcpu", "--no-peers", "--iters", "2", "--json", str(out)])
    fast = json.loads(out.read_text())["fastcpu"]
    assert FAST_CPU_FLAG in fast["xla_flags"]
    assert {r["name"] for r in fast["ops"]} >= {"conv 3x3 SAME 32->64", "max_pool 2x2"}
    assert all(r["default_ms"] > 0 and r["fast_cpu_ms"] > 0 for r in fast["ops"])
    assert {r["model"] for r in fast["train"]} == {"lenet5", "vgg_small"}
    assert all(r["fconv_custom_ms"] > 0 for r in fast["train"])
