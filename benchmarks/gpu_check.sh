#!/usr/bin/env bash
# One prepared GPU check (device tool), about 5 minutes on an H200: the backward-form and
# strided-mode tables, the single-op and training-step tables (custom vs autodiff, JAX peers on
# the same GPU) once per strided input-gradient mode in $MODES, then the op tests at highest
# precision. Every timing is round-robin with 10 back-to-back calls per sample
# (benchmarks.timing.default_inner), so it is device time.
# Usage on the device machine, from the repo root: bash benchmarks/gpu_check.sh "$OUT"
# Writes log.md (every table and the test summary) and gpu_<mode>.json.
set -uo pipefail
out=${1:-/tmp/fconv_gpu}
modes=${MODES:-interior_pad subpixel}
mkdir -p "$out"
log="$out/log.md"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
{ nvidia-smi -L; python3 -c "import jax; print(jax.__version__, jax.devices())"; } 2>&1 | tee "$log"
for bench in maxpool_variants strided conv_parts; do
  timeout 90 python3 -m "benchmarks.$bench" 2>&1 | tee -a "$log"
done
for mode in $modes; do
  echo "## strided input gradient: $mode" | tee -a "$log"
  timeout 200 python3 -m benchmarks.run --sections ops,train --peers flax,equinox,haiku \
    --strided-input-grad "$mode" --json "$out/gpu_$mode.json" 2>&1 | tee -a "$log"
done
# Tests: TF32 would loosen float32 convolutions past the CPU tolerances, so ask for full precision.
XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_DEFAULT_MATMUL_PRECISION=highest timeout 150 \
  python3 -m pytest -q -x -p no:cacheprovider -n 8 \
  tests/test_conv.py tests/test_pooling.py tests/test_batch_norm.py 2>&1 | tail -15 | tee -a "$log"
