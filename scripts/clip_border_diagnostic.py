"""Diagnostic (not a certificate): what blocks brightness certificates of a zero-mean-stem model?

Certifies the first 16 synthetic test scenes (64 keypoints, r = 4 input px, depth 2, 2000 ms per
frame) at brightness-only ±0.1 and at α = β = 0.1, for the model's stem padding switched between
"zeros" and "replicate" (no retraining) and with the input clip of the perturbation removed from
the bounds ("no clip": bounds of x = c*x0 + b, i.e. a *different* perturbation, only to measure
how much the clip costs). Prints a markdown table.

    .venv/bin/python scripts/clip_border_diagnostic.py usn_robust_keypoints/weights/chessboard_usn_certtrained.safetensors
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from usn_robust_keypoints.certify import bounds
from usn_robust_keypoints.certify.batch import certify_batch
from usn_robust_keypoints.data import SceneConfig, generate_split
from usn_robust_keypoints.model import load_detector


def main(path: str) -> None:
    torch.set_num_threads(1)
    det, _ = load_detector(path)
    c = det.config
    images, _ = generate_split("test", 16, SceneConfig(c.input_width, c.input_height), progress=False)
    x = torch.from_numpy(np.asarray(images)).float().div(255.0).unsqueeze(1)
    clip = bounds.clip01_forms
    print("| stem padding | input clip in the bounds | brightness only ±0.1 | α = β = 0.1 |\n|---|---|---|---|")
    for pad in ("zeros", "replicate"):
        det.net[0].padding_mode = pad
        for with_clip in (True, False):
            bounds.clip01_forms = clip if with_clip else (lambda f: f)
            counts = []
            for alpha, beta in ((0.0, 0.1), (0.1, 0.1)):
                r = certify_batch(det, x, alpha, beta, 4.0, max_depth=2, budget_ms=2000)
                counts.append(f"{int(r['certified'].sum())}/{r['certified'].numel()}")
            print(f"| {pad} | {'yes (the real perturbation)' if with_clip else 'no (diagnostic)'} | {counts[0]} | {counts[1]} |")
    bounds.clip01_forms = clip


if __name__ == "__main__":
    main(sys.argv[1])
