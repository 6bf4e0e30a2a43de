#!/usr/bin/env bash
# Towards the node's 120 ms budget: the default fine-tuned in 1000-step segments at κ 1 with three times the
# distillation weight, on the node's property over the whole ±0.02 box (chain "box") or on the certifier's first
# tiles (chain "tiles"); every segment's checkpoint kept, then all measured on the real left* photos.
# usage: results/frontier_120ms/run.sh box|tiles|measure|eps0.05|strict   (docs/training.md, "Towards the 120 ms budget")
set -euo pipefail
W=usn_robust_keypoints/weights; M=results/frontier_120ms/models; mkdir -p $M
C="--photo --train-images 6000 --batch-size 24 --lr 5e-4 --threads 1 --steps 1000 --robust-eps 0.02 --robust-ramp 0 \
   --robust-radius 0.8 --robust-form log --robust-kappa 1 --distill-from $W/chessboard_dense.safetensors --distill-weight 3"
SEGMENTS=${SEGMENTS:-4}
chain() {  # chain NAME EXTRA...: SEGMENTS segments of 1000 steps from the default
    local name=$1; shift
    local init=$W/chessboard_usn_node.safetensors
    for i in $(seq 1 $SEGMENTS); do
        local out=$M/${name}_${i}000.safetensors
        [ -f $out ] || usn-keypoints train --init $init $C "$@" --seed $i --out $out
        init=$out
    done
}
case ${1:-} in
box) chain box ;;
tiles) chain tiles --robust-first-tiles ;;
measure)  # two processes (one per chain, the default in the first), then one table
    F="python results/models_real/bab_engine_cpuclock/cpuclock_cli.py real-frontier --budgets 120 1000 --threads 1"
    for name in box tiles; do
        models=(); labels=()
        [ $name = box ] && models+=($W/chessboard_usn_node.safetensors) && labels+=("default chessboard_usn_node")
        for i in $(seq 1 $SEGMENTS); do
            models+=($M/${name}_${i}000.safetensors); labels+=("κ 1 $name, ${i}000 steps")
        done
        $F --models "${models[@]}" --labels "${labels[@]}" --out results/frontier_120ms/$name &
    done
    wait
    usn-keypoints real-frontier --merge results/frontier_120ms/box/results.json results/frontier_120ms/tiles/results.json \
        --out results/frontier_120ms ;;
eps0.05)  # the chains' ends, the default and the κ 1 photo model at ±0.05 within 1 s
    python results/models_real/bab_engine_cpuclock/cpuclock_cli.py real-frontier --models $W/chessboard_usn_node.safetensors \
        $M/box_4000.safetensors $M/tiles_4000.safetensors results/models_real/models/photo_from_k1_k1.safetensors \
        --labels "default chessboard_usn_node" "κ 1 box, 4000 steps" "κ 1 tiles, 4000 steps" "κ 1 photo (#5)" \
        --eps 0.05 --budgets 1000 --out results/frontier_120ms/eps0.05 --threads 1 ;;
strict)  # 120 ms and 1 s again in one process on an idle machine, counting only keypoints proven by a round that
         # ended within the budget (real-frontier since 2026-12-02)
    models=($W/chessboard_usn_node.safetensors results/models_real/models/photo_from_k1_k1.safetensors)
    labels=("default chessboard_usn_node" "κ 1 photo (#5)")
    for name in box tiles; do
        for i in $(seq 1 $SEGMENTS); do
            models+=($M/${name}_${i}000.safetensors); labels+=("κ 1 $name, ${i}000 steps")
        done
    done
    python results/models_real/bab_engine_cpuclock/cpuclock_cli.py real-frontier --models "${models[@]}" \
        --labels "${labels[@]}" --budgets 120 1000 --out results/frontier_120ms/strict --threads 1 ;;
*) echo "usage: $0 box|tiles|measure|eps0.05|strict" >&2; exit 2 ;;
esac
