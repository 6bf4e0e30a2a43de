#!/usr/bin/env bash
# The 4-block network (dilations 1 2 4 8) through the shipped chain: long distillation on photographed-print
# scenes, then the node-property certifiability term (r 0.8 input px, whole ±0.02), then the real-photo frontier.
# usage: results/shallow_chain/run.sh continue|wide      (docs/training.md, "The 4-block network through the chain")
set -euo pipefail
M=results/shallow_chain/models; A=results/architecture/models; mkdir -p $M
D="--distill-from usn_robust_keypoints/weights/chessboard_dense.safetensors --distill-weight 1"
P="--photo --train-images 6000 --threads 1"
K="--batch-size 24 --lr 5e-4 --steps 600 --robust-eps 0.02 --robust-ramp 0 --robust-radius 0.8 --robust-form log"
case $1 in
continue)  # the width-24 network of the architecture study, 8000 more distillation steps (15000 in all)
    usn-keypoints train --init $A/shallow_distill2.safetensors $P --steps 8000 --batch-size 32 --lr 5e-4 $D \
        --out $M/w24_distill3.safetensors
    name=w24_distill3 ;;
wide)      # width 32 from scratch: 3000 task steps, then 8000 distillation steps
    usn-keypoints train $P --steps 3000 --batch-size 32 --lr 3e-3 --zero-mean-stem --depth 4 --dilations 1 2 4 8 \
        --width 32 --out $M/w32_task.safetensors
    usn-keypoints train --init $M/w32_task.safetensors $P --steps 8000 --batch-size 32 --lr 1e-3 $D \
        --out $M/w32_distill.safetensors
    name=w32_distill ;;
*) echo "usage: $0 continue|wide" >&2; exit 2 ;;
esac
for k in 0.1 0.3; do
    usn-keypoints train --init $M/$name.safetensors $P $K --robust-kappa $k $D --out $M/${name}_node_k$k.safetensors
done
