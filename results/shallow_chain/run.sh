#!/usr/bin/env bash
# The 4-block network (dilations 1 2 4 8) through the shipped chain: long distillation on photographed-print
# scenes, then the node-property certifiability term (r 0.8 input px, whole ±0.02), then the real-photo frontier.
# usage: results/shallow_chain/run.sh continue|wide|deep5|measure GROUP    (docs/training.md, "The 4-block network through the chain")
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
deep5)     # five blocks (1 2 4 8 1: a last undilated block to localise), width 32, from scratch: 3000 task + 6000 distillation steps
    usn-keypoints train $P --steps 3000 --batch-size 32 --lr 3e-3 --zero-mean-stem --depth 5 --dilations 1 2 4 8 1 \
        --width 32 --out $M/d5w32_task.safetensors
    usn-keypoints train --init $M/d5w32_task.safetensors $P --steps 6000 --batch-size 32 --lr 1e-3 $D \
        --out $M/d5w32_distill.safetensors
    name=d5w32_distill ;;
measure)   # the real-photo frontier of one group (w24, w32 or d5w32 models) next to the default (CPU-time budgets, one thread)
    W=usn_robust_keypoints/weights; g=${2:?usage: $0 measure w24|w32|d5w32}
    case $g in
    w24) base=w24_distill3; label="w24, 15000 distillation steps" ;;
    w32) base=w32_distill; label="w32, 3000 task + 8000 distillation steps" ;;
    d5w32) base=d5w32_distill; label="d5w32, 3000 task + 6000 distillation steps" ;;
    *) echo "usage: $0 measure w24|w32|d5w32" >&2; exit 2 ;;
    esac
    python results/models_real/bab_engine_cpuclock/cpuclock_cli.py real-frontier --models $W/chessboard_usn_photo.safetensors \
        $M/$base.safetensors $M/${base}_node_k0.1.safetensors $M/${base}_node_k0.3.safetensors \
        --labels "default chessboard_usn_photo" "$label" "$g + κ 0.1 node" "$g + κ 0.3 node" \
        --budgets 120 1000 5000 --out results/shallow_chain/$g --threads 1
    exit 0 ;;
*) echo "usage: $0 continue|wide|deep5|measure GROUP" >&2; exit 2 ;;
esac
for k in 0.1 0.3; do
    usn-keypoints train --init $M/$name.safetensors $P $K --robust-kappa $k $D --out $M/${name}_node_k$k.safetensors
done
