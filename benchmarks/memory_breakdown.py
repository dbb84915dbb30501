"""Which backward rules cost training-step memory: XLA temp bytes per mix of custom and autodiff.

``python -m benchmarks.memory_breakdown [--model resnet_small] [--strided-input-grad MODE]
[--hlo-dir DIR]`` compiles the model's training step (``benchmarks.train_step.fconv_step``) once
for every mix of the hand-written rules and the autodiff twins over three op families (the
convolutions, the normalisation layers, the pooling layers) and prints the temp bytes of each,
relative to all-autodiff. The family whose switch moves the figure is the one to look at.

On GPU it also sums the scratch (workspace) buffers of the cuDNN convolution custom calls, which
``memory_analysis`` counts as temp, so a difference there can be told apart from activations.
``--hlo-dir`` writes the optimised HLO of the all-custom and all-autodiff steps for reading.

The per-family switch wraps ``fconv.layers.base.resolve_vjp`` for the duration of one model
construction and picks by the calling layer module; it is a measuring device, not an API.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

import jax

from benchmarks.run import STRIDED_MODES
from benchmarks.train_step import MODELS, fconv_step
from fconv.layers import base
from fconv.ops.conv import set_strided_input_grad

FAMILIES = {
    "conv": ("fconv.layers.conv", "fconv.layers.local"),
    "norm": ("fconv.layers.normalization",),
    "pool": ("fconv.layers.pooling", "fconv.layers.pooling_family"),
}


@contextlib.contextmanager
def family_vjps(choice: dict[str, str]) -> Iterator[None]:
    """Layers built inside take ``choice[family]`` ("custom"/"autodiff") when given no ``vjp``."""
    module_family = {m: fam for fam, mods in FAMILIES.items() for m in mods}
    original = base.resolve_vjp

    def resolve(vjp: str | None) -> str:
        if vjp is not None:
            return original(vjp)
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller not in module_family:  # a silent library default would skew the mix
            raise RuntimeError(
                f"family_vjps: {caller} resolves a vjp but is in no family of FAMILIES; add it."
            )
        return original(choice[module_family[caller]])

    base.resolve_vjp = resolve
    try:
        yield
    finally:
        base.resolve_vjp = original


_WORKSPACE = re.compile(r"custom-call\(.*custom_call_target=\"__cudnn\$conv")
_U8 = re.compile(r"u8\[(\d+)\]")


def cudnn_workspace_bytes(hlo_text: str) -> int:
    """Sum of the u8 scratch outputs of the cuDNN convolution custom calls in an HLO module."""
    total = 0
    for line in hlo_text.splitlines():
        if _WORKSPACE.search(line):
            lhs = line.split("custom-call(", 1)[0]
            total += sum(int(n) for n in _U8.findall(lhs))
    return total


def run(model: str, hlo_dir: str | None = None) -> list[dict[str, Any]]:
    """Temp bytes (and cuDNN scratch bytes) of ``model``'s step for every family mix."""
    rows = []
    for picks in itertools.product(("autodiff", "custom"), repeat=len(FAMILIES)):
        choice = dict(zip(FAMILIES, picks))
        with family_vjps(choice):
            # vjp=None: each layer resolves its own family's choice through the wrapper.
            step, args = fconv_step(model, None)
        compiled = step.lower(*args).compile()
        temp = compiled.memory_analysis().temp_size_in_bytes
        text = compiled.as_text()
        rows.append(dict(choice, temp_bytes=temp, cudnn_scratch_bytes=cudnn_workspace_bytes(text)))
        if hlo_dir and len(set(picks)) == 1:
            os.makedirs(hlo_dir, exist_ok=True)
            with open(os.path.join(hlo_dir, f"{model}_{picks[0]}.hlo.txt"), "w") as f:
                f.write(text)
    base_temp = next(r["temp_bytes"] for r in rows if all(r[f] == "autodiff" for f in FAMILIES))
    for r in rows:
        if r["temp_bytes"] and base_temp:
            r["vs_all_autodiff"] = r["temp_bytes"] / base_temp
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet_small", choices=sorted(MODELS))
    parser.add_argument("--strided-input-grad", default="auto", choices=STRIDED_MODES)
    parser.add_argument("--hlo-dir", default=None, help="write the optimised HLO here")
    parser.add_argument("--json", default=None, help="write the result to this file")
    args = parser.parse_args(argv)
    set_strided_input_grad(args.strided_input_grad)
    rows = run(args.model, args.hlo_dir)
    print(
        f"## {args.model} temp memory by family ({jax.default_backend()}, "
        f"strided input gradient {args.strided_input_grad})\n"
    )
    print("| " + " | ".join(FAMILIES) + " | temp MiB | vs all-autodiff | cuDNN scratch MiB |")
    print("|---" * (len(FAMILIES) + 3) + "|")
    for r in rows:
        picks = " | ".join(r[f] for f in FAMILIES)
        print(
            f"| {picks} | {r['temp_bytes'] / 2**20:.2f} | "
            f"{r.get('vs_all_autodiff', float('nan')):.3f} | "
            f"{r['cudnn_scratch_bytes'] / 2**20:.2f} |"
        )
    if args.json:
        result = dict(
            model=args.model,
            backend=jax.default_backend(),
            jax=jax.__version__,
            strided_input_grad=args.strided_input_grad,
            rows=rows,
        )
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
