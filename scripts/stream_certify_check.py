"""Diagnostic: certify frames of camera_source's built-in synthetic stream (640×480, the bench-ros and
demo source) offline, with no time budget, at several radii. Separates what the live certifier's
budget costs from what the model and its bounds cannot prove on this stream. The same frames with
their gray levels mapped linearly onto 20..235 (no pixel at 0 or 255, so the perturbation's clip
never acts at ±0.02) show what the clip at pure black / white costs. Prints a markdown table.

    .venv/bin/python scripts/stream_certify_check.py --frames 10 --radii 4 20
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch

from usn_robust_keypoints.certify.api import certify
from usn_robust_keypoints.model import load_model
from usn_robust_keypoints.nodes.frame_sources import synthetic_frames
from usn_robust_keypoints.weights import DEFAULT_CERTIFIED, shipped_model_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(shipped_model_path(DEFAULT_CERTIFIED)))
    ap.add_argument("--frames", type=int, default=15, help="stream frames (every 4th of the first 4·N)")
    ap.add_argument("--eps", type=float, default=0.02, help="α = β")
    ap.add_argument("--radii", type=float, nargs="+", default=[4.0, 20.0, 40.0], help="radii in frame px")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model, device="cpu")
    frames = list(itertools.islice(synthetic_frames(), 0, 4 * args.frames, 4))
    print(f"{len(frames)} frames of the synthetic stream (640×480; the network sees 128×96, so 5 frame px = 1 "
          f"input px), α = β = {args.eps:g}, no budget, margins off, `{args.model}`.\n")
    print("| frames | radius (frame px) | certified | median r* (frame px) |\n|---|---|---|---|")
    remapped = [np.rint(20 + f.astype(np.float32) * (215 / 255)).astype(np.uint8) for f in frames]
    for name, fs in (("as rendered", frames), ("levels 20..235", remapped)):
        for r in args.radii:
            cert, rstar = [], []
            for f in fs:
                fc = certify(model, f, args.eps, args.eps, r, margins=False)
                cert += [k.certified for k in fc.keypoints]
                rstar += [k.certified_radius for k in fc.keypoints]
            print(f"| {name} | {r:g} | {sum(cert)}/{len(cert)} | {np.median(rstar):.0f} |")


if __name__ == "__main__":
    main()
