"""Benchmark: the full certificate per frame (α = β = ε, r = 4 px, no budget) of several checkpoints,
alternating model by model on each frame in one process (so load hits them alike), on the first
synthetic test scenes and the 13 real ``left*`` photos, with margins off and on. Prints a markdown
table (mean / median / p90 ms, mean as a multiple of the first model's, certified keypoints) and
writes it to ``--out`` if given.

    .venv/bin/python scripts/certify_timing.py usn_robust_keypoints/weights/chessboard_usn_certtrained.safetensors \
        usn_robust_keypoints/weights/chessboard_usn_subbox.safetensors --frames 20 --out results/certifiability_subbox/ship_eval/certify_timing.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from usn_robust_keypoints.certify.api import certify
from usn_robust_keypoints.data import build_real_set, generate_split, load_coco
from usn_robust_keypoints.model import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="checkpoints (.safetensors)")
    ap.add_argument("--frames", type=int, default=20, help="synthetic test scenes")
    ap.add_argument("--eps", type=float, default=0.02)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="also write the table here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = [load_model(m, device="cpu") for m in args.models]
    sets = {f"synthetic test[:{args.frames}]": list(generate_split("test", args.frames, progress=False)[0]),
            "real left (13)": [r.load() for r in load_coco(build_real_set("left"))[0]]}
    for m in models:  # warm-up, not timed
        certify(m, sets["real left (13)"][0], args.eps, args.eps, 4.0, margins=False)
    lines = [f"α = β = {args.eps:g}, r = 4 px, no budget, {args.threads} thread(s), models alternating per frame.", "",
             "| model | frames | margins | mean ms | median ms | p90 ms | × first | certified |", "|---|---|---|---|---|---|---|---|"]
    for margins in (False, True):
        for name, frames in sets.items():
            ms = [[] for _ in models]
            cert = [0] * len(models)
            for img in frames:
                for i, m in enumerate(models):
                    t0 = time.perf_counter()
                    fc = certify(m, img, args.eps, args.eps, 4.0, margins=margins)
                    ms[i].append((time.perf_counter() - t0) * 1000)
                    cert[i] += sum(k.certified for k in fc.keypoints)
            for i, path in enumerate(args.models):
                t = np.array(ms[i])
                lines.append(f"| {Path(path).stem} | {name} | {'on' if margins else 'off'} | {t.mean():.0f} | "
                             f"{np.median(t):.0f} | {np.percentile(t, 90):.0f} | {t.mean() / np.mean(ms[0]):.2f} | "
                             f"{cert[i]}/{len(frames) * models[i].config.num_keypoints} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
