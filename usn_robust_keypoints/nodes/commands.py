"""Handlers of the ROS subcommands of ``usn-keypoints`` (``run``, ``demo``, ``bench-ros``)."""

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
