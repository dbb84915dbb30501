"""Data-parallel LeNet-5 train step: images/s on 1, 2 and 4 forced host (CPU) devices.

``python -m benchmarks.parallel [--devices 1 2 4] [--batch 128] [--iters 20]``

Each device count runs in its own child process, because
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` only takes effect before JAX starts. A
child times :func:`fconv.parallel.make_parallel_train_step` (momentum SGD, batch already sharded,
state donated and threaded through) and, for comparison, the plain single-device
:func:`fconv.train.make_train_step`; the parent prints one table.

Forced host devices share the machine's cores (and XLA's CPU thread pool): on a small CPU this
measures the cost of partitioning the step and of its all-reduces, not a speed-up. Real
speed-ups need real devices (several GPUs, or TPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

NOTE = (
    "note: forced host devices share this machine's {cores} CPU core(s), so these numbers "
    "measure the overhead of the partitioned step and its all-reduces, not a speed-up"
)


def _time_step(step, state, batch, iters: int, warmup: int = 2) -> float:
    """Median seconds per call of a donating ``step(state, batch) -> (state, metrics)``."""
    import jax

    for _ in range(warmup):
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def child(num_devices: int, batch_size: int, iters: int) -> dict:
    """Runs in a process started with ``num_devices`` forced host devices."""
    import jax
    import numpy as np

    from fconv import models, optim, parallel, train

    shape = (1, 28, 28)
    model = models.lenet5(10, shape)
    opt = optim.momentum(0.01)
    rng = np.random.default_rng(0)
    batch = (
        rng.standard_normal((batch_size, *shape)).astype(np.float32),
        rng.integers(0, 10, batch_size).astype(np.int32),
    )
    mesh = parallel.make_mesh(num_devices)
    step = parallel.make_parallel_train_step(model, opt, mesh)
    state = parallel.replicate(train.init_train_state(model, opt, shape, 0), mesh)
    parallel_s = _time_step(step, state, parallel.shard_batch(batch, mesh), iters)
    plain = train.make_train_step(model, opt)
    on_one = jax.device_put(batch, jax.devices()[0])
    plain_s = _time_step(plain, train.init_train_state(model, opt, shape, 0), on_one, iters)
    return {
        "devices": num_devices,
        "device_count": jax.device_count(),
        "parallel_ms": parallel_s * 1e3,
        "parallel_ips": batch_size / parallel_s,
        "plain_ips": batch_size / plain_s,
    }


def _run_child(num_devices: int, batch_size: int, iters: int, timeout: float) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
    env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, "-m", "benchmarks.parallel", "--child", str(num_devices)]
    cmd += ["--batch", str(batch_size), "--iters", str(iters)]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise RuntimeError(f"{num_devices} devices: ran past {timeout:.0f} s, killed") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{num_devices} devices: child failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.parallel", description=__doc__)
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4], metavar="N")
    p.add_argument("--batch", type=int, default=128, help="global batch size (default 128)")
    p.add_argument("--iters", type=int, default=20, help="timed steps (default 20)")
    p.add_argument("--timeout", type=float, default=300, help="seconds per device count")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.batch, args.iters)))
        return 0
    print(f"LeNet-5 train step, 1x28x28, global batch {args.batch}, median of {args.iters} steps")
    print(f"{'devices':>7}  {'ms/step':>8}  {'images/s':>9}  {'1-device jit images/s':>21}")
    for n in args.devices:
        r = _run_child(n, args.batch, args.iters, args.timeout)
        print(
            f"{n:>7}  {r['parallel_ms']:>8.2f}  {r['parallel_ips']:>9,.0f}  "
            f"{r['plain_ips']:>21,.0f}",
            flush=True,
        )
    print(NOTE.format(cores=os.cpu_count()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
