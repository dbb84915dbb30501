"""Where a training step's time goes: XLA's own per-op timings of one fconv model, by category.

``python -m benchmarks.profile_step [--model vgg_small] [--vjp custom] [--reps 5] [--top 15]
[--json FILE]`` runs the jitted step (``benchmarks.train_step.fconv_step``) under
``jax.profiler`` and reads the trace: on the CPU, XLA records one event per executed HLO op (a
convolution, a fusion, a copy), named as in the optimised HLO. Each op's time is the mean per
step (the mean over ``--reps`` profiled steps after one warm-up: take more reps on a noisy
machine); its category comes from the HLO: ``convolution`` (a convolution inside, e.g.
XLA:CPU's ynn fusions, or cuDNN's custom call), ``dot``, ``transpose/copy`` (a copy, or a fusion
whose root, seen through bitcasts, is a transpose or copy: a layout change, whatever
elementwise work the loop also does), ``scatter`` (e.g. the expansion of autodiff's
select-and-scatter), ``reduce`` and ``elementwise`` (other loop fusions). Prints the category
totals and the ``--top`` ops with their shape and JAX origin. Only the entry computation's ops
are attributed (none of the three models has loops or calls). XLA runs independent ops
concurrently, so the totals can exceed the step's wall time; read the shares, and time the
step itself with ``benchmarks.run``.

The per-op events exist on the CPU backend only (elsewhere the trace names device kernels), so
the tool refuses other backends.
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

_NAME = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = ")
_OPCODE = re.compile(r"\s*([\w\-]+)\(")
_CALLS = re.compile(r"calls=%([\w.\-]+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_COMPUTATION = re.compile(r"^%([\w.\-]+) ")


def _instruction(line: str) -> tuple[str, str, str] | None:
    """``(name, shape, opcode)`` of an HLO instruction line, or None for other lines.

    The shape is read by counting brackets, so tuples (``(f32[2], u8[0])``, nested ones too)
    and layouts with parentheses (``{1,0:T(8,128)}``) stay whole.
    """
    m = _NAME.match(line)
    if not m:
        return None
    i, depth = m.end(), 0
    for j in range(m.end(), len(line)):
        c = line[j]
        depth += c in "([{"
        depth -= c in ")]}"
        if depth == 0 and (c == " " or j == len(line) - 1):
            i = j
            break
    op = _OPCODE.match(line, i)
    return (m.group(1), line[m.end() : i].strip(), op.group(1)) if op else None


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


_LAYOUT_OPS = {"copy", "transpose"}


def _category(opcode: str, body: list[str], instruction: str) -> str:
    parsed = [p for line in body if (p := _instruction(line))]
    ops = {op for _, _, op in parsed}
    target = re.search(r'custom_call_target="([^"]*)"', instruction)
    if opcode == "convolution" or "convolution" in ops or (target and "conv" in target.group(1)):
        return "convolution"
    if opcode == "dot" or "dot" in ops or (target and "gemm" in target.group(1).lower()):
        return "dot"
    if opcode in ("scatter", "select-and-scatter") or {"scatter", "select-and-scatter"} & ops:
        return "scatter"
    # A layout change: a copy/transpose, or a fusion whose root (seen through bitcasts and
    # reshapes) is one, whatever elementwise work the loop also recomputes.
    by_name = {name: op for name, _, op in parsed}
    root = next((line for line in body if line.lstrip().startswith("ROOT")), "")
    root_op = (_instruction(root) or ("", "", ""))[2]
    while root_op in ("bitcast", "reshape"):
        operand = re.search(r"\(%([\w.\-]+)", root)
        root = next((line for line in body if operand and _name_is(line, operand.group(1))), "")
        root_op = by_name.get(operand.group(1), "") if operand else ""
    if opcode in _LAYOUT_OPS or root_op in _LAYOUT_OPS:
        return "transpose/copy"
    if opcode in ("reduce", "reduce-window") or {"reduce", "reduce-window"} & ops:
        return "reduce"
    return "elementwise"


def _name_is(line: str, name: str) -> bool:
    m = _NAME.match(line)
    return bool(m) and m.group(1) == name


def hlo_ops(hlo: str) -> dict[str, dict[str, str]]:
    """Entry-computation ops of an optimised HLO module: name -> shape, category, JAX origin."""
    bodies = _computations(hlo)
    ops = {}
    for line in bodies.get("ENTRY", []):
        parsed = _instruction(line)
        if parsed is None:
            continue
        name, shape, opcode = parsed
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
    platform = jax.devices()[0].platform
    if platform != "cpu":
        parser.error(
            f"profile_step reads XLA:CPU's per-op trace events; this backend is {platform!r}. "
            "Run it with JAX_PLATFORMS=cpu, or use the JAX profiler's own viewer on a GPU."
        )
    result = profile(args.model, args.vjp, args.reps)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    print(f"## {args.model} ({args.vjp} VJPs) on {platform}: ms per step\n")
    if not result["ops"]:
        print("No trace event matched an op of the step's HLO.")
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
