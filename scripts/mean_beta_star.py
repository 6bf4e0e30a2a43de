"""Mean certified β* of several checkpoints on the same synthetic test scenes, paired.

Per keypoint, β* is the largest brightness-only margin (contrast fixed to 1) of the grid
0.01/0.02/0.03/0.05/0.075/0.1/0.15 proven at r = 4 px with no budget, stopping at its first failure
(0 when none): the experiment table's "mean β* (grid)" (:func:`usn_robust_keypoints.prune.experiment.beta_star_grid`),
here on any range of test scenes. Each model is compared with the first one on the same keypoints:
mean difference, keypoints with a larger / smaller β*, and the exact two-sided sign test p. Prints a
markdown table and writes it (plus every keypoint's β* as JSON) next to ``--out``.

    .venv/bin/python scripts/mean_beta_star.py A.safetensors B.safetensors --labels A B \
        --first-frame 128 --frames 64 --out results/x/beta_star.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest
from tqdm import tqdm

from usn_robust_keypoints.data import SceneConfig, generate_split
from usn_robust_keypoints.model import load_model
from usn_robust_keypoints.prune.experiment import ExperimentConfig, beta_star_grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="checkpoints (.safetensors); the first is the reference")
    ap.add_argument("--labels", nargs="+", help="one label per model (default: file stems)")
    ap.add_argument("--first-frame", type=int, default=0, help="first synthetic test scene (0-based)")
    ap.add_argument("--frames", type=int, default=64, help="synthetic test scenes")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="markdown file (JSON beside it)")
    args = ap.parse_args()
    labels = args.labels or [Path(m).stem for m in args.models]
    if len(labels) != len(args.models):
        raise SystemExit("--labels needs one label per model")
    torch.set_num_threads(args.threads)
    cfg = ExperimentConfig(budget_ms=None)
    models = [load_model(m, device="cpu") for m in args.models]
    c = models[0].detector.config
    end = args.first_frame + args.frames
    images = generate_split("test", end, SceneConfig(c.input_width, c.input_height), progress=False)[0]
    beta = {label: [] for label in labels}
    for i in tqdm(range(args.first_frame, end), desc="β* grid", unit="frame"):
        for label, m in zip(labels, models):
            beta[label] += beta_star_grid(m, images[i], cfg)
    ref = np.array(beta[labels[0]])
    lines = [f"Mean β* (grid {'/'.join(f'{b:g}' for b in cfg.beta_grid)}, contrast 1, r = {cfg.radius:g} px, no budget) "
             f"on synthetic test scenes {args.first_frame}–{end - 1} ({len(ref)} keypoints); each model against "
             f"{labels[0]} on the same keypoints (exact sign test).", "",
             "| model | mean β* | share with β* > 0 | vs first: larger / smaller (p) |", "|---|---|---|---|"]
    for label in labels:
        v = np.array(beta[label])
        up, down = int((v > ref).sum()), int((v < ref).sum())
        p = binomtest(up, up + down).pvalue if up + down else 1.0
        cmp = "—" if label == labels[0] else f"{up} / {down} ({p:.2g})"
        lines.append(f"| {label} | {v.mean():.4f} | {(v > 0).mean():.3f} | {cmp} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"models": dict(zip(labels, args.models)), "first_frame": args.first_frame,
                                                    "frames": args.frames, "beta_star": beta}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
