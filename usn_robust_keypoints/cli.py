"""``usn-keypoints <subcommand>``: parses arguments and calls the library."""

from __future__ import annotations

import argparse
from dataclasses import replace
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usn-keypoints", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    # Each subcommand: sub.add_parser(...) then p.set_defaults(func=<handler(args) -> int>).
    p = sub.add_parser("train", help="train a detector on synthetic scenes (or a COCO-keypoints file)")
    p.add_argument("--out", required=True, help="output checkpoint (.safetensors)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--train-images", type=int, default=16000, help="synthetic training scenes")
    p.add_argument("--coco", help="train on this COCO-keypoints JSON instead of synthetic scenes")
    p.add_argument("--init", help="start from this checkpoint (fine-tuning); its architecture is kept")
    p.add_argument("--input-size", help="WIDTHxHEIGHT of the network input (default: DetectorConfig's)")
    p.add_argument("--stride", type=int, choices=(2, 4), help="output stride (default: DetectorConfig's)")
    for name in ("stem-width", "width", "depth", "head-width"):
        p.add_argument(f"--{name}", type=int, help="architecture (default: DetectorConfig's)")
    p.add_argument("--dilations", type=int, nargs="+", help="dilation of each of the --depth stride-4 blocks")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--zero-mean-stem", action="store_true",
                   help="keep the first conv's kernels at zero sum (brightness cancels in the first layer)")
    p.add_argument("--stem-padding", choices=("zeros", "replicate"),
                   help="padding of the first conv (default zeros; with --init: the checkpoint's)")
    p.add_argument("--input-clamp", type=float, metavar="TAU",
                   help="the network clamps its input to [TAU, 1 - TAU] first (pure black / white pixels become "
                        "constant under the perturbation); with --init: set on the checkpoint's network")
    p.add_argument("--distill-from", metavar="CHECKPOINT",
                   help="teacher detector (same keypoints, input size and stride): add a distillation term "
                        "towards its heatmaps on every training batch")
    p.add_argument("--distill-weight", type=float, default=1.0, help="weight of the distillation term")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    _robust_args(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="PCK@r and mean pixel error of a model")
    p.add_argument("--model", help="checkpoint (default: the shipped default model)")
    p.add_argument("--set", default="real-left", choices=("real-left", "real-right", "synthetic-test"),
                   help="evaluation set (real-right is reserved for independent checks)")
    p.add_argument("--coco", help="evaluate on this COCO-keypoints JSON instead of --set")
    p.add_argument("--radius", type=float, nargs="+", default=[3.0], help="PCK radii in model-input pixels")
    p.add_argument("--json", help="write the metrics as JSON here")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("build-realset", help="label the opencv-doc chessboard photos as COCO-keypoints JSON")
    p.add_argument("--side", default="left", choices=("left", "right"))
    p.set_defaults(func=lambda a: print(_real_set(a.side)))

    def _prune_command(name: str):  # handlers live in usn_robust_keypoints.prune.commands
        def run(args: argparse.Namespace) -> int:
            from .prune import commands

            return getattr(commands, name)(args)
        return run

    p = sub.add_parser("prune", help="USN (or baseline) structured pruning of a checkpoint, progressive with fine-tuning")
    p.add_argument("--model", help="checkpoint to prune (default: the shipped dense model)")
    p.add_argument("--method", default="usn", choices=("usn", "random", "l1", "bn", "taylor"))
    p.add_argument("--sparsity", type=float, default=0.5, help="fraction of hidden conv channels to remove")
    p.add_argument("--wasserstein", type=float, default=0.0, help="λ of the Wasserstein concentration loss")
    p.add_argument("--w-variant", default="assigned", choices=("assigned", "sorted"))
    p.add_argument("--out", required=True, help="output checkpoint (.safetensors added if missing)")
    p.add_argument("--round-fraction", type=float, default=0.125, help="channels removed per round")
    p.add_argument("--steps-per-round", type=int, default=30)
    p.add_argument("--recovery-steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train-images", type=int, default=16000, help="synthetic training scenes")
    p.add_argument("--test-images", type=int, default=500, help="synthetic test scenes for PCK (0: skip)")
    p.add_argument("--usn-signal", default="energy", choices=("mean_var", "total_var", "energy", "relu_var", "contribution", "gate"))
    p.add_argument("--usn-smoothness", default="sampled", choices=("sampled", "bounds"),
                   help="USN smoothness term: variance over sampled θ, or the certifier's bound width")
    p.add_argument("--usn-gamma", type=float, default=0.5, help="weight of the stability ratio (0..1)")
    p.add_argument("--usn-eps", type=float, default=0.05, help="α = β of the box USN samples θ from")
    p.add_argument("--usn-no-bias", action="store_true", help="drop the bias term B from USN")
    p.add_argument("--usn-relu-weight", type=float, default=0.0, help="exponent of the ReLU-stability weight")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    _robust_args(p)
    p.set_defaults(func=_prune_command("cmd_prune"))

    p = sub.add_parser("experiment", help="pruning comparison (USN, USN+W, baselines): markdown table + plots")
    p.add_argument("--out", default="results/pruning", help="results folder")
    p.add_argument("--model", help="dense checkpoint (default: the shipped dense model)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (seconds to minutes)")
    p.add_argument("--wasserstein", type=float, nargs="+",
                   help="λ of the USN+W rows (several values: one USN+W trajectory each, a λ sweep; default 1)")
    p.add_argument("--cert-frames", type=int, help="test frames certified per model")
    p.add_argument("--max-depth", type=int, help="native θ-box splitting depth (default: certify's)")
    p.add_argument("--train-images", type=int, help="synthetic training scenes for fine-tuning")
    p.add_argument("--no-ablations", action="store_true")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch CPU threads (default 1)")
    p.add_argument("--jobs", type=int, help="pruning trajectories run in parallel processes (default 1)")
    p.add_argument("--sparsities", type=float, nargs="+", help="target channel sparsities (default 0.25 0.5 0.75)")
    p.add_argument("--methods", nargs="+",
                   help="usn usn+w random l1 bn taylor (default: all); a baseline + '+w' (e.g. bn+w) adds the "
                        "Wasserstein concentration to that criterion's marks")
    p.add_argument("--steps-per-round", type=int, help="fine-tune steps per pruning round")
    p.add_argument("--recovery-steps", type=int, help="fine-tune steps at each target sparsity")
    p.add_argument("--batch-size", type=int, help="fine-tuning batch size (default 16)")
    p.add_argument("--lr", type=float, help="fine-tuning peak learning rate (default 1e-3)")
    p.add_argument("--test-images", type=int, help="synthetic test scenes for PCK")
    p.add_argument("--eps", type=float, nargs="+", help="α = β values of the certified columns")
    p.add_argument("--beta-grid", type=float, nargs="+", help="ascending β grid of mean β*")
    p.add_argument("--usn-smoothness", choices=("sampled", "bounds"),
                   help="USN smoothness term of the USN rows (default: sampled)")
    p.add_argument("--usn-gamma", type=float, help="USN weight of the stability ratio, 0..1 (default 0.5)")
    _robust_args(p)
    p.set_defaults(func=_prune_command("cmd_experiment"))

    # ROS 2 (usn_robust_keypoints.nodes): run / demo / bench-ros
    def _ros_command(name: str):  # handlers live in usn_robust_keypoints.nodes.commands (imports rclpy)
        def run(args: argparse.Namespace) -> int:
            from .nodes import commands

            return getattr(commands, name)(args)

        return run

    p = sub.add_parser("run", help="start the ROS 2 nodes of a params YAML as processes (loopback DDS)")
    p.add_argument("--config", default="demo.yaml", help="ROS params YAML (path or name in config/)")
    p.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    p.add_argument("--remap", action="append", default=[], metavar="FROM:=TO", help="topic remapping, repeatable")
    p.add_argument("--log-dir", default=None, help="folder for the nodes' output and ROS logs")
    p.set_defaults(func=_ros_command("cmd_run"))
    p = sub.add_parser("demo", help="camera -> detector + certifier on the shipped model; live table + annotated PNG")
    p.add_argument("--duration", type=float, default=20.0, help="seconds (default 20)")
    p.add_argument("--source", default="opencv-doc:left[0-9]*.jpg",
                   help="synthetic | opencv-doc:<glob> | camera index | video | image folder/glob")
    p.add_argument("--model", default=None, help="checkpoint (default: the nodes' default model)")
    p.add_argument("--rate", type=float, default=15.0, help="camera Hz (default 15)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", default="results/demo", help="results folder")
    p.add_argument("--video", action="store_true", help="also write an MP4 of the certified frames")
    p.set_defaults(func=_ros_command("cmd_demo"))
    p = sub.add_parser("bench-ros", help="end-to-end ROS latency/fps/skip rate, dense vs pruned model")
    p.add_argument("--dense", default=None, help="dense checkpoint (default: shipped)")
    p.add_argument("--pruned", default=None, help="pruned checkpoint (default: shipped)")
    p.add_argument("--source", default="synthetic", help="camera_source source (default synthetic)")
    p.add_argument("--rate", type=float, default=30.0, help="camera Hz (default 30)")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per model")
    p.add_argument("--budget-ms", type=float, default=None, help="certifier budget (default: config)")
    p.add_argument("--out", default="results/bench_ros")
    p.set_defaults(func=_ros_command("cmd_bench_ros"))
    # certification (usn_robust_keypoints.certify)
    p = sub.add_parser("certify", help="certify keypoints of images against brightness/contrast changes")
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped default model)")
    p.add_argument("--images", help="image file or folder")
    p.add_argument("--coco", help="COCO-keypoints JSON (its images are certified)")
    p.add_argument("--alpha", type=float, default=0.02, help="contrast c in [1-alpha, 1+alpha]")
    p.add_argument("--beta", type=float, default=0.02, help="brightness b in [-beta, beta]")
    p.add_argument("--radius", type=float, default=4.0, help="radius in frame pixels")
    p.add_argument("--backend", default="native", choices=["native", "auto_lirpa"])
    p.add_argument("--method", default="CROWN", choices=["IBP", "CROWN", "alpha-CROWN"], help="auto_LiRPA method")
    p.add_argument("--budget-ms", type=float, default=None, help="time budget per frame (undecided -> unknown)")
    p.add_argument("--no-margins", action="store_true", help="skip the beta*/alpha* bisection")
    p.add_argument("--limit", type=int, default=0, help="certify at most this many images (0 = all)")
    p.add_argument("--json", help="write every per-keypoint result to this JSON file")
    p.add_argument("--plot", help="PNG with the margins drawn on the image (one file per frame)")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.set_defaults(func=lambda a: __import__("usn_robust_keypoints.certify.commands", fromlist=["x"]).cmd_certify(a))
    p = sub.add_parser("bench-certify", help="benchmark every certification backend/method (markdown table)")
    p.add_argument("--out", default="results/bench_certify.md")
    p.add_argument("--frames", type=int, default=8, help="synthetic test frames per model")
    p.add_argument("--lirpa-frames", type=int, default=4, help="frames for the (slow) auto_LiRPA methods")
    p.add_argument("--radius", type=float, default=4.0)
    p.add_argument("--train-steps", type=int, default=1500, help="training steps of the bench detector (cached)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--model", action="append", help="extra checkpoint to benchmark (repeatable; default: the shipped model)")
    p.add_argument("--eps", type=float, nargs="+", help="α = β boxes to benchmark (default 0.005 0.02 0.05 0.1)")
    p.add_argument("--real-frames", type=int, default=13, help="left* photos of the real-frame rows (0: none)")
    p.add_argument("--real-synthetic", type=int, default=8, help="full-size synthetic scenes of the real-frame rows")
    p.add_argument("--real-eps", type=float, nargs="+", default=[0.02, 0.05, 0.1], help="α = β of the real-frame rows")
    p.add_argument("--real-budgets", type=float, nargs="*", default=[120.0, 1000.0],
                   help="per-frame budgets (ms) run for the real-frame rows")
    p.add_argument("--real-derived", type=float, nargs="*", default=[10000.0],
                   help="budgets (ms) read off the capped run's decision times")
    p.add_argument("--real-cap-s", type=float, default=60.0, help="the 'no budget' cap per frame (s)")
    p.add_argument("--cpu-clock", action="store_true",
                   help="budgets and times on the certifying thread's CPU time (a shared, loaded machine)")
    p.set_defaults(func=lambda a: __import__("usn_robust_keypoints.certify.bench", fromlist=["x"]).cmd_bench_certify(a))
    # certifiability trade-off (usn_robust_keypoints.tradeoff)
    p = sub.add_parser("tradeoff", help="PCK@3px vs certified accuracy of models at several ε: table + PNG")
    p.add_argument("--models", nargs="+", help="checkpoints (default: the shipped dense model)")
    p.add_argument("--labels", nargs="+", help="one label per model (default: file stems)")
    p.add_argument("--out", default="results/certifiability", help="results folder")
    p.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.05, 0.1], help="α = β values certified")
    p.add_argument("--frames", type=int, default=64, help="synthetic test scenes certified per ε")
    p.add_argument("--first-frame", type=int, default=0,
                   help="certify test scenes from this index on (a held-out range for a check of a choice)")
    p.add_argument("--radius", type=float, default=4.0, help="disk radius r (frame px)")
    p.add_argument("--budget-ms", type=float, default=1000.0, help="certification budget per frame")
    p.add_argument("--no-budget", action="store_true",
                   help="no time budget: every keypoint is decided, numbers do not depend on machine load")
    p.add_argument("--max-depth", type=int, help="native θ-box splitting depth (default: certify's)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--merge", nargs="+", help="only combine these results.json files (same settings) into --out")
    p.set_defaults(func=lambda a: __import__("usn_robust_keypoints.tradeoff", fromlist=["x"]).cmd_tradeoff(a))
    # --- subcommands (one block each; add new blocks above this line) ---
    return parser


def _robust_args(p: argparse.ArgumentParser) -> None:
    """Certifiability-training options (usn_robust_keypoints.certify.training_loss)."""
    g = p.add_argument_group("certifiability training (robustness term from the certifier's bounds)")
    g.add_argument("--robust-kappa", type=float, default=0.0, help="weight κ of the robustness term (0: off)")
    g.add_argument("--robust-eps", type=float, default=0.1, help="α = β of the training box (after the ramp)")
    g.add_argument("--robust-ramp", type=float, default=0.5, help="fraction of the steps over which ε ramps up from 0")
    g.add_argument("--robust-batch", type=int, default=8, help="images per step for the robustness term")
    g.add_argument("--robust-radius", type=float, default=4.0, help="disk radius r (model-input px)")
    g.add_argument("--robust-splits", type=int, default=1,
                   help="bound an S x S grid of sub-boxes of the training box (cost x S^2; tighter)")
    g.add_argument("--robust-sub-eps", type=float, default=0.0,
                   help="bound one random sub-box of this half-width inside the training box per image "
                        "(the certifier's leaves) instead of the whole box (0: whole box)")
    g.add_argument("--robust-form", default="softplus", choices=("softplus", "log"),
                   help="per-keypoint term: softplus(t - m) or log1p(softplus(t - m))")


def _real_set(side: str):
    from .data import build_real_set

    return build_real_set(side)


def load_eval_set(name: str | None, coco: str | None) -> tuple[list, "np.ndarray", list[list[int]]]:
    """Frames, keypoints (N, K, 2) in frame pixels and symmetries of an evaluation set."""
    import numpy as np

    from .data import CHESSBOARD_9X6, generate_split, load_coco

    if coco is None and name == "synthetic-test":
        images, kps = generate_split("test", 500)
        return list(images), kps, CHESSBOARD_9X6.symmetries
    if coco is None:
        if name == "real-right":
            print("note: right* photos are reserved for independent checks; never tune on them", file=sys.stderr)
        coco = _real_set(name.split("-")[1])
    records, _, symmetries = load_coco(coco)
    return [r.load() for r in records], np.stack([r.keypoints for r in records]), symmetries


def _cmd_train(args: argparse.Namespace) -> int:
    from .data import CHESSBOARD_9X6, generate_split, load_coco
    from .evaluate import evaluate_model
    from .model import DetectorConfig, HeatmapDetector, KeypointModel, load_detector, save_checkpoint
    from .certify.training_loss import robust_term
    from .train import check_teacher, to_training_arrays, train_detector

    import numpy as np
    import torch

    if args.robust_kappa > 0 and not args.init:
        # The term freezes BatchNorm at its running statistics (the network the bounds certify); from
        # scratch those are the initial ones, and the network stays at a flat heatmap (measured:
        # loss ln(h*w) for 60 steps with the term, falling without it).
        raise ValueError("--robust-kappa needs a trained starting point: first train without the term, "
                         "then fine-tune with --init CHECKPOINT --robust-kappa K")
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.init:
        model, _ = load_detector(args.init)
        cfg = model.config
        if args.zero_mean_stem:
            cfg.zero_mean_stem = True
            model.apply_constraints()
        if args.stem_padding:
            cfg.stem_padding = model.net[0].padding_mode = args.stem_padding
        if args.input_clamp is not None:
            model.config = cfg = replace(cfg, input_clamp=args.input_clamp)  # validated by DetectorConfig
    else:
        names = load_coco(args.coco)[1] if args.coco else CHESSBOARD_9X6.keypoint_names
        arch = {k: getattr(args, k) for k in ("stem_width", "width", "depth", "head_width")}
        arch["output_stride"] = args.stride
        arch["dilations"] = args.dilations
        arch["zero_mean_stem"] = args.zero_mean_stem or None
        arch["stem_padding"] = args.stem_padding
        arch["input_clamp"] = args.input_clamp
        if args.input_size:
            arch["input_width"], arch["input_height"] = (int(v) for v in args.input_size.lower().split("x"))
        cfg = DetectorConfig(num_keypoints=len(names), keypoint_names=names,
                             **{k: v for k, v in arch.items() if v is not None})
        model = HeatmapDetector(cfg)
    teacher = load_detector(args.distill_from)[0] if args.distill_from else None
    if teacher is not None:
        check_teacher(teacher, cfg)  # before the training data is generated
    if args.coco:
        records, _, _ = load_coco(args.coco)
        images, kps = to_training_arrays([r.load() for r in records], np.stack([r.keypoints for r in records]), cfg)
    else:
        from .data import SceneConfig

        images, kps = generate_split("train", args.train_images, SceneConfig(cfg.input_width, cfg.input_height))
    robust = robust_term(args, images, kps, args.steps)
    losses = train_detector(model, images, kps, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                            seed=args.seed, device=args.device, extra_loss=robust, teacher=teacher,
                            distill_weight=args.distill_weight)
    info = {"train": {k: v for k, v in vars(args).items() if k != "func"},
            "final_loss": float(np.mean(losses[-50:]))}
    if robust is not None:
        info["robust"] = robust.summary()
        print(f"robustness term (last 50 steps): {info['robust']}")
    if not args.coco:
        from .data import SceneConfig

        test_imgs, test_kps = generate_split("test", 500, SceneConfig(cfg.input_width, cfg.input_height))
        ev = evaluate_model(KeypointModel(model, args.device), list(test_imgs), test_kps, CHESSBOARD_9X6.symmetries)
        info["synthetic_test"] = ev.to_dict()
        print(ev.table())
    path = save_checkpoint(model.cpu(), args.out, extra=info)
    print(f"saved {path}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from .evaluate import evaluate_model
    from .model import load_model

    model = load_model(args.model, device=args.device)
    frames, kps, symmetries = load_eval_set(args.set, args.coco)
    ev = evaluate_model(model, frames, kps, symmetries, tuple(args.radius))
    print(f"model: {model.path}  set: {args.coco or args.set}  images: {len(frames)}  "
          f"(PCK radii in {model.config.input_width}x{model.config.input_height} model-input pixels)")
    print(ev.table())
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": str(model.path), "set": args.coco or args.set, **ev.to_dict()}, f, indent=1)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"usn-keypoints {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
