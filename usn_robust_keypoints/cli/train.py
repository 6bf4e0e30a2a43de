"""``usn-keypoints train``."""

from __future__ import annotations

import argparse

from .common import add_robust_args, robust_config, set_threads


def register(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--dilations", type=int, nargs="+",
                   help="dilation of each of the --depth stride-4 blocks (with --init: re-dilates the loaded blocks)")
    p.add_argument("--photo", action="store_true",
                   help="synthetic scenes of the board as a photographed print (data/photo.py)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--zero-mean-stem", action="store_true",
                   help="keep the first conv's kernels at zero sum (brightness cancels in the first layer)")
    p.add_argument("--stem-padding", choices=("zeros", "replicate"),
                   help="padding of the first conv (default zeros; with --init: the checkpoint's)")
    p.add_argument("--input-clamp", type=float, metavar="TAU",
                   help="the network clamps its input to [TAU, 1 - TAU] first (pure black / white pixels become "
                        "constant under the perturbation); with --init: set on the checkpoint's network")
    p.add_argument("--distill-from", metavar="CHECKPOINT",
                   help="teacher detector (same keypoints and input size; the student's output stride or a finer "
                        "one): add a distillation term towards its heatmaps on every training batch")
    p.add_argument("--distill-weight", type=float, default=1.0, help="weight of the distillation term")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    add_robust_args(p)
    p.set_defaults(func=run_train)


def _overrides(args: argparse.Namespace) -> dict:
    """The ``DetectorConfig`` fields the options set (None: not given)."""
    arch = {"zero_mean_stem": True if args.zero_mean_stem else None, "stem_padding": args.stem_padding,
            "input_clamp": args.input_clamp, "dilations": args.dilations}
    if args.init:
        return arch
    arch.update({k: getattr(args, k) for k in ("stem_width", "width", "depth", "head_width")})
    arch["output_stride"] = args.stride
    if args.input_size:
        arch["input_width"], arch["input_height"] = (int(v) for v in args.input_size.lower().split("x"))
    return arch


def run_train(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..certify.training_loss import robust_term
    from ..data import CHESSBOARD_9X6, PhotoConfig, SceneConfig, generate_split, load_coco
    from ..evaluate import evaluate_model
    from ..model import KeypointModel, load_detector, save_checkpoint
    from ..train import build_detector, check_teacher, to_training_arrays, train_detector

    robust = robust_config(args)
    if robust is not None and not args.init:
        # The term freezes BatchNorm at its running statistics (the network the bounds certify); from
        # scratch those are the initial ones, and the network stays at a flat heatmap (measured:
        # loss ln(h*w) for 60 steps with the term, falling without it).
        raise ValueError("--robust-kappa needs a trained starting point: first train without the term, "
                         "then fine-tune with --init CHECKPOINT --robust-kappa K")
    torch.manual_seed(args.seed)
    set_threads(args.threads)
    names = (load_coco(args.coco)[1] if args.coco else CHESSBOARD_9X6.keypoint_names) if not args.init else []
    model = build_detector(names, args.init, **_overrides(args))
    cfg = model.config
    teacher = load_detector(args.distill_from)[0] if args.distill_from else None
    if teacher is not None:
        check_teacher(teacher, cfg)  # before the training data is generated
    if args.coco:
        records, _, _ = load_coco(args.coco)
        images, kps = to_training_arrays([r.load() for r in records], np.stack([r.keypoints for r in records]), cfg)
    else:
        scenes = SceneConfig(cfg.input_width, cfg.input_height, photo=PhotoConfig() if args.photo else None)
        images, kps = generate_split("train", args.train_images, scenes)
    term = robust_term(robust, images, kps, args.steps, seed=args.seed)
    losses = train_detector(model, images, kps, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                            seed=args.seed, device=args.device, extra_loss=term, teacher=teacher,
                            distill_weight=args.distill_weight)
    info = {"train": {k: v for k, v in vars(args).items() if k != "func"},
            "final_loss": float(np.mean(losses[-50:]))}
    if term is not None:
        info["robust"] = term.summary()
        print(f"robustness term (last 50 steps): {info['robust']}")
    if not args.coco:
        test_imgs, test_kps = generate_split("test", 500, SceneConfig(cfg.input_width, cfg.input_height))
        ev = evaluate_model(KeypointModel(model, args.device), list(test_imgs), test_kps, CHESSBOARD_9X6.symmetries)
        info["synthetic_test"] = ev.to_dict()
        print(ev.table())
    path = save_checkpoint(model.cpu(), args.out, extra=info)
    print(f"saved {path}")
    return 0
