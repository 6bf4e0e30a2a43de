"""``usn-keypoints evaluate`` and ``build-realset``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="PCK@r and mean pixel error of a model")
    p.add_argument("--model", help="checkpoint (default: the shipped default model)")
    p.add_argument("--set", default="real-left", choices=("real-left", "real-right", "synthetic-test"),
                   help="evaluation set (real-right is reserved for independent checks)")
    p.add_argument("--coco", help="evaluate on this COCO-keypoints JSON instead of --set")
    p.add_argument("--radius", type=float, nargs="+", default=[3.0], help="PCK radii in model-input pixels")
    p.add_argument("--json", help="write the metrics as JSON here")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser("build-realset", help="label the opencv-doc chessboard photos as COCO-keypoints JSON")
    p.add_argument("--side", default="left", choices=("left", "right"))
    p.set_defaults(func=run_build_realset)


def run_evaluate(args: argparse.Namespace) -> int:
    import json

    from ..evaluate import evaluate_model, load_eval_set
    from ..model import load_model

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


def run_build_realset(args: argparse.Namespace) -> int:
    from ..data import build_real_set

    print(build_real_set(args.side))
    return 0
