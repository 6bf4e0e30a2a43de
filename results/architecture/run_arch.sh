#!/usr/bin/env bash
# One architecture of the from-scratch study (docs/training.md, "Architecture study"):
# 3000 task steps on photographed-print scenes, then 600 steps with the default's certifiability term.
# usage: results/architecture/run_arch.sh NAME [train options...]
set -euo pipefail
name=$1; shift
M=results/architecture/models
usn-keypoints train --photo --train-images 6000 --steps 3000 --batch-size 32 --lr 3e-3 --threads 1 --zero-mean-stem \
    "$@" --out $M/${name}_task.safetensors
usn-keypoints train --init $M/${name}_task.safetensors --photo --train-images 6000 --steps 600 --batch-size 24 --lr 5e-4 \
    --threads 1 --robust-kappa 0.3 --robust-eps 0.1 --robust-ramp 0 --robust-sub-eps 0.02 --robust-form log \
    --out $M/${name}_k0.3.safetensors
