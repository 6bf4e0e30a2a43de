"""Handlers of the ROS subcommands of ``usn-keypoints`` (``run``, ``demo``, ``bench-ros``, ``certify-bag``,
``record-bag``, ``soak``)."""

from __future__ import annotations

import argparse


def cmd_run(args: argparse.Namespace) -> int:
    """``usn-keypoints run``."""
    from .launcher import run

    return run(args.config, args.duration, args.remap, args.log_dir)


def cmd_demo(args: argparse.Namespace) -> int:
    """``usn-keypoints demo``."""
    from .demo import run_demo

    return run_demo(args.duration, args.source, args.model, args.rate, args.out, args.video, device=args.device)


def cmd_bench_ros(args: argparse.Namespace) -> int:
    """``usn-keypoints bench-ros``."""
    from .bench import run_bench

    return run_bench(args.dense, args.pruned, args.source, args.rate, args.warmup, args.seconds, args.out,
                     args.budget_ms)


def cmd_certify_bag(args: argparse.Namespace) -> int:
    """``usn-keypoints certify-bag`` (rosbags; no rclpy)."""
    import torch

    from .bag import certify_bag, report_paths

    torch.set_num_threads(args.threads)
    s = certify_bag(args.bag, args.topic, args.out, args.model, args.alpha, args.beta, args.radius, args.backend,
                    args.budget_ms, not args.no_margins, args.device, args.storage)
    paths = report_paths(__import__("pathlib").Path(s["output"]))
    print(f"[certify-bag] {s['frames']} frames of {s['topic']} ({s['type']}): {s['certified_frames']} certified, "
          f"{s['rejected_frames']} rejected; certified keypoints {s['certified_rate']:.1%}")
    print(f"[certify-bag] wrote {s['output']} (/keypoints, /certified_keypoints), "
          f"{paths['csv']}, {paths['json']}, {paths['png']}")
    return 0


def cmd_record_bag(args: argparse.Namespace) -> int:
    """``usn-keypoints record-bag`` (rosbags; no rclpy)."""
    from .bag import record_bag

    n = record_bag(args.out, args.source, args.topic, args.format, args.storage, args.rate,
                   args.frames)
    topic = args.topic if args.format == "raw" else args.topic.rstrip("/") + "/compressed"
    print(f"[record-bag] wrote {n} frames to {args.out} ({args.storage}, {topic}, {args.format})")
    return 0


def cmd_soak(args: argparse.Namespace) -> int:
    """``usn-keypoints soak``."""
    from .soak import run_soak

    return run_soak(args.minutes, args.source, args.rate, args.model, args.out)
