"""``usn-keypoints <subcommand>``: parses arguments and calls the library."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usn-keypoints", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    # Each subcommand: sub.add_parser(...) then p.set_defaults(func=<handler(args) -> int>).
    # --- subcommands (one block each; add new blocks above this line) ---
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"usn-keypoints {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
