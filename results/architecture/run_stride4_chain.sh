#!/usr/bin/env bash
# The output-stride-4 network of the architecture study through a short chain (docs/training.md, "Architecture study"):
# 3000 steps of distillation from the dense model (its stride-2 heatmaps summed over each 2x2 block) on
# photographed-print scenes, then 600 steps of the node-property term (κ 0.3) with the distillation kept; then measure.
# usage: results/architecture/run_stride4_chain.sh train|measure|longer|measure2
set -euo pipefail
W=usn_robust_keypoints/weights; M=results/architecture/models
C="--photo --train-images 6000 --batch-size 24 --lr 5e-4 --threads 1 --distill-from $W/chessboard_dense.safetensors --distill-weight 1"
case ${1:-} in
train)
    usn-keypoints train --init $M/stride4_task.safetensors $C --steps 3000 --lr 1e-3 --out $M/stride4_distill.safetensors
    usn-keypoints train --init $M/stride4_distill.safetensors $C --steps 600 --robust-kappa 0.3 --robust-eps 0.02 \
        --robust-ramp 0 --robust-radius 0.8 --robust-form log --out $M/stride4_distill_node_k0.3.safetensors ;;
measure)
    python results/models_real/bab_engine_cpuclock/cpuclock_cli.py real-frontier --models $M/stride4_distill.safetensors \
        $M/stride4_distill_node_k0.3.safetensors --labels "stride 4 + 3000 steps distillation" "stride 4 + distillation + κ 0.3 node" \
        --budgets 120 1000 5000 --out results/architecture/round5_stride4_chain --threads 1 ;;
longer)  # 6000 more distillation steps, then the same node-property stage
    usn-keypoints train --init $M/stride4_distill.safetensors $C --steps 6000 --lr 1e-3 --out $M/stride4_distill9000.safetensors
    usn-keypoints train --init $M/stride4_distill9000.safetensors $C --steps 600 --robust-kappa 0.3 --robust-eps 0.02 \
        --robust-ramp 0 --robust-radius 0.8 --robust-form log --out $M/stride4_distill9000_node_k0.3.safetensors ;;
measure2)
    python results/models_real/bab_engine_cpuclock/cpuclock_cli.py real-frontier --models $M/stride4_distill9000.safetensors \
        $M/stride4_distill9000_node_k0.3.safetensors --labels "stride 4 + 9000 steps distillation" \
        "stride 4 + 9000 steps distillation + κ 0.3 node" --budgets 120 1000 5000 \
        --out results/architecture/round6_stride4_longer --threads 1 ;;
*) echo "usage: $0 train|measure|longer|measure2" >&2; exit 2 ;;
esac
