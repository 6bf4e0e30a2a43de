"""Where the forward bounds fail over the θ box: open spec rows per keypoint on a uniform n x n
grid of sub-boxes (one bound pass each), and the share of saturated pixels of the photo.

    python -m usn_robust_keypoints.experiments.bab_kink_grid left01 --n 8

On the left* photos the failing sub-boxes lie on the anti-diagonal c + b = 1: the clip's kink of
the pixels at 255 (x0 = 1), which every axis-parallel sub-box around it crosses.
"""

from __future__ import annotations

import argparse

import cv2
import torch

from ..certify.bounds import propagate
from ..certify.native import frame_context
from ..certify.spec import requirements
from ..data.opencv_doc import opencv_doc_data
from ..model import load_model


def open_rows_grid(name: str, n: int = 8, eps: float = 0.02, radius: float = 4.0) -> tuple[dict, list[torch.Tensor]]:
    """Saturation shares and, per keypoint, the (n, n) open-row counts (rows: c low -> high, cols: b low -> high)."""
    torch.set_num_threads(1)
    model = load_model(device="cpu")
    img = cv2.imread(str(opencv_doc_data() / f"{name}.jpg"), cv2.IMREAD_GRAYSCALE)
    x0, geo = model.preprocess(img)
    ctx = frame_context(model.detector, x0, geo)
    c = torch.linspace(1 - eps, 1 + eps, n + 1)
    b = torch.linspace(-eps, eps, n + 1)
    boxes = torch.tensor([[c[i], c[i + 1], b[j], b[j + 1]] for i in range(n) for j in range(n)])
    with torch.no_grad():
        f = propagate(ctx.plan.layers, x0, boxes)
    lo, hi = f.lower.flatten(3), f.upper.flatten(3)
    grids = []
    for k in range(ctx.dist.shape[0]):
        q = ctx.candidates(k, radius)
        req = requirements(lo[:, :, k][:, :, q], hi[:, :, k], ctx.dist[k, q], ctx.dist[k], ctx.tol)
        grids.append((req > radius).sum(1).view(n, n))
    stats = {"x0 = 1": float((x0 >= 1.0).float().mean()), "x0 >= 0.98": float((x0 >= 0.98).float().mean()),
             "x0 <= 0.02": float((x0 <= 0.02).float().mean())}
    return stats, grids


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photo", help="e.g. left01")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--eps", type=float, default=0.02)
    a = ap.parse_args(argv)
    stats, grids = open_rows_grid(a.photo, a.n, a.eps)
    print(a.photo, ", ".join(f"{k}: {v:.2%}" for k, v in stats.items()))
    for k, g in enumerate(grids):
        print(f"keypoint {k}: open rows per sub-box (rows c low -> high, columns b low -> high)")
        print(g.numpy())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
