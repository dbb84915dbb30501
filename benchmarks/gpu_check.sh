#!/usr/bin/env bash
# One prepared GPU check (device tool), about 6 minutes on an H200: the backward-form and
# strided-mode tables, the single-op and training-step tables (custom vs autodiff, JAX peers on
# the same GPU), then the op tests at highest precision. Every timing is round-robin with 10
# back-to-back calls per sample (benchmarks.timing.default_inner), so it is device time.
# Usage on the device machine, from the repo root: bash benchmarks/gpu_check.sh "$OUT"
set -uo pipefail
out=${1:-/tmp/fconv_gpu}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
{ nvidia-smi -L; python3 -c "import jax; print(jax.__version__, jax.devices())"; } 2>&1 |
  tee "$out/device.txt"
timeout 90 python3 -m benchmarks.maxpool_variants 2>&1 | tee "$out/maxpool.md"
timeout 60 python3 -m benchmarks.strided 2>&1 | tee "$out/strided.md"
timeout 60 python3 -m benchmarks.conv_parts 2>&1 | tee "$out/conv_parts.md"
timeout 240 python3 -m benchmarks.run --sections ops,train --peers flax,equinox,haiku \
  --json "$out/gpu.json" 2>&1 | tee "$out/bench.md"
# Tests: TF32 would loosen float32 convolutions past the CPU tolerances, so ask for full precision.
XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_DEFAULT_MATMUL_PRECISION=highest timeout 150 \
  python3 -m pytest -q -x -p no:cacheprovider -n 8 \
  tests/test_conv.py tests/test_pooling.py tests/test_batch_norm.py 2>&1 | tail -15 |
  tee "$out/tests.txt"
