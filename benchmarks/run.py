"""Run the benchmark suite: ``python -m benchmarks.run [--quick] [--json out.json]``.

Every figure is a ratio against a baseline timed in the same run (median of >= 20 iterations
after warm-up, ``block_until_ready``), with absolute milliseconds for context. Sections:

* ``ops``: single ops, forward / forward+backward / backward alone, custom VJP vs autodiff twin;
* ``layout``: NCHW vs channels-last, forward+backward of every op case;
* ``train``: whole training steps (forward, backward, SGD-momentum update, jit) of LeNet-5,
  VGG-small and ResNet-small: fconv custom vs autodiff vs Flax/Equinox/Haiku/PyTorch when
  installed; compile time and XLA temp memory (``memory_analysis``), custom vs autodiff;
* ``throughput``: images/s of ``fconv.train.fit`` on the bundled digits;
* ``fastcpu``: the ops and train sections again in a subprocess with
  ``fconv.perf.enable_fast_cpu()``, the JAX peers under the flag too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

SECTIONS = ("ops", "layout", "train", "throughput", "fastcpu")
# fconv.ops.conv._STRIDED_MODES, spelled out so that --help works before JAX is imported.
STRIDED_MODES = ("auto", "polyphase", "subpixel", "interior_pad", "lhs_dilation")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return "" if v is None else str(v)


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows as a Markdown table with the given columns (missing cells left blank)."""
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def _throughput(quick: bool) -> list[dict[str, Any]]:
    from fconv import data, models, optim, train

    ds = data.load_digits(seed=0)
    model = models.lenet5(num_classes=10, input_shape=ds.input_shape)
    t0 = time.perf_counter()
    history, _ = train.fit(
        model,
        ds,
        epochs=1 if quick else 3,
        batch_size=64,
        optimizer=optim.adam(1e-3),
        seed=0,
        progress=False,
    )
    wall = time.perf_counter() - t0
    last = history[-1]
    return [
        dict(
            model="lenet5",
            data="digits",
            epochs=len(history),
            images_per_sec=last.get("images_per_sec"),
            test_acc=last.get("test_acc"),
            wall_s=wall,
        )
    ]


def _fastcpu(quick: bool, strided_input_grad: str, peers: list[str]) -> dict[str, Any]:
    """The ops and train sections again in a fresh process with the fast-CPU XLA flag (same
    strided mode, same peers: they run under the flag too, so the ratios stay like for like).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "fast.json")
        cmd = [sys.executable, "-m", "benchmarks.run", "--sections", "ops,train", "--fast-cpu"]
        cmd += ["--strided-input-grad", strided_input_grad]
        cmd += ["--peers", ",".join(peers)] if peers else ["--no-peers"]
        cmd += ["--json", out] + (["--quick"] if quick else [])
        subprocess.run(cmd, check=True, capture_output=True, timeout=3600)
        with open(out) as f:
            return json.load(f)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller batches, fewer iterations")
    parser.add_argument("--json", help="write all results to this JSON file")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma list from {', '.join(SECTIONS)}"
    )
    parser.add_argument("--iters", type=int, default=None, help="timed iterations (default 20)")
    parser.add_argument("--no-peers", action="store_true", help="skip Flax/Equinox/Haiku/torch")
    parser.add_argument(
        "--peers", default=None, help="comma list of peers to run (default: all installed)"
    )
    parser.add_argument("--fast-cpu", action="store_true", help="enable the fast-CPU XLA flag")
    parser.add_argument(
        "--strided-input-grad",
        default="auto",
        choices=STRIDED_MODES,
        help="fconv.ops.conv.set_strided_input_grad mode for the custom rules (default auto: "
        "chosen per backend and kernel; the JSON records the requested mode)",
    )
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown --sections {unknown}; choose from {list(SECTIONS)}")
    if args.fast_cpu:
        from fconv import perf

        perf.enable_fast_cpu()
    import jax

    from benchmarks import ops, train_step
    from fconv.ops.conv import set_strided_input_grad

    set_strided_input_grad(args.strided_input_grad)

    iters = args.iters or (5 if args.quick else 20)
    results: dict[str, Any] = {
        "machine": dict(
            backend=jax.default_backend(),
            devices=[str(d) for d in jax.devices()],
            platform=platform.platform(),
            cpus=os.cpu_count(),
            jax=jax.__version__,
            xla_flags=os.environ.get("XLA_FLAGS", ""),
            strided_input_grad_requested=args.strided_input_grad,
            quick=args.quick,
            iters=iters,
        )
    }
    print(f"# fconv benchmarks on {results['machine']['devices']} (jax {jax.__version__})\n")
    if "ops" in sections:
        results["ops"] = ops.run(args.quick, iters)
        print("## Single ops, custom VJP vs autodiff (ms; speed-up = autodiff / custom)\n")
        print(
            markdown_table(
                results["ops"],
                [
                    "name",
                    "custom_fwd_ms",
                    "custom_fwd_bwd_ms",
                    "autodiff_fwd_bwd_ms",
                    "fwd_bwd_speedup",
                    "custom_bwd_ms",
                    "autodiff_bwd_ms",
                    "bwd_speedup",
                    "custom_fwd_bwd_gflops",
                ],
            ),
            end="\n\n",
            flush=True,
        )
    if "layout" in sections:
        results["layout"] = ops.run_layouts(args.quick, max(5, iters // 2))
        print("## Layout: forward+backward with custom VJPs (ms)\n")
        print(
            markdown_table(
                results["layout"],
                [
                    "name",
                    "channels_first_ms",
                    "channels_last_ms",
                    "nchw_over_nhwc",
                ],
            ),
            end="\n\n",
            flush=True,
        )
    if "train" in sections:
        only = set(args.peers.split(",")) if args.peers else None
        results["train"] = train_step.run(args.quick, iters, peers=not args.no_peers, only=only)
        cols = ["model", "batch", "fconv_custom_ms", "fconv_autodiff_ms", "speedup_vs_autodiff"]
        cols += [
            c
            for c in ("flax_ms", "equinox_ms", "haiku_ms", "torch_ms", "torch_channels_last_ms")
            if any(c in r for r in results["train"])
        ]
        cols += ["speedup_vs_fastest_jax_peer", "ratio_to_fastest_torch"]
        print("## Training step (ms per step)\n")
        print(markdown_table(results["train"], cols), end="\n\n")
        print("## Compile time and XLA temp memory of the training step\n")
        print(
            markdown_table(
                results["train"],
                [
                    "model",
                    "fconv_custom_compile_s",
                    "fconv_autodiff_compile_s",
                    "fconv_custom_temp_bytes",
                    "fconv_autodiff_temp_bytes",
                    "temp_memory_ratio",
                ],
            ),
            end="\n\n",
            flush=True,
        )
    if "throughput" in sections:
        results["throughput"] = _throughput(args.quick)
        print("## fconv train on the digits (LeNet-5, batch 64)\n")
        print(
            markdown_table(
                results["throughput"],
                [
                    "model",
                    "data",
                    "epochs",
                    "images_per_sec",
                    "test_acc",
                    "wall_s",
                ],
            ),
            end="\n\n",
            flush=True,
        )
    if "fastcpu" in sections and jax.default_backend() == "cpu" and not args.fast_cpu:
        # The JAX peers run under the flag too (torch ignores XLA's flags, so it is left out).
        if args.no_peers:
            jax_peers = []
        else:
            from benchmarks.peers import available_peers

            wanted = args.peers.split(",") if args.peers else available_peers()
            jax_peers = [p for p in wanted if not p.startswith("torch")]
        fast = _fastcpu(args.quick, args.strided_input_grad, jax_peers)
        base = {r["name"]: r for r in results.get("ops") or ops.run(args.quick, iters)}
        rows = []
        for r in fast["ops"]:
            b = base[r["name"]]
            rows.append(
                dict(
                    name=r["name"],
                    default_ms=b["custom_fwd_bwd_ms"],
                    fast_cpu_ms=r["custom_fwd_bwd_ms"],
                    speedup=b["custom_fwd_bwd_ms"] / r["custom_fwd_bwd_ms"],
                    fast_cpu_vs_autodiff=r["fwd_bwd_speedup"],
                )
            )
        flags = fast["machine"]["xla_flags"]  # as the child process ran
        results["fastcpu"] = dict(ops=rows, train=fast["train"], xla_flags=flags)
        print("## fconv.perf.enable_fast_cpu(): forward+backward, custom VJP (ms)\n")
        cols = ["name", "default_ms", "fast_cpu_ms", "speedup", "fast_cpu_vs_autodiff"]
        print(markdown_table(rows, cols), end="\n\n")
        print("## Training step under enable_fast_cpu(), JAX peers under it too (ms per step)\n")
        cols = ["model", "fconv_custom_ms", "fconv_autodiff_ms", "speedup_vs_autodiff"]
        peer_cols = ("flax_ms", "equinox_ms", "haiku_ms")
        cols += [c for c in peer_cols if any(c in r for r in fast["train"])]
        cols += ["speedup_vs_fastest_jax_peer", "temp_memory_ratio"]
        print(markdown_table(fast["train"], cols), end="\n\n")
    if args.json:
        from fconv.atomic_io import save_json_atomic

        save_json_atomic(args.json, results)
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
