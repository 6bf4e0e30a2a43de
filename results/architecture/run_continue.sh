#!/usr/bin/env bash
# Continue one architecture of the study towards a shippable model: 3000 more photo-scene steps
# with distillation from the dense model, then 600 steps with the default's certifiability term.
# usage: results/architecture/run_continue.sh NAME
set -euo pipefail
name=$1
M=results/architecture/models
D="--distill-from usn_robust_keypoints/weights/chessboard_dense.safetensors --distill-weight 1"
usn-keypoints train --init $M/${name}_task.safetensors --photo --train-images 6000 --steps 3000 --batch-size 32 --lr 1e-3 \
    --threads 1 $D --out $M/${name}_distill.safetensors
usn-keypoints train --init $M/${name}_distill.safetensors --photo --train-images 6000 --steps 600 --batch-size 24 --lr 5e-4 \
    --threads 1 --robust-kappa 0.3 --robust-eps 0.1 --robust-ramp 0 --robust-sub-eps 0.02 --robust-form log $D \
    --out $M/${name}_distill_k0.3.safetensors
