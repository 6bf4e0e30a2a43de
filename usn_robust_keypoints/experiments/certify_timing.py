"""Benchmark: the full certificate per frame (α = β = ε, r = 4 px, no budget) of several checkpoints,
alternating model by model on each frame in one process (so load hits them alike), on the first
synthetic test scenes and the 13 real ``left*`` photos, with margins off and on: a markdown table
(mean / median / p90 ms, mean as a multiple of the first model's, certified keypoints).

    usn-keypoints certify-timing usn_robust_keypoints/weights/chessboard_usn_certtrained.safetensors \\
        usn_robust_keypoints/weights/chessboard_usn_subbox.safetensors --frames 20 --out results/certify_timing.md
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..certify import CertifyOptions, PerturbationBox, certify
from ..data import build_real_set, generate_split, load_coco
from ..model import load_model


def certify_timing(models: list[str], frames: int = 20, eps: float = 0.02, threads: int = 1) -> str:
    """The markdown table of the module docstring for the checkpoints ``models``."""
    torch.set_num_threads(threads)
    loaded = [load_model(m, device="cpu") for m in models]
    sets = {f"synthetic test[:{frames}]": list(generate_split("test", frames, progress=False)[0]),
            "real left (13)": [r.load() for r in load_coco(build_real_set("left"))[0]]}
    box = PerturbationBox(eps, eps)
    for m in loaded:  # warm-up, not timed
        certify(m, sets["real left (13)"][0], box=box, radius=4.0, options=CertifyOptions(margins=False))
    lines = [f"α = β = {eps:g}, r = 4 px, no budget, {threads} thread(s), models alternating per frame.", "",
             "| model | frames | margins | mean ms | median ms | p90 ms | × first | certified |",
             "|---|---|---|---|---|---|---|---|"]
    for margins in (False, True):
        options = CertifyOptions(margins=margins)
        for name, imgs in sets.items():
            ms: list[list[float]] = [[] for _ in loaded]
            cert = [0] * len(loaded)
            for img in imgs:
                for i, m in enumerate(loaded):
                    t0 = time.perf_counter()
                    fc = certify(m, img, box=box, radius=4.0, options=options)
                    ms[i].append((time.perf_counter() - t0) * 1000)
                    cert[i] += sum(k.certified for k in fc.keypoints)
            for i, path in enumerate(models):
                t = np.array(ms[i])
                lines.append(f"| {Path(path).stem} | {name} | {'on' if margins else 'off'} | {t.mean():.0f} | "
                             f"{np.median(t):.0f} | {np.percentile(t, 90):.0f} | {t.mean() / np.mean(ms[0]):.2f} | "
                             f"{cert[i]}/{len(imgs) * loaded[i].config.num_keypoints} |")
    return "\n".join(lines)
