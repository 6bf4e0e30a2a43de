#!/usr/bin/env bash
# The default fine-tuned 1000 steps on the node's exact property (r 0.8 input px, the whole ±0.02 box) at a
# smaller κ than the no-pruning control of results/pruning_real25 (κ 0.3), then the real-photo frontier.
# usage: results/models_node_long/run.sh train|measure|continue|measure2|seeds|gentle|measure3|k0.25|distill3|measure4|tiles|measure5|eps0.1|eps0.05
#        (docs/training.md, "Training the node's exact property")
set -euo pipefail
W=usn_robust_keypoints/weights; M=results/models_node_long/models; mkdir -p $M
C="--photo --train-images 6000 --batch-size 24 --lr 5e-4 --threads 1 --steps 1000 --robust-eps 0.02 --robust-ramp 0 \
   --robust-radius 0.8 --robust-form log --distill-from $W/chessboard_dense.safetensors --distill-weight 1"
case ${1:-} in
train)
    for k in 0.15 0.2; do
        usn-keypoints train --init $W/chessboard_usn_photo.safetensors --robust-kappa $k $C --out $M/photo_node_k${k}_1000.safetensors &
    done
    wait ;;
measure)
    python results/models_real/bab_engine_cpuclock/cpuclock_cli.py real-frontier --models $W/chessboard_usn_photo.safetensors \
        $M/photo_node_k0.15_1000.safetensors $M/photo_node_k0.2_1000.safetensors \
        results/pruning_real25/models/no_pruning_0__s2.safetensors \
        --labels "default chessboard_usn_photo" "κ 0.15, 1000 steps" "κ 0.2, 1000 steps" "κ 0.3, 1000 steps (no-pruning control, seed 2)" \
        --budgets 120 1000 3000 --out results/models_node_long --threads 1 ;;
continue)  # the default (κ 0.2, 1000 steps) 1000 steps more at κ 0.2 and at κ 0.3
    for k in 0.2 0.3; do
        usn-keypoints train --init $W/chessboard_usn_node.safetensors --robust-kappa $k $C --seed 1 \
            --out $M/node_plus1000_k$k.safetensors &
    done
    wait ;;
measure2)
    python results/models_real/bab_engine_cpuclock/cpuclock_cli.py real-frontier --models $W/chessboard_usn_node.safetensors \
        $M/node_plus1000_k0.2.safetensors $M/node_plus1000_k0.3.safetensors \
        --labels "default chessboard_usn_node" "+1000 steps κ 0.2" "+1000 steps κ 0.3" \
        --budgets 120 1000 3000 --out results/models_node_long/continued --threads 1 ;;
seeds)  # the default's recipe (κ 0.2, 1000 steps from chessboard_usn_photo) with seeds 1 and 2 (the default is seed 0)
    for s in 1 2; do
        usn-keypoints train --init $W/chessboard_usn_photo.safetensors --robust-kappa 0.2 $C --seed $s \
            --out $M/photo_node_k0.2_1000_s$s.safetensors &
    done
    wait ;;
gentle)  # the default 1000 steps more at κ 0.3 with a 5x smaller learning rate
    usn-keypoints train --init $W/chessboard_usn_node.safetensors --robust-kappa 0.3 ${C/--lr 5e-4/--lr 1e-4} --seed 2 \
        --out $M/node_plus1000_k0.3_lr1e-4.safetensors ;;
measure3)
    python results/models_real/bab_engine_cpuclock/cpuclock_cli.py real-frontier --models $W/chessboard_usn_node.safetensors \
        $M/photo_node_k0.2_1000_s1.safetensors $M/photo_node_k0.2_1000_s2.safetensors $M/node_plus1000_k0.3_lr1e-4.safetensors \
        --labels "default chessboard_usn_node (seed 0)" "the default's recipe, seed 1" "the default's recipe, seed 2" \
        "+1000 steps κ 0.3, lr 1e-4" --budgets 120 1000 3000 --out results/models_node_long/seeds --threads 1 ;;
eps0.1)  # ±0.1 with a 300 s cap of CPU per frame (the target's "no budget")
    python results/models_real/bab_engine_cpuclock/cpuclock_cli.py real-frontier --models $W/chessboard_usn_node.safetensors \
        --labels "default chessboard_usn_node" --eps 0.1 --budgets 300000 --out results/models_node_long/eps0.1_long --threads 1 ;;
k0.25)  # the default's recipe at κ 0.25 (between the default's 0.2 and the control's 0.3)
    usn-keypoints train --init $W/chessboard_usn_photo.safetensors --robust-kappa 0.25 $C \
        --out $M/photo_node_k0.25_1000.safetensors ;;
measure4)
    python results/models_real/bab_engine_cpuclock/cpuclock_cli.py real-frontier --models $W/chessboard_usn_node.safetensors \
        $M/photo_node_k0.25_1000.safetensors $M/photo_node_k0.3_d3_1000.safetensors \
        --labels "default chessboard_usn_node" "κ 0.25, 1000 steps" "κ 0.3, distillation weight 3" \
        --budgets 120 1000 3000 --out results/models_node_long/k0.25_d3 --threads 1 ;;
tiles)  # the default's recipe with the term on the certifier's first tiles (the box cut at the clip kinks)
    usn-keypoints train --init $W/chessboard_usn_photo.safetensors --robust-kappa 0.2 $C --robust-first-tiles \
        --out $M/photo_node_k0.2_tiles_1000.safetensors ;;
measure5)
    python results/models_real/bab_engine_cpuclock/cpuclock_cli.py real-frontier --models $W/chessboard_usn_node.safetensors \
        $M/photo_node_k0.2_tiles_1000.safetensors --labels "default chessboard_usn_node" "κ 0.2 on the first tiles" \
        --budgets 120 1000 3000 --out results/models_node_long/first_tiles --threads 1 ;;
distill3)  # κ 0.3 from chessboard_usn_photo with three times the distillation weight
    usn-keypoints train --init $W/chessboard_usn_photo.safetensors --robust-kappa 0.3 ${C/--distill-weight 1/--distill-weight 3} \
        --out $M/photo_node_k0.3_d3_1000.safetensors ;;
eps0.05)  # ±0.05 within 1 s and with the same 300 s cap
    python results/models_real/bab_engine_cpuclock/cpuclock_cli.py real-frontier --models $W/chessboard_usn_node.safetensors \
        --labels "default chessboard_usn_node" --eps 0.05 --budgets 1000 300000 --out results/models_node_long/eps0.05_long --threads 1 ;;
*) echo "usage: $0 train|measure|continue|measure2|seeds|gentle|measure3|k0.25|distill3|measure4|tiles|measure5|eps0.1|eps0.05" >&2; exit 2 ;;
esac
