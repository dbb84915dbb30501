"""The ``fconv`` command: ``train``, ``eval``, ``gradcheck`` and ``plot``.

``fconv train`` with no flags trains LeNet-5 on scikit-learn's bundled 8x8 digits into
``runs/lenet5-digits``; ``fconv eval`` and ``fconv plot`` then read that run. The training logic
lives in :mod:`fconv.train`, the models, optimizers and datasets chosen by name in
:mod:`fconv.recipes`, and the loading of a run in :mod:`fconv.runs`; this module only parses
flags and prints. Every error a user can cause (a bad flag, a missing file or data directory, a
checkpoint that does not match) is one line on stderr and exit status 2; set ``FCONV_DEBUG=1``
to get the traceback instead.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fconv import metrics_log, parallel, recipes, runs, train

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line: ``fconv train: error: ...``."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class UsageError(Exception):
    """A mistake on the command line found after parsing (exit status 2)."""


# --------------------------------------------------------------------------------------------
# train: option groups. Each adder registers one argparse group; _fit_kwargs maps the parsed
# flags to fit() keyword arguments. A new group (e.g. multi-device --devices/--coordinator/
# --num-processes/--process-id) is one more adder here plus its entries in _fit_kwargs.


def _add_model_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument(
        "--model", choices=sorted(recipes.MODELS), default="lenet5", help="default %(default)s"
    )
    g.add_argument(
        "--data",
        choices=recipes.DATASETS,
        default="digits",
        help="dataset (default %(default)s: bundled with scikit-learn, no download)",
    )
    g.add_argument(
        "--data-dir",
        metavar="PATH",
        help="folder with the dataset files: the four IDX files for mnist/fashion-mnist, the "
        "binary batches (data_batch_*.bin, test_batch.bin) for cifar10",
    )


def _add_optimization_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optimization")
    g.add_argument(
        "--epochs", type=_positive_int, default=40, metavar="N", help="default %(default)s"
    )
    g.add_argument(
        "--batch-size", type=_positive_int, default=32, metavar="N", help="default %(default)s"
    )
    g.add_argument(
        "--optimizer", choices=recipes.OPTIMIZERS, default="adam", help="default %(default)s"
    )
    g.add_argument(
        "--lr", type=_positive_float, default=2e-3, help="peak learning rate (%(default)s)"
    )
    g.add_argument(
        "--schedule",
        choices=("constant", "cosine"),
        default="cosine",
        help="learning-rate schedule (default %(default)s: decays to 0 over --epochs)",
    )
    g.add_argument(
        "--weight-decay",
        type=_nonneg_float,
        default=1e-3,
        metavar="WD",
        help="L2 weight decay, decoupled for adamw (default %(default)s)",
    )
    g.add_argument(
        "--augment",
        action="store_true",
        help="random shifts (and flips for cifar10/fashion-mnist) of the training images",
    )
    g.add_argument(
        "--seed",
        type=_nonneg_int,
        default=0,
        metavar="N",
        help="seeds initialisation, shuffling and augmentation (default %(default)s); the "
        "digits test split is fixed",
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run directory and output")
    g.add_argument(
        "--out",
        metavar="DIR",
        help="run directory for checkpoints and metrics.jsonl (default runs/<model>-<data>)",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint (exactly as if uninterrupted "
        "when the other flags are unchanged)",
    )
    g.add_argument(
        "--overwrite", action="store_true", help="delete an earlier run in --out and start over"
    )
    g.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=1,
        metavar="N",
        help="save a checkpoint every N epochs (default %(default)s); the last 3 are kept",
    )
    g.add_argument(
        "--quiet", action="store_true", help="no per-epoch output; only the final summary line"
    )


def _add_device_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fast-cpu",
        action="store_true",
        help="run XLA:CPU's convolutions on Eigen instead of YNNPACK (fconv.perf.enable_fast_cpu; "
        "about 1.5x faster convolutions on CPU, no effect on GPU/TPU)",
    )
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic GPU reductions and scatters (fconv.perf.enable_deterministic), so "
        "that --resume reproduces an uninterrupted GPU run bit for bit; the CPU always is",
    )
    g = p.add_argument_group(
        "devices and processes",
        "Data-parallel training: each batch is split evenly over the devices, so --batch-size "
        "must be divisible by their number. For several processes (hosts) run the same command "
        "in each, with its own --process-id; process 0 writes the run directory.",
    )
    g.add_argument(
        "--devices",
        type=_positive_int,
        metavar="N",
        help="number of devices, the total over all processes (default: every device)",
    )
    g.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="address of process 0, reachable from every process (multi-process training)",
    )
    g.add_argument(
        "--num-processes", type=_positive_int, metavar="N", help="number of processes in the job"
    )
    g.add_argument(
        "--process-id",
        type=_nonneg_int,
        metavar="I",
        help="index of this process, 0 to N-1 (process 0 runs the coordinator)",
    )


_TRAIN_OPTION_GROUPS: list[Callable[[argparse.ArgumentParser], None]] = [
    _add_model_data_options,
    _add_optimization_options,
    _add_run_options,
    _add_device_options,
]


def _out_dir(args: argparse.Namespace) -> str:
    return args.out or os.path.join("runs", f"{args.model}-{args.data}")


def _fit_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """fit() keyword arguments from the parsed train flags (model and dataset excluded)."""
    decoupled = args.optimizer == "adamw"
    optimizer = {"name": args.optimizer, "learning_rate": args.lr, "schedule": args.schedule}
    if decoupled:
        optimizer["weight_decay"] = args.weight_decay
    augment = None
    augment_cfg = None
    if args.augment:
        crop, flip = recipes.AUGMENTATIONS[args.data]
        augment = recipes.make_augment(crop, flip)
        augment_cfg = {"crop_padding": crop, "flip": flip}
    data_dir = os.path.abspath(args.data_dir) if args.data_dir else None
    return dict(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=optimizer,
        seed=args.seed,
        out_dir=_out_dir(args),
        augment=augment,
        progress=not args.quiet,
        resume=args.resume,
        overwrite=args.overwrite,
        checkpoint_every=args.checkpoint_every,
        weight_decay=0.0 if decoupled else args.weight_decay,
        normalize=True,
        devices=args.devices,
        config={
            "model": args.model,
            "model_kwargs": {},
            "data": args.data,
            "data_dir": data_dir,
            "augment": augment_cfg,
        },
    )


def _load_data(name: str, data_dir: str | None):
    """The dataset; digits and synthetic always with split/data seed 0 (fixed test set)."""
    if name in recipes.FILE_DATASETS and data_dir is None:
        raise UsageError(f"--data {name} needs --data-dir PATH (the folder with its files)")
    return recipes.load_dataset(name, data_dir, seed=0)


_PROCESS_FLAGS = (
    ("--coordinator", "coordinator"),
    ("--num-processes", "num_processes"),
    ("--process-id", "process_id"),
)


def _join_processes(args: argparse.Namespace) -> None:
    """Checks the multi-process flags and joins the job; a no-op without them."""
    given = [flag for flag, name in _PROCESS_FLAGS if getattr(args, name) is not None]
    if not given:
        return
    if len(given) < len(_PROCESS_FLAGS):
        missing = [flag for flag, _ in _PROCESS_FLAGS if flag not in given]
        raise UsageError(
            f"multi-process training needs --coordinator, --num-processes and --process-id "
            f"together; {', '.join(given)} given without {', '.join(missing)}"
        )
    if args.process_id >= args.num_processes:
        raise UsageError(
            f"--process-id must be < --num-processes ({args.num_processes}), got {args.process_id}"
        )
    if args.devices is not None and args.devices % args.num_processes:
        raise UsageError(
            f"--devices (the total over all processes) must be a multiple of --num-processes "
            f"({args.num_processes}), got {args.devices}"
        )
    try:
        parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    except ValueError:  # the flags above are checked: only the address can be wrong
        raise UsageError(
            f"--coordinator must be HOST:PORT (port 1-65535), got {args.coordinator!r}"
        ) from None
    except RuntimeError as e:
        raise UsageError(
            f"could not join the job at --coordinator {args.coordinator}: {e}".strip()
        ) from e


def _cmd_train(args: argparse.Namespace) -> int:
    if args.fast_cpu or args.deterministic:  # XLA reads its flags once, at backend start
        from fconv import perf

        if args.fast_cpu:
            perf.enable_fast_cpu()
        if args.deterministic:
            perf.enable_deterministic()
    _join_processes(args)  # before anything touches a JAX device
    dataset = _load_data(args.data, args.data_dir)
    model = recipes.build_model(args.model, dataset.num_classes, dataset.input_shape)
    kwargs = _fit_kwargs(args)
    out = kwargs["out_dir"]
    t0 = time.perf_counter()
    try:
        history, _ = train.fit(model, dataset, **kwargs)
    except FileExistsError:
        raise UsageError(
            f"{out} already holds a run: pass --resume to continue it, --overwrite to start "
            "over, or choose another --out"
        ) from None
    seconds = time.perf_counter() - t0
    if not parallel.is_main_process():  # process 0 reports for the job
        return 0
    if not history:
        print(f"nothing to do: {out} holds no finished epoch")
        return 0
    last = history[-1]
    correct = round(last["test_acc"] * dataset.num_test)
    print(
        f"final test accuracy {last['test_acc']:.4f} ({correct}/{dataset.num_test}) after "
        f"{last['epoch']} epochs, {seconds:.1f} s; run saved in {out}"
    )
    return 0


# --------------------------------------------------------------------------------------------
# eval


def _load_run(path: str) -> runs.Run:
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return runs.load_run(path)


def _test_split(run: runs.Run, data_dir: str | None):
    name = run.config.get("data") or str(run.config.get("dataset")).replace("_", "-")
    data_dir = data_dir or run.config.get("data_dir")
    dataset = _load_data(name, data_dir)
    return run.normalize(dataset.x_test), dataset.y_test, dataset.num_classes


def format_confusion(matrix: np.ndarray) -> str:
    """A confusion matrix as a text table with a per-class recall column."""
    k = matrix.shape[0]
    width = max(5, len(str(int(matrix.max(initial=0)))) + 1)
    head = "true\\pred".rjust(9) + "".join(str(j).rjust(width) for j in range(k)) + "  recall"
    lines = [head]
    for i in range(k):
        total = int(matrix[i].sum())
        recall = f"{matrix[i, i] / total:8.3f}" if total else "       -"
        lines.append(
            str(i).rjust(9) + "".join(str(int(v)).rjust(width) for v in matrix[i]) + recall
        )
    return "\n".join(lines)


def _cmd_eval(args: argparse.Namespace) -> int:
    run = _load_run(args.checkpoint)
    x, y, num_classes = _test_split(run, args.data_dir)
    loss, acc, preds = train.evaluate(run.model, run.params, run.model_state, x, y, args.batch_size)
    matrix = train.confusion_matrix(y, preds, num_classes)
    print(
        f"{run.config.get('model')} on {run.config.get('data', run.config.get('dataset'))} "
        f"(step {run.step}): test accuracy {acc:.4f} ({int(np.trace(matrix))}/{len(y)}), "
        f"loss {loss:.4f}"
    )
    print(format_confusion(matrix))
    return 0


# --------------------------------------------------------------------------------------------
# gradcheck


def _batch_norm_all_outputs(x, scale, bias, *, axis: int = 1, vjp: str = "custom"):
    """``y + mean + var`` (per channel, broadcast): one array whose cotangent reaches all three
    outputs of ``ops.batch_norm``, so gradcheck covers every path of its rule."""
    from fconv.ops import batch_norm

    y, mean, var = batch_norm(x, scale, bias, axis=axis, vjp=vjp)
    shape = [1] * x.ndim
    shape[axis] = -1
    return y + (mean + var).reshape(shape)


def _gradcheck_cases() -> list[tuple[str, str, Callable[..., Any], Callable[..., Any], tuple, str]]:
    """(op, config, custom fn, autodiff fn, float64 args, reference mode) rows."""
    from fconv.ops import avg_pool, conv, conv_transpose, max_pool

    rng = np.random.default_rng(0)

    def randn(*shape):
        return rng.standard_normal(shape)

    def unique(*shape):  # distinct values: every maximum is unambiguous
        return rng.permutation(np.arange(np.prod(shape), dtype=np.float64)).reshape(shape) / 7.0

    rows = []

    def add(op_name, config, op, args, reference, **kw):
        rows.append(
            (
                op_name,
                config,
                functools.partial(op, **kw),
                functools.partial(op, vjp="autodiff", **kw),
                args,
                reference,
            )
        )

    # Convolutions: reference gradients by forward mode (reverse-mode autodiff of a strided
    # lax conv can abort the process on jaxlib 0.10.2; see backward-rules.md).
    add("conv", "stride 2, SAME, bias", conv, (randn(2, 3, 9, 8), randn(4, 3, 3, 3), randn(4)),
        "jacfwd", stride=2, padding="SAME")  # fmt: skip
    add("conv", "stride (2,1), pad ((1,2),(0,1))", conv, (randn(1, 2, 10, 5), randn(3, 2, 2, 3)),
        "jacfwd", stride=(2, 1), padding=((1, 2), (0, 1)))  # fmt: skip
    add("conv", "dilation 2, VALID", conv, (randn(2, 2, 9, 9), randn(3, 2, 3, 3)),
        "jacfwd", dilation=2)  # fmt: skip
    add("conv", "groups 2, stride 2, pad 1", conv, (randn(2, 4, 7, 7), randn(6, 2, 3, 3)),
        "jacfwd", groups=2, stride=2, padding=1)  # fmt: skip
    add("conv", "depthwise (groups 3), SAME", conv, (randn(1, 3, 6, 6), randn(3, 1, 3, 3)),
        "jacfwd", groups=3, padding="SAME")  # fmt: skip
    add("conv", "1-D stride 3, FULL", conv, (randn(2, 2, 11), randn(3, 2, 4)),
        "jacfwd", stride=3, padding="FULL")  # fmt: skip
    add("conv", "3-D stride 2, SAME", conv, (randn(1, 2, 5, 4, 5), randn(2, 2, 2, 3, 2)),
        "jacfwd", stride=2, padding="SAME")  # fmt: skip
    add("conv_transpose", "stride 2, pad 1, output_padding 1", conv_transpose,
        (randn(2, 3, 4, 5), randn(3, 2, 3, 3)), "jacfwd",
        stride=2, padding=1, output_padding=1)  # fmt: skip
    add("conv_transpose", "groups 2, dilation 2, stride 2", conv_transpose,
        (randn(1, 4, 4, 4), randn(4, 1, 3, 3)), "jacfwd",
        groups=2, dilation=2, stride=2)  # fmt: skip
    # Pools: unique inputs so max-pool routing is unambiguous.
    add("max_pool", "window 3, stride 2, SAME (overlap)", max_pool, (unique(2, 3, 7, 6),),
        "vjp", window=3, stride=2, padding="SAME")  # fmt: skip
    add("max_pool", "window 2, stride 2, VALID", max_pool, (unique(2, 2, 6, 6),),
        "vjp", window=2, stride=2)  # fmt: skip
    add("max_pool", "window (3,2), stride 1, pad 1 (overlap)", max_pool, (unique(1, 2, 5, 6),),
        "vjp", window=(3, 2), stride=1, padding=1)  # fmt: skip
    add("avg_pool", "window 3, stride 2, SAME (overlap)", avg_pool, (randn(2, 3, 7, 6),),
        "vjp", window=3, stride=2, padding="SAME")  # fmt: skip
    add("avg_pool", "window 3, stride 1, pad 1, exclude pad", avg_pool, (randn(1, 2, 6, 5),),
        "vjp", window=3, stride=1, padding=1, count_include_pad=False)  # fmt: skip
    add("avg_pool", "1-D window 4, stride 3", avg_pool, (randn(2, 3, 13),),
        "vjp", window=4, stride=3)  # fmt: skip
    add("batch_norm", "NCHW, y + mean + var", _batch_norm_all_outputs,
        (randn(3, 4, 5, 5) * 2 + 1, randn(4), randn(4)), "vjp")  # fmt: skip
    add("batch_norm", "channels last (axis -1)", _batch_norm_all_outputs,
        (randn(6, 3, 7), randn(7), randn(7)), "vjp", axis=-1)  # fmt: skip
    return rows


def _cmd_gradcheck(args: argparse.Namespace) -> int:
    import jax

    from fconv.testing import check_vjp

    header = ("op", "config", "rel err vs jax.grad", "rel err vs finite diff", "status")
    table = []
    failed = 0
    with jax.enable_x64(True):
        for op_name, config, custom, reference, arrays, mode in _gradcheck_cases():
            if args.op and op_name not in args.op:
                continue
            args64 = [jax.numpy.asarray(a, jax.numpy.float64) for a in arrays]
            report = check_vjp(
                jax.jit(custom),
                jax.jit(reference),
                *args64,
                reference=mode,
                raise_on_failure=False,
            )
            ok = report.ok
            failed += not ok
            table.append(
                (
                    op_name,
                    config,
                    f"{max(report.rel_err):.2e}",
                    f"{max(report.fd_rel_err):.2e}",
                    "ok" if ok else "FAIL",
                )
            )
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *table]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    print(
        f"{len(table) - failed}/{len(table)} passed (float64; tolerances: {1e-10:g} against "
        f"autodiff, {1e-6:g} against central finite differences)"
    )
    return 1 if failed else 0


# --------------------------------------------------------------------------------------------
# plot


def _cmd_plot(args: argparse.Namespace) -> int:
    from fconv import viz

    run_dir = args.run_dir
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    run = _load_run(run_dir)
    x, _, _ = _test_split(run, args.data_dir)
    paths = [
        viz.plot_curves(
            os.path.join(run_dir, metrics_log.METRICS_FILE), os.path.join(run_dir, "curves.png")
        ),
        viz.plot_filters(viz.first_conv_weights(run.params), os.path.join(run_dir, "filters.png")),
        viz.plot_feature_maps(
            run.model, run.params, run.model_state, x[0], os.path.join(run_dir, "feature_maps.png")
        ),
    ]
    for path in paths:
        print(path)
    return 0


# --------------------------------------------------------------------------------------------
# receptive-field


def _cmd_receptive_field(args: argparse.Namespace) -> int:
    from fconv import receptive_field as rf

    ctor = recipes.MODELS[args.model]
    shape = args.input_shape or inspect.signature(ctor).parameters["input_shape"].default
    shape = tuple(int(v) for v in shape)
    model = recipes.build_model(args.model, 10, shape)
    rows = rf.receptive_field(rf.specs_from_model(model, (1, *shape)))
    print(f"{args.model} on input {'x'.join(map(str, shape))} (C x spatial):")
    print(rf.format_table(rows))
    return 0


# --------------------------------------------------------------------------------------------
# Parser and entry point.


def _typed(convert, check, what):
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


_positive_int = _typed(int, lambda v: v >= 1, "an integer >= 1")
_nonneg_int = _typed(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _typed(float, lambda v: v > 0 and np.isfinite(v), "a number > 0")
_nonneg_float = _typed(float, lambda v: v >= 0 and np.isfinite(v), "a number >= 0")


def _cmd_bench(args: argparse.Namespace) -> int:
    """Runs ``benchmarks.run`` (the suite lives in a source checkout, not in the package).

    ``main`` passes everything after ``bench`` through untouched (argparse would otherwise read
    ``--quick`` as an option of ``fconv`` itself).
    """
    try:
        from benchmarks import run as bench_run
    except ImportError:
        sys.path.insert(0, os.getcwd())
        try:
            from benchmarks import run as bench_run
        except ImportError:
            raise UsageError(
                "the benchmark suite is the benchmarks/ folder of a source checkout of fconv: run "
                "`fconv bench` (or `python -m benchmarks.run`) from the repository root"
            ) from None
    try:
        bench_run.main(list(args.bench_args))
    except SystemExit as e:  # its own --help or a usage error, already printed
        return e.code if isinstance(e.code, int) else 0
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``fconv`` argument parser with its subcommands."""
    parser = _Parser(
        prog="fconv",
        description="Functional convolutional networks for JAX with hand-written backward rules.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "train",
        help="train a model (default: LeNet-5 on the bundled 8x8 digits)",
        description="Train a model, evaluating on the test split after every epoch. Writes "
        "metrics.jsonl and checkpoints into the run directory.",
    )
    for add_group in _TRAIN_OPTION_GROUPS:
        add_group(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "eval",
        help="test accuracy and confusion matrix of a checkpoint",
        description="Rebuild the model from a checkpoint's config, evaluate it on its dataset's "
        "test split and print the accuracy and the confusion matrix.",
    )
    p.add_argument(
        "--checkpoint",
        default=os.path.join("runs", "lenet5-digits"),
        metavar="PATH",
        help="run directory (latest checkpoint) or a ckpt_*.npz/.json file (default %(default)s)",
    )
    p.add_argument("--data-dir", metavar="PATH", help="override the data folder of the run")
    p.add_argument("--batch-size", type=_positive_int, default=500, help="default %(default)s")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "gradcheck",
        help="check the hand-written VJPs against autodiff and finite differences",
        description="Run fconv.testing.check_vjp in float64 over a fixed set of conv, "
        "conv_transpose, max_pool, avg_pool and batch_norm configurations (strided, padded, "
        "dilated, grouped, overlapping pools) and print a table. Exit status 1 if any check "
        "fails.",
    )
    p.add_argument(
        "--op",
        action="append",
        choices=("conv", "conv_transpose", "max_pool", "avg_pool", "batch_norm"),
        help="check only this op (repeatable; default all five)",
    )
    p.set_defaults(func=_cmd_gradcheck)

    p = sub.add_parser(
        "plot",
        help="learning curves, filters and feature maps of a run",
        description="Write curves.png, filters.png and feature_maps.png (the first test image "
        "through every conv layer) into the run directory. Needs matplotlib: pip install "
        "'fconv[viz]'.",
    )
    p.add_argument(
        "run_dir",
        nargs="?",
        default=os.path.join("runs", "lenet5-digits"),
        help="run directory (default %(default)s)",
    )
    p.add_argument("--data-dir", metavar="PATH", help="override the data folder of the run")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser(
        "receptive-field",
        help="receptive field, jump and start of every layer of a model",
        description="Per layer with a spatial effect: effective kernel, stride, low padding, "
        "receptive field size, jump (effective stride) and start (centre of the first unit's "
        "field, in input pixels), as in the lectures' receptive-field slides.",
    )
    p.add_argument(
        "--model", default="vgg_small", choices=sorted(recipes.MODELS), help="default %(default)s"
    )
    p.add_argument(
        "--input-shape",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="C H W of one input (default: the model's own, e.g. 3 32 32 for vgg_small)",
    )
    p.set_defaults(func=_cmd_receptive_field)

    p = sub.add_parser(
        "bench",
        help="the benchmark suite (python -m benchmarks.run), from a source checkout",
        description="Run benchmarks.run with the remaining arguments, e.g. `fconv bench --quick "
        "--json out.json` or `fconv bench --sections ops`; `fconv bench --help` lists them.",
        add_help=False,
    )
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for benchmarks.run")
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``fconv`` command line; returns the exit status.

    Args:
        argv: Arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        0 on success, 1 when ``gradcheck`` finds a failure, 2 for a usage error (bad flag,
        missing file or directory, mismatching checkpoint), 130 on Ctrl-C.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["bench"]:
            args = argparse.Namespace(command="bench", func=_cmd_bench, bench_args=argv[1:])
        else:
            args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2), already printed
        return e.code if isinstance(e.code, int) else 0
    prog = f"fconv {args.command}"
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `fconv eval | head -1`: stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (UsageError, OSError, ValueError, ImportError) as e:
        if os.environ.get("FCONV_DEBUG"):
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
