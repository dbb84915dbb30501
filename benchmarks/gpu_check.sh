#!/usr/bin/env bash
# One prepared GPU check (device tool), about 6 minutes on an H200 and at most 570 s (the
# device tool allows 600 s a command): the backward-form and strided-mode tables, the single-op
# and training-step tables (custom vs autodiff, JAX peers on the same GPU) once per strided
# input-gradient mode in $MODES (default subpixel, the choice off CPU; each more mode adds about
# 2 minutes: raise no timeouts past the limit), then the whole test suite at highest precision.
# Every timing is round-robin with 10 back-to-back calls per sample
# (benchmarks.timing.default_inner), so it is device time.
# Usage on the device machine, from the repo root: bash benchmarks/gpu_check.sh "$OUT"
# Writes log.md (every table and the test summary) and gpu_<mode>.json.
set -uo pipefail
out=${1:-/tmp/fconv_gpu}
modes=${MODES:-subpixel}
mkdir -p "$out"
log="$out/log.md"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
{ nvidia-smi -L; python3 -c "import jax; print(jax.__version__, jax.devices())"; } 2>&1 | tee "$log"
for bench in maxpool_variants strided conv_parts; do
  timeout 50 python3 -m "benchmarks.$bench" 2>&1 | tee -a "$log"
done
for mode in $modes; do
  echo "## strided input gradient: $mode" | tee -a "$log"
  timeout 180 python3 -m benchmarks.run --sections ops,train --peers flax,equinox,haiku \
    --strided-input-grad "$mode" --json "$out/gpu_$mode.json" 2>&1 | tee -a "$log"
done
# Tests: TF32 would loosen float32 convolutions past the CPU tolerances, so ask for full precision.
# The whole suite (under 3 minutes on an H200 host with -n 12), then the exact-resume tests again
# with deterministic GPU reductions (they skip on GPU without them).
export XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_DEFAULT_MATMUL_PRECISION=highest
timeout 200 python3 -m pytest -q -p no:cacheprovider -n 12 -rfE tests/ 2>&1 | tail -15 | tee -a "$log"
XLA_FLAGS=--xla_gpu_deterministic_ops=true timeout 40 python3 -m pytest -q -p no:cacheprovider \
  tests/test_train.py -k resume 2>&1 | tail -3 | tee -a "$log"
