"""Exact verdicts (:mod:`..certify.exact`) per keypoint of real photos, with their time.

    python -m usn_robust_keypoints.experiments.exact_verdicts --frames left01,left03,left04,left07 --out results/exact
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import torch

from ..certify.exact import exact_frame
from ..data.opencv_doc import opencv_doc_data
from ..model import load_model


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="left01,left03,left04,left07", help="opencv-doc photo names")
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped default model)")
    ap.add_argument("--alpha", type=float, default=0.02)
    ap.add_argument("--beta", type=float, default=0.02)
    ap.add_argument("--radius", type=float, default=4.0)
    ap.add_argument("--time-limit", type=float, default=300.0, help="seconds per keypoint before 'open'")
    ap.add_argument("--max-regions", type=int, default=200_000)
    ap.add_argument("--no-hybrid", action="store_true", help="enumerate without the bound shortcut")
    ap.add_argument("--out", default="results/exact")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model(args.model, device="cpu")
    data = opencv_doc_data()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.frames.split(","):
        image = cv2.imread(str(data / f"{name}.jpg"))
        if image is None:
            raise SystemExit(f"no photo {name}.jpg in {data}")
        for r in exact_frame(model, image, args.alpha, args.beta, args.radius, time_limit_s=args.time_limit,
                             max_regions=args.max_regions, hybrid=not args.no_hybrid):
            rows.append({"frame": name, **r.to_dict()})
            print(f"[exact] {name} k{r.keypoint}: {r.verdict} {r.theta or ''} {r.time_s:.1f} s, "
                  f"{r.regions} regions {r.reason}", flush=True)
            (out / "exact_verdicts.json").write_text(json.dumps(
                {"alpha": args.alpha, "beta": args.beta, "radius": args.radius, "model": str(model.path),
                 "time_limit_s": args.time_limit, "hybrid": not args.no_hybrid, "rows": rows}, indent=1))
    md = [f"# Exact verdicts (α = {args.alpha:g}, β = {args.beta:g}, r = {args.radius:g} px, model "
          f"`{Path(model.path).name}`, one CPU thread)", "",
          f"Command: `python -m usn_robust_keypoints.experiments.exact_verdicts --frames {args.frames} "
          f"--time-limit {args.time_limit:g}`", "",
          "| frame | kp | verdict | θ (c, b) | time s | regions | closed by bounds | min exact margin | note |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        th = "—" if r["theta"] is None else f"({r['theta'][0]:.5f}, {r['theta'][1]:.5f})"
        md.append(f"| {r['frame']} | {r['keypoint']} | {r['verdict']} | {th} | {r['time_s']:.1f} | {r['regions']} | "
                  f"{r['bound_closed']} | {r['min_margin']:.4g} | {r['reason']} |")
    (out / "exact_verdicts.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
