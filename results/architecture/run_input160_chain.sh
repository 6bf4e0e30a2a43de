#!/usr/bin/env bash
# The 160×120 network of the architecture study (run_arch.sh input160 ... --input-size 160x120) through the default's
# last step: 1000 steps on the node's exact property (r = 4 frame px = 1.0 input px at 160×120, the whole ±0.02 box)
# at κ 0.2 and 0.3, distilled from its own task-only checkpoint (the dense model is 128×96), then measured.
# usage: results/architecture/run_input160_chain.sh node|measure|more|measure2   (docs/training.md, "Architecture study")
set -euo pipefail
A=results/architecture; M=$A/models
T=$M/input160_task.safetensors
C="--photo --train-images 6000 --batch-size 24 --lr 5e-4 --threads 1 --steps 1000 --robust-eps 0.02 --robust-ramp 0 \
   --robust-radius 1.0 --robust-form log --distill-from $T --distill-weight 1"
case ${1:-} in
node)
    for k in 0.2 0.3; do
        usn-keypoints train --init $T --robust-kappa $k $C --out $M/input160_node_k$k.safetensors &
    done
    wait ;;
measure)
    python results/models_real/bab_engine_cpuclock/cpuclock_cli.py real-frontier --models $M/input160_node_k0.2.safetensors \
        $M/input160_node_k0.3.safetensors --labels "input 160×120 + κ 0.2 node" "input 160×120 + κ 0.3 node" \
        --budgets 120 1000 5000 --out $A/round8_input160_node --threads 1 ;;
more)  # the κ 0.3 model 2000 steps more at κ 0.3, and 1000 steps more at κ 1 (distillation weight 3)
    usn-keypoints train --init $M/input160_node_k0.3.safetensors --robust-kappa 0.3 ${C/--steps 1000/--steps 2000} \
        --seed 1 --out $M/input160_node_k0.3_plus2000.safetensors &
    usn-keypoints train --init $M/input160_node_k0.3.safetensors --robust-kappa 1 ${C/--distill-weight 1/--distill-weight 3} \
        --seed 1 --out $M/input160_node_k0.3_plus1000_k1.safetensors &
    wait ;;
measure2)  # one run per model (the κ 1 run finished first)
    F="python results/models_real/bab_engine_cpuclock/cpuclock_cli.py real-frontier --budgets 120 1000 5000 --threads 1"
    $F --models $M/input160_node_k0.3_plus1000_k1.safetensors --labels "input 160×120 + κ 0.3 node + 1000 steps κ 1" \
        --out $A/round9_input160_k1
    $F --models $M/input160_node_k0.3_plus2000.safetensors --labels "input 160×120 + κ 0.3 node, 3000 steps" \
        --out $A/round9_input160_k0.3 ;;
*) echo "usage: $0 node|measure|more|measure2" >&2; exit 2 ;;
esac
