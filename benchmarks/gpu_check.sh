#!/usr/bin/env bash
# One prepared GPU check (device tool): strided-mode table, single-op and training-step tables
# (custom vs autodiff, JAX peers on the same GPU), then the op/model tests at highest precision.
# Usage on the device machine, from the repo root: bash benchmarks/gpu_check.sh "$OUT"
set -uo pipefail
out=${1:-/tmp/fconv_gpu}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi -L | tee "$out/device.txt"
python3 -c "import jax; print(jax.__version__, jax.devices())" | tee -a "$out/device.txt"
python3 -m benchmarks.strided 2>&1 | tee "$out/strided.md"
python3 -m benchmarks.run --sections ops,train --peers flax,equinox,haiku \
  --json "$out/gpu.json" 2>&1 | tee "$out/bench.md"
# Tests: TF32 would loosen float32 convolutions past the CPU tolerances, so ask for full precision.
XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_DEFAULT_MATMUL_PRECISION=highest timeout 200 python3 -m pytest -q -x -p no:cacheprovider \
  -n 4 tests/test_conv.py tests/test_pooling.py tests/test_batch_norm.py 2>&1 | tail -15 | tee "$out/tests.txt"
