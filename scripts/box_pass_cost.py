"""Cost of one full-frame bound pass per sub-box (the unit the native certifier spends its time in).

For every model: the mean time of ``propagate`` over a batch of N sub-boxes on one synthetic test
frame, per sub-box, next to the time of one plain forward pass; and the number of sub-box passes
that fit in a per-frame budget. Writes a markdown table.

    .venv/bin/python scripts/box_pass_cost.py MODEL [MODEL ...] --out results/box_pass_cost.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from usn_robust_keypoints.certify.bounds import propagate
from usn_robust_keypoints.certify.native import make_plan
from usn_robust_keypoints.data import SceneConfig, generate_split
from usn_robust_keypoints.model import KeypointModel, load_detector


def _seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 25, 64])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--budget-ms", type=float, default=200.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/box_pass_cost.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lines = [f"| model | input | forward ms | " + " | ".join(f"ms/sub-box, batch {n}" for n in args.batches)
             + f" | sub-boxes in {args.budget_ms:g} ms |",
             "|---" * (4 + len(args.batches)) + "|"]
    for path in args.models:
        det, _ = load_detector(path)
        km = KeypointModel(det.eval(), device="cpu")
        c = det.config
        frames, _ = generate_split("test", 1, SceneConfig(c.input_width, c.input_height), progress=False)
        x0, _ = km.preprocess(frames[0])
        layers = make_plan(det).layers
        with torch.no_grad():
            fwd = _seconds(lambda: det(x0), 4 * args.repeats)
            per_box = []
            for n in args.batches:
                boxes = torch.tensor([[0.98, 1.02, -0.02, 0.02]] * n, dtype=x0.dtype)
                per_box.append(_seconds(lambda: propagate(layers, x0, boxes), args.repeats) / n)
        best = min(per_box)
        lines.append(f"| {Path(path).stem} | {c.input_width}×{c.input_height} | {1000 * fwd:.1f} | "
                     + " | ".join(f"{1000 * t:.1f}" for t in per_box) + f" | {int(args.budget_ms / 1000 / best)} |")
    head = (f"Full-frame bound pass per sub-box (forward-mode forms, no trace), one synthetic test frame, "
            f"{args.threads} torch thread(s), mean of {args.repeats} repeats after a warm-up.\n\n")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(head + "\n".join(lines) + "\n")
    print(head + "\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
