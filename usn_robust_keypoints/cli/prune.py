"""``usn-keypoints prune``: progressive structured pruning of one checkpoint.

Options left out take the defaults of ``ScheduleConfig`` / ``UsnConfig`` (one source)."""

from __future__ import annotations

import argparse

from .common import add_robust_args, given, robust_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="USN (or baseline) structured pruning of a checkpoint, progressive with fine-tuning")
    p.add_argument("--model", help="checkpoint to prune (default: the shipped dense model)")
    p.add_argument("--method", default="usn", choices=("usn", "random", "l1", "bn", "taylor"))
    p.add_argument("--sparsity", type=float, default=0.5, help="fraction of hidden conv channels to remove")
    p.add_argument("--wasserstein", type=float, help="λ of the Wasserstein concentration loss (default 0)")
    p.add_argument("--w-variant", choices=("assigned", "sorted"), help="Wasserstein cost (default assigned)")
    p.add_argument("--out", required=True, help="output checkpoint (.safetensors added if missing)")
    p.add_argument("--round-fraction", type=float, help="channels removed per round (default 0.125)")
    p.add_argument("--steps-per-round", type=int, help="fine-tune steps per pruning round")
    p.add_argument("--recovery-steps", type=int, help="fine-tune steps at the target sparsity")
    p.add_argument("--batch-size", type=int, help="fine-tuning batch size")
    p.add_argument("--lr", type=float, help="fine-tuning peak learning rate")
    p.add_argument("--train-images", type=int, default=16000, help="synthetic training scenes")
    p.add_argument("--test-images", type=int, default=500, help="synthetic test scenes for PCK (0: skip)")
    p.add_argument("--photo", action="store_true",
                   help="fine-tune on scenes of the board as a photographed print (data/photo.py)")
    p.add_argument("--distill-from", metavar="CHECKPOINT",
                   help="teacher detector: add a distillation term towards its heatmaps to every fine-tuning")
    p.add_argument("--distill-weight", type=float, default=1.0, help="weight of the distillation term")
    p.add_argument("--usn-signal", choices=("mean_var", "total_var", "energy", "relu_var", "contribution", "gate"),
                   help="USN signal term (default energy)")
    p.add_argument("--usn-smoothness", choices=("sampled", "bounds"),
                   help="USN smoothness term: variance over sampled θ (default), or the certifier's bound width")
    p.add_argument("--usn-gamma", type=float, help="weight of the stability ratio, 0..1 (default 0.5)")
    p.add_argument("--usn-eps", type=float, help="α = β of the box USN samples θ from (default 0.05)")
    p.add_argument("--usn-no-bias", action="store_true", help="drop the bias term B from USN")
    p.add_argument("--usn-relu-weight", type=float, help="exponent of the ReLU-stability weight (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    add_robust_args(p)
    p.set_defaults(func=run_prune)


def usn_config(args: argparse.Namespace):
    """The ``UsnConfig`` of the ``--usn-*`` options."""
    from ..prune.usn import UsnConfig

    eps = {} if args.usn_eps is None else {"alpha": args.usn_eps, "beta": args.usn_eps}
    return UsnConfig(**eps, **given(signal=args.usn_signal, smoothness=args.usn_smoothness, gamma=args.usn_gamma,
                                    relu_weight=args.usn_relu_weight, include_bias=False if args.usn_no_bias else None),
                     seed=args.seed)


def run_prune(args: argparse.Namespace) -> int:
    """Prune one checkpoint progressively, save the physically smaller model and the USN scores
    its first round pruned by (``.usn_scores.json`` / ``.png`` next to it)."""
    from dataclasses import replace
    from pathlib import Path

    import torch

    from ..certify.training_loss import robust_term
    from ..data import CHESSBOARD_9X6, PhotoConfig, SceneConfig, generate_split
    from ..evaluate import evaluate_model
    from ..model import KeypointModel, load_detector, save_checkpoint
    from ..prune.schedule import ScheduleConfig, progressive_prune, trajectory_steps
    from ..prune.usn import plot_scores, save_scores
    from ..train import check_teacher
    from ..weights import DEFAULT_DENSE, shipped_model_path

    torch.set_num_threads(args.threads)
    sched = ScheduleConfig(method=args.method, targets=(args.sparsity,), seed=args.seed, usn=usn_config(args),
                           **given(round_fraction=args.round_fraction, steps_per_round=args.steps_per_round,
                                   recovery_steps=args.recovery_steps, wasserstein=args.wasserstein,
                                   w_variant=args.w_variant, batch_size=args.batch_size, lr=args.lr))
    robust = robust_config(args)
    src = Path(args.model) if args.model else shipped_model_path(DEFAULT_DENSE)
    dense, _ = load_detector(src)
    cfg = dense.config
    teacher = load_detector(args.distill_from)[0] if args.distill_from else None
    if teacher is not None:
        check_teacher(teacher, cfg)  # before the training data is generated
    sc = SceneConfig(cfg.input_width, cfg.input_height)
    images, kps = generate_split("train", args.train_images, replace(sc, photo=PhotoConfig() if args.photo else None))
    out = Path(args.out)
    if out.suffix != ".safetensors":
        out = out.with_name(out.name + ".safetensors")

    def save_first_scores(round_index: int, scores, usn) -> None:
        if round_index == 1:
            save_scores(scores, out.with_suffix(".usn_scores.json"), usn)
            plot_scores(scores, out.with_suffix(".usn_scores.png"))

    term = robust_term(robust, images, kps, trajectory_steps(dense, sched), seed=args.seed)
    distill_weight = args.distill_weight if teacher is not None else 0.0
    result = progressive_prune(dense, images, kps, sched, extra_loss=term, on_scores=save_first_scores,
                               teacher=teacher, distill_weight=distill_weight)[-1]
    params = sum(p.numel() for p in result.detector.parameters())
    info = {"pruning": {**sched.to_dict(), "source": str(src), "sparsity": result.sparsity, "removed": result.removed,
                        "photo": bool(args.photo), "distill_from": args.distill_from,
                        "distill_weight": distill_weight}}
    if term is not None:
        info["robust"] = term.summary()
    if args.test_images > 0:
        te_x, te_k = generate_split("test", args.test_images, sc)
        ev = evaluate_model(KeypointModel(result.detector, "cpu"), list(te_x), te_k, CHESSBOARD_9X6.symmetries,
                            progress=False)
        info["synthetic_test"] = ev.to_dict()
        print(ev.table())
    path = save_checkpoint(result.detector, out, extra=info)
    dense_params = sum(p.numel() for p in dense.parameters())
    print(f"channels {dense.config.conv_channels()} -> {result.channels}; params {dense_params} -> {params}")
    print(f"saved {path}")
    return 0
