#!/usr/bin/env bash
# The shallow network further: 4000 more photo-scene steps with distillation, then 600 κ 0.3 steps with
# distillation, then the real-photo measurement. usage: results/architecture/run_longer.sh
set -euo pipefail
M=results/architecture/models
D="--distill-from usn_robust_keypoints/weights/chessboard_dense.safetensors --distill-weight 1"
usn-keypoints train --init $M/shallow_distill.safetensors --photo --train-images 6000 --steps 4000 --batch-size 32 \
    --lr 5e-4 --threads 2 $D --out $M/shallow_distill2.safetensors
usn-keypoints train --init $M/shallow_distill2.safetensors --photo --train-images 6000 --steps 600 --batch-size 24 \
    --lr 5e-4 --threads 2 --robust-kappa 0.3 --robust-eps 0.1 --robust-ramp 0 --robust-sub-eps 0.02 --robust-form log $D \
    --out $M/shallow_distill2_k0.3.safetensors
python results/models_real/bab_engine_cpuclock/cpuclock_cli.py real-frontier --models $M/shallow_distill2.safetensors \
    $M/shallow_distill2_k0.3.safetensors --labels "shallow + 7000 steps distillation" "shallow + 7000 steps distillation + κ 0.3" \
    --budgets 120 1000 5000 --out results/architecture/round3_shallow --threads 1
