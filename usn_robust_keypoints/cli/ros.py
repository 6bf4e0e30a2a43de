"""ROS 2 bag and reliability subcommands: ``certify-bag``, ``record-bag`` (rosbags; no rclpy), ``soak`` and
``bench-large-images``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("certify-bag", help="certify every image of a ROS 2 bag topic into a new bag + CSV/JSON/plot")
    p.add_argument("bag", help="input bag folder (sqlite3 .db3 or mcap); only read")
    p.add_argument("--topic", required=True, help="sensor_msgs/Image or CompressedImage topic")
    p.add_argument("--out", help="output bag folder (default: <bag>_certified); report: <out>.csv/.json/.png")
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped default model)")
    p.add_argument("--alpha", type=float, default=0.02, help="contrast c in [1-alpha, 1+alpha]")
    p.add_argument("--beta", type=float, default=0.02, help="brightness b in [-beta, beta]")
    p.add_argument("--radius", type=float, default=4.0, help="radius in frame pixels")
    p.add_argument("--backend", default="native", choices=["native", "auto_lirpa"])
    p.add_argument("--budget-ms", type=float, default=None, help="time budget per frame (default: none)")
    p.add_argument("--no-margins", action="store_true", help="skip the beta*/alpha* bisection")
    p.add_argument("--storage", choices=["sqlite3", "mcap"], help="output storage (default: the input's)")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.set_defaults(func=certify_bag)

    p = sub.add_parser("record-bag", help="write a camera source (photos, folder, video, synthetic) into a ROS 2 bag")
    p.add_argument("out", help="new bag folder")
    p.add_argument("--source", default="opencv-doc:left[0-9]*.jpg",
                   help="opencv-doc:<glob> | image folder/glob | video | synthetic | camera index")
    p.add_argument("--topic", default="/camera/image_raw", help="image topic (compressed: <topic>/compressed)")
    p.add_argument("--format", default="raw", choices=["raw", "jpeg", "png"],
                   help="raw sensor_msgs/Image, or sensor_msgs/CompressedImage")
    p.add_argument("--storage", default="sqlite3", choices=["sqlite3", "mcap"])
    p.add_argument("--rate", type=float, default=10.0, help="stamp spacing in Hz")
    p.add_argument("--frames", type=int, default=0, help="at most this many frames (0 = all; needed for endless sources)")
    p.set_defaults(func=record_bag)

    p = sub.add_parser("soak", help="camera -> detector -> certifier for N minutes with bad frames, a certifier "
                                    "kill + restart and parameter changes; markdown accounting table")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--source", default="synthetic", help="camera_source source")
    p.add_argument("--rate", type=float, default=10.0, help="camera Hz")
    p.add_argument("--model", default=None, help="checkpoint (default: the nodes' default)")
    p.add_argument("--out", default="results/soak", help="results folder (soak.md, soak.json, logs/)")
    p.set_defaults(func=soak)

    p = sub.add_parser("bench-large-images", help="which image sizes arrive through the local DDS profile (table)")
    p.add_argument("--frames", type=int, default=5, help="frames per size")
    p.add_argument("--rate", type=float, default=5.0, help="Hz")
    p.add_argument("--out", default="results/bench_large_images")
    p.set_defaults(func=bench_large_images)


def certify_bag(args: argparse.Namespace) -> int:
    import torch

    from ..nodes.bag import certify_bag as run, report_paths

    torch.set_num_threads(args.threads)
    s = run(args.bag, args.topic, args.out, args.model, args.alpha, args.beta, args.radius, args.backend,
            args.budget_ms, not args.no_margins, args.device, args.storage)
    paths = report_paths(Path(s["output"]))
    print(f"[certify-bag] {s['frames']} frames of {s['topic']} ({s['type']}): {s['certified_frames']} certified, "
          f"{s['rejected_frames']} rejected; certified keypoints {s['certified_rate']:.1%}")
    print(f"[certify-bag] wrote {s['output']} (/keypoints, /certified_keypoints), "
          f"{paths['csv']}, {paths['json']}, {paths['png']}")
    return 0


def record_bag(args: argparse.Namespace) -> int:
    from ..nodes.bag import record_bag as run

    n = run(args.out, args.source, args.topic, args.format, args.storage, args.rate, args.frames)
    topic = args.topic if args.format == "raw" else args.topic.rstrip("/") + "/compressed"
    print(f"[record-bag] wrote {n} frames to {args.out} ({args.storage}, {topic}, {args.format})")
    return 0


def soak(args: argparse.Namespace) -> int:
    from ..nodes.soak import run_soak

    return run_soak(args.minutes, args.source, args.rate, args.model, args.out)


def bench_large_images(args: argparse.Namespace) -> int:
    from ..nodes.bench_transport import run_bench

    return run_bench(args.frames, args.rate, args.out)
