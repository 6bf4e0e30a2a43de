#!/usr/bin/env bash
# GPU check (issue 19): the certification benchmark and the soundness tests on CUDA, a few minutes
# on a machine with an NVIDIA GPU. Writes results/gpu/ (markdown + JSON); exits non-zero when a
# check fails. Usage: scripts/gpu_check.sh [OUT_DIR]   (CUDA_VISIBLE_DEVICES picks the GPU, default 0)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f "${USN_VENV:-.venv}/bin/activate" ]; then source scripts/env.sh; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"
export OMP_NUM_THREADS=1
OUT="${1:-results/gpu}"
mkdir -p "$OUT"
CLI="python -m usn_robust_keypoints.cli"

python - <<'PY'
import torch
if not torch.cuda.is_available():
    raise SystemExit("gpu_check: torch sees no CUDA device (CUDA_VISIBLE_DEVICES, driver, CUDA build of torch?)")
print(f"gpu_check: torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
PY

# 1. Real left* photos (COCO set built from opencv-doc) certified on CUDA and on one CPU thread.
COCO=$(python -c "from usn_robust_keypoints.data import build_real_set; print(build_real_set('left'))")
for dev in cuda cpu; do
  $CLI certify --coco "$COCO" --device "$dev" --threads 1 --no-margins --json "$OUT/certify_left_$dev.json" \
    | grep "^certified" | tee "$OUT/certify_left_$dev.txt"
done

# 2. The certification benchmark on CUDA (its --device option when the benchmark has one).
if $CLI bench-certify --help | grep -q -- "--device"; then
  $CLI bench-certify --device cuda --frames 4 --lirpa-frames 0 --threads 1 --out "$OUT/bench_certify_cuda.md"
else
  echo "gpu_check: bench-certify has no --device option; skipped (the certify rows above are on CUDA)"
fi

# 3. Soundness on CUDA: 10^4 sampled theta per certified keypoint, and CUDA == CPU verdicts.
USN_TEST_DEVICE=cuda USN_TEST_SAMPLES=10000 python -m pytest -q test/test_certify_device.py | tee "$OUT/soundness_cuda.txt"
echo "gpu_check: done, results in $OUT"
