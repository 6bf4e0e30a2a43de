"""ROS 2 subcommands: ``run``, ``demo``, ``bench-ros`` (the handlers import rclpy, the parser does not)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="start the ROS 2 nodes of a params YAML as processes (loopback DDS)")
    p.add_argument("--config", default="demo.yaml", help="ROS params YAML (path or name in config/)")
    p.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    p.add_argument("--remap", action="append", default=[], metavar="FROM:=TO", help="topic remapping, repeatable")
    p.add_argument("--log-dir", default=None, help="folder for the nodes' output and ROS logs")
    p.set_defaults(func=run_nodes)

    p = sub.add_parser("demo", help="camera -> detector + certifier on the shipped model; live table + annotated PNG")
    p.add_argument("--duration", type=float, default=20.0, help="seconds (default 20)")
    p.add_argument("--source", default="opencv-doc:left[0-9]*.jpg",
                   help="synthetic | opencv-doc:<glob> | camera index | video | image folder/glob")
    p.add_argument("--model", default=None, help="checkpoint (default: the nodes' default model)")
    p.add_argument("--rate", type=float, default=15.0, help="camera Hz (default 15)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", default="results/demo", help="results folder")
    p.add_argument("--video", action="store_true", help="also write an MP4 of the certified frames")
    p.set_defaults(func=run_demo)

    p = sub.add_parser("bench-ros", help="end-to-end ROS latency/fps/skip rate, dense vs pruned model")
    p.add_argument("--dense", default=None, help="dense checkpoint (default: shipped)")
    p.add_argument("--pruned", default=None, help="pruned checkpoint (default: shipped)")
    p.add_argument("--source", default="synthetic", help="camera_source source (default synthetic)")
    p.add_argument("--rate", type=float, default=30.0, help="camera Hz (default 30)")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per model")
    p.add_argument("--budget-ms", type=float, default=None, help="certifier budget (default: config)")
    p.add_argument("--out", default="results/bench_ros")
    p.set_defaults(func=run_bench_ros)


def run_nodes(args: argparse.Namespace) -> int:
    from ..nodes.launcher import run

    return run(args.config, args.duration, args.remap, args.log_dir)


def run_demo(args: argparse.Namespace) -> int:
    from ..nodes.demo import run_demo as demo

    return demo(args.duration, args.source, args.model, args.rate, args.out, args.video, device=args.device)


def run_bench_ros(args: argparse.Namespace) -> int:
    from ..nodes.bench import run_bench

    return run_bench(args.dense, args.pruned, args.source, args.rate, args.warmup, args.seconds, args.out,
                     args.budget_ms)
