"""Exact verdicts (:mod:`..certify.exact`) per keypoint of real photos, with their time.

    usn-keypoints exact-verdicts --frames left01,left03,left04,left07 --out results/exact
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import cv2
import torch

from ..certify.exact import exact_frame
from ..data.opencv_doc import opencv_doc_data
from ..model import load_model


def exact_verdicts(frames: list[str], out: str | Path = "results/exact", model_path: str | None = None,
                   alpha: float = 0.02, beta: float = 0.02, radius: float = 4.0, time_limit_s: float = 300.0,
                   max_regions: int = 200_000, hybrid: bool = True) -> str:
    """Exact verdict of every keypoint of the opencv-doc photos ``frames``; writes
    ``exact_verdicts.{json,md}`` to ``out`` (the JSON after every keypoint) and returns the markdown."""
    torch.set_num_threads(1)
    model = load_model(model_path, device="cpu")
    data = opencv_doc_data()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in frames:
        image = cv2.imread(str(data / f"{name}.jpg"))
        if image is None:
            raise FileNotFoundError(f"no photo {name}.jpg in {data}")
        for k in range(model.config.num_keypoints):
            cpu0 = time.process_time()
            (r,) = exact_frame(model, image, alpha, beta, radius, keypoints=[k], time_limit_s=time_limit_s,
                               max_regions=max_regions, hybrid=hybrid)
            rows.append({"frame": name, **r.to_dict(), "cpu_s": time.process_time() - cpu0,
                         "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
            print(f"[exact] {name} k{r.keypoint}: {r.verdict} {r.theta or ''} {r.time_s:.1f} s wall, "
                  f"{rows[-1]['cpu_s']:.1f} s CPU, {r.regions} regions {r.reason}", flush=True)
            (out / "exact_verdicts.json").write_text(json.dumps(
                {"alpha": alpha, "beta": beta, "radius": radius, "model": Path(model.path).name,
                 "time_limit_s": time_limit_s, "max_regions": max_regions, "hybrid": hybrid, "rows": rows}, indent=1))
            (out / "exact_verdicts.md").write_text(markdown(rows, frames, alpha, beta, radius, Path(model.path).name,
                                                            time_limit_s, hybrid))
    return markdown(rows, frames, alpha, beta, radius, Path(model.path).name, time_limit_s, hybrid)


def markdown(rows: list[dict], frames: list[str], alpha: float, beta: float, radius: float, model: str,
             time_limit_s: float, hybrid: bool) -> str:
    """The verdict table of ``rows`` (the JSON's rows)."""
    md = [f"# Exact verdicts (α = {alpha:g}, β = {beta:g}, r = {radius:g} px, model "
          f"`{model}`, one CPU thread)", "",
          f"Command: `usn-keypoints exact-verdicts --frames {','.join(frames)} --time-limit {time_limit_s:g}"
          f"{'' if hybrid else ' --no-hybrid'}`", "",
          "CPU s = process time of the one thread (wall s also counts waiting on a shared machine). "
          "regions = polygons closed (by the bounds or as exact linear regions); min exact margin = over the "
          "regions enumerated to the end (inf when the bounds closed them all).", "",
          "| frame | kp | verdict | θ (c, b) | CPU s | wall s | regions | closed by bounds | min exact margin | note |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        th = "—" if r["theta"] is None else f"({r['theta'][0]:.5f}, {r['theta'][1]:.5f})"
        md.append(f"| {r['frame']} | {r['keypoint']} | {r['verdict']} | {th} | {r['cpu_s']:.1f} | {r['time_s']:.1f} | "
                  f"{r['regions']} | "
                  f"{r['bound_closed']} | {r['min_margin']:.4g} | {r['reason']} |")
    return "\n".join(md) + "\n"
