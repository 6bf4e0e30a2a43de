"""Handlers of ``usn-keypoints prune`` and ``usn-keypoints experiment`` (cli.py only parses)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch


def _usn_config(args: argparse.Namespace):
    from .usn import UsnConfig

    return UsnConfig(alpha=args.usn_eps, beta=args.usn_eps, signal=args.usn_signal,
                     smoothness=args.usn_smoothness, gamma=args.usn_gamma,
                     include_bias=not args.usn_no_bias, relu_weight=args.usn_relu_weight, seed=args.seed)


def cmd_prune(args: argparse.Namespace) -> int:
    """Prune one checkpoint progressively and save the physically smaller model."""
    from ..data import CHESSBOARD_9X6, SceneConfig, generate_split
    from ..evaluate import evaluate_model
    from ..model import KeypointModel, load_detector, save_checkpoint
    from ..weights import DEFAULT_DENSE, shipped_model_path
    from ..certify.training_loss import robust_term
    from .schedule import ScheduleConfig, progressive_prune, trajectory_steps
    from .usn import plot_scores, save_scores, usn_scores

    torch.set_num_threads(args.threads)
    src = Path(args.model) if args.model else shipped_model_path(DEFAULT_DENSE)
    dense, _ = load_detector(src)
    cfg = dense.config
    sc = SceneConfig(cfg.input_width, cfg.input_height)
    images, kps = generate_split("train", args.train_images, sc)
    sched = ScheduleConfig(method=args.method, targets=(args.sparsity,), round_fraction=args.round_fraction,
                           steps_per_round=args.steps_per_round, recovery_steps=args.recovery_steps,
                           wasserstein=args.wasserstein, w_variant=args.w_variant, batch_size=args.batch_size,
                           lr=args.lr, seed=args.seed, usn=_usn_config(args))
    out = Path(args.out)
    if out.suffix != ".safetensors":
        out = out.with_name(out.name + ".safetensors")
    if args.method == "usn":
        calib = torch.from_numpy(images[: sched.calib_images]).float().div(255.0).unsqueeze(1)
        scores = usn_scores(dense, calib, sched.usn, progress=True)
        save_scores(scores, out.with_suffix(".usn_scores.json"), sched.usn)
        plot_scores(scores, out.with_suffix(".usn_scores.png"))
    robust = robust_term(args, images, kps, trajectory_steps(dense, sched))
    result = progressive_prune(dense, images, kps, sched, extra_loss=robust)[-1]
    params = sum(p.numel() for p in result.detector.parameters())
    info = {"pruning": {**sched.to_dict(), "source": str(src), "sparsity": result.sparsity, "removed": result.removed}}
    if robust is not None:
        info["robust"] = robust.summary()
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


def cmd_experiment(args: argparse.Namespace) -> int:
    """Run the whole pruning comparison and write the table and plots."""
    from ..certify.training_loss import robust_config
    from .experiment import ExperimentConfig, run_experiment, results_table

    kw = {k: v for k, v in dict(model=args.model, seed=args.seed, threads=args.threads, jobs=args.jobs,
                                cert_frames=args.cert_frames,
                                max_depth=args.max_depth, train_images=args.train_images,
                                steps_per_round=args.steps_per_round, recovery_steps=args.recovery_steps,
                                batch_size=args.batch_size, lr=args.lr, test_images=args.test_images).items() if v is not None}
    for key in ("sparsities", "methods", "eps", "beta_grid", "wasserstein"):
        if getattr(args, key) is not None:
            kw[key] = tuple(getattr(args, key))
    if args.no_ablations:
        kw["ablations"] = False
    kw["robust"] = robust_config(args)
    cfg = ExperimentConfig.quick(**kw) if args.quick else ExperimentConfig(**kw)
    usn = {k: v for k, v in dict(smoothness=args.usn_smoothness, gamma=args.usn_gamma).items() if v is not None}
    if not args.quick:
        usn["seed"] = cfg.seed
    cfg.usn = replace(cfg.usn, **usn)
    rows = run_experiment(cfg, args.out)
    print(results_table(rows, cfg))
    print(f"wrote {Path(args.out) / 'results.md'}")
    return 0
