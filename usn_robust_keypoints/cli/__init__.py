"""``usn-keypoints <subcommand>``: the one command-line interface of the package.

One module per command family (:mod:`.train`, :mod:`.evaluate`, :mod:`.certify`, :mod:`.prune`,
:mod:`.model`, :mod:`.nodes`, :mod:`.ros`, :mod:`.experiments`); each has ``register(sub)``, which adds its subcommands with
``p.set_defaults(func=handler)``, and ``handler(args) -> int`` turns the arguments into the
library's config dataclasses and calls the library (imported lazily, so ``--help`` stays fast and
only the ROS subcommands import rclpy). This package is the only place that knows argparse.
"""

from __future__ import annotations

import argparse
import sys

from . import certify, evaluate, experiments, model, nodes, prune, ros, train

FAMILIES = (train, evaluate, certify, prune, model, nodes, ros, experiments)


def build_parser() -> argparse.ArgumentParser:
    """The ``usn-keypoints`` parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="usn-keypoints", description="Keypoint detection with certified brightness/contrast robustness: train, prune, certify, run.")
    sub = parser.add_subparsers(dest="command", required=True)
    for family in FAMILIES:
        family.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run one subcommand; a ``ValueError``/``FileNotFoundError``/``ImportError``
    (e.g. an optional backend that is not installed) is printed
    as ``usn-keypoints <command>: error: ...`` with exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"usn-keypoints {args.command}: error: {e}", file=sys.stderr)
        return 2
