"""Diagnostic (not a certificate): how loose are one model's bounds over the whole θ box?

For each checkpoint, one forward bound pass over the whole box α = β = ε (no splitting) on the
first 16 synthetic test scenes: the fraction of ReLUs whose input range crosses 0 (unstable) and
the median width of the output heatmap bounds (over cells and keypoints), also divided by the range (max - min) of the nominal
heatmap logits (models fine-tuned with the task loss alone grow their logit scale). Fewer unstable
ReLUs and narrower relative bounds mean less work for the certifier. Prints a markdown table.

    .venv/bin/python scripts/bound_looseness_diagnostic.py --eps 0.05 results/pruning_certtrained_extended/models/*.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from usn_robust_keypoints.certify.bounds import bound_layers, concrete_max, concrete_min, propagate
from usn_robust_keypoints.data import SceneConfig, generate_split
from usn_robust_keypoints.model import KeypointModel, load_detector


def looseness(path: str, eps: float, frames: int = 16) -> tuple[float, float, float, list[int]]:
    """(unstable ReLU fraction, median output bound width, the same relative to the nominal logit
    range, hidden channels) of one checkpoint."""
    det, _ = load_detector(path)
    km = KeypointModel(det.eval(), device="cpu")
    c = det.config
    images, _ = generate_split("test", frames, SceneConfig(c.input_width, c.input_height), progress=False)
    layers = bound_layers(det)
    box = torch.tensor([[1 - eps, 1 + eps, -eps, eps]])
    unstable = total = 0
    width = relative = 0.0
    with torch.no_grad():
        for img in images:
            x0, _ = km.preprocess(img)
            trace: list = []
            out = propagate(layers, x0, box, trace)
            for m, t in zip(layers, trace):
                if isinstance(m, nn.ReLU):
                    unstable += int(((t[0] < 0) & (t[1] > 0)).sum())
                    total += t[0].numel()
            w = float((concrete_max(out.upper) - concrete_min(out.lower)).median())
            hm = det(x0)
            width += w
            relative += w / float(hm.max() - hm.min())
    return unstable / total, width / len(images), relative / len(images), c.conv_channels()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--eps", type=float, default=0.05)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"Whole box α = β = {args.eps:g}, one forward bound pass, first 16 synthetic test scenes.\n")
    print("| model | unstable ReLUs | median output bound width | ÷ nominal logit range | hidden channels |\n"
          "|---|---|---|---|---|")
    for p in args.models:
        frac, width, rel, chans = looseness(p, args.eps)
        print(f"| {Path(p).stem} | {frac:.3f} | {width:.3g} | {rel:.3g} | {chans} |")


if __name__ == "__main__":
    main()
