"""Where a training step's time goes: XLA's own per-op timings of one fconv model, by category.

``python -m benchmarks.profile_step [--model vgg_small] [--vjp custom] [--reps 5] [--top 15]
[--json FILE]`` runs the jitted step (``benchmarks.train_step.fconv_step``) under
``jax.profiler`` and reads the trace: on the CPU, XLA records one event per executed HLO op (a
convolution, a fusion, a copy), named as in the optimised HLO. Each op's time is the mean per
step; its category comes from the HLO: ``convolution`` (a convolution inside, e.g. XLA:CPU's ynn
fusions), ``dot``, ``transpose`` (a fusion or copy whose root is a layout change), ``scatter``
(e.g. the expansion of autodiff's select-and-scatter), ``reduce`` and ``elementwise`` (other
loop fusions). Prints the category totals and the ``--top`` ops with their shape and JAX
origin. XLA runs independent ops concurrently, so the totals can exceed the step's wall time;
read the shares, and time the step itself with ``benchmarks.run``.

The per-op events exist on the CPU backend; on other backends the trace names device kernels,
not HLO ops, and the tool says that it found none.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import tempfile
from collections.abc import Callable
from typing import Any

import jax

from benchmarks.train_step import MODELS, _donating_once, fconv_step

# name = shape opcode(...), the shape a tuple "(f32[..], u8[..])" for multi-output ops.
_INSTR = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (\([^()]*\)|\S+) ([\w\-]+)\(")
_CALLS = re.compile(r"calls=%([\w.\-]+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_COMPUTATION = re.compile(r"^%([\w.\-]+) ")


def _computations(hlo: str) -> dict[str, list[str]]:
    """Body lines of every named computation of an HLO module's text."""
    bodies: dict[str, list[str]] = {}
    name = None
    for line in hlo.splitlines():
        header = _COMPUTATION.match(line)
        if header and line.rstrip().endswith("{"):
            name = header.group(1)
            bodies[name] = []
        elif line.startswith("ENTRY"):
            name = "ENTRY"
            bodies[name] = []
        elif line.startswith("}"):
            name = None
        elif name is not None:
            bodies[name].append(line)
    return bodies


def _category(opcode: str, body: list[str], instruction: str) -> str:
    ops = {m.group(3) for line in body if (m := _INSTR.match(line))}
    target = re.search(r'custom_call_target="([^"]*)"', instruction)
    if opcode == "convolution" or "convolution" in ops or (target and "conv" in target.group(1)):
        return "convolution"
    if opcode == "dot" or "dot" in ops or (target and "gemm" in target.group(1).lower()):
        return "dot"
    root = next((line for line in body if line.lstrip().startswith("ROOT")), "")
    if opcode in ("copy", "transpose") or (
        "transpose" in ops and re.search(r"= \S+ (copy|transpose)\(", root)
    ):
        return "transpose"
    if opcode in ("scatter", "select-and-scatter") or {"scatter", "select-and-scatter"} & ops:
        return "scatter"
    if opcode == "reduce" or "reduce" in ops or "reduce-window" in ops:
        return "reduce"
    return "elementwise"


def hlo_ops(hlo: str) -> dict[str, dict[str, str]]:
    """Entry-computation ops of an optimised HLO module: name -> shape, category, JAX origin."""
    bodies = _computations(hlo)
    ops = {}
    for line in bodies.get("ENTRY", []):
        m = _INSTR.match(line)
        if not m:
            continue
        name, shape, opcode = m.groups()
        called = _CALLS.search(line)
        body = bodies.get(called.group(1), []) if called else []
        # A fusion's own metadata may be empty; then the first fused op's origin names it.
        origin = next(filter(None, map(_OP_NAME.search, [line, *body])), None)
        ops[name] = dict(
            shape=shape,
            category=_category(opcode, body, line),
            origin=origin.group(1) if origin else "",
        )
    return ops


def op_times(run_once: Callable[[], Any], reps: int) -> dict[str, float]:
    """Mean ms per call of every trace event (complete events, summed per name) over ``reps``."""
    jax.block_until_ready(run_once())
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            for _ in range(reps):
                jax.block_until_ready(run_once())
        (path,) = glob.glob(f"{tmp}/**/*.trace.json.gz", recursive=True)
        with gzip.open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    total: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("ph") == "X":
            total[e["name"]] += e.get("dur", 0)
    return {name: us / reps / 1000 for name, us in total.items()}


def profile(model: str, vjp: str = "custom", reps: int = 5) -> dict[str, Any]:
    """Per-op and per-category ms of one training step of ``model``."""
    step, args = fconv_step(model, vjp)
    ops = hlo_ops(step.lower(*args).compile().as_text())
    times = op_times(_donating_once(step, args), reps)
    rows = [dict(op=name, ms=times[name], **info) for name, info in ops.items() if name in times]
    rows.sort(key=lambda r: -r["ms"])
    by_category: collections.Counter[str] = collections.Counter()
    for r in rows:
        by_category[r["category"]] += r["ms"]
    return dict(model=model, vjp=vjp, ops=rows, categories=dict(by_category.most_common()))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vgg_small", choices=sorted(MODELS))
    parser.add_argument("--vjp", default="custom", choices=["custom", "autodiff"])
    parser.add_argument("--reps", type=int, default=5, help="profiled steps (default 5)")
    parser.add_argument("--top", type=int, default=15, help="ops listed (default 15)")
    parser.add_argument("--json", default=None, help="write the result to this file")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.top < 0:
        parser.error(f"--reps must be >= 1 and --top >= 0, got {args.reps} and {args.top}")
    result = profile(args.model, args.vjp, args.reps)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    print(f"## {args.model} ({args.vjp} VJPs) on {jax.devices()[0].platform}: ms per step\n")
    if not result["ops"]:
        print("No per-op events in the trace (they exist on the CPU backend).")
        return result
    total = sum(result["categories"].values())
    print("| category | ms | share |\n|---|---|---|")
    for cat, ms in result["categories"].items():
        print(f"| {cat} | {ms:.2f} | {ms / total:.0%} |")
    print(f"| all ops | {total:.2f} | |\n")
    print("| op | category | ms | shape | from |\n|---|---|---|---|---|")
    for r in result["ops"][: args.top]:
        print(f"| {r['op']} | {r['category']} | {r['ms']:.2f} | {r['shape']} | {r['origin']} |")
    return result


if __name__ == "__main__":
    main()
