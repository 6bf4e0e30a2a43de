"""Where the bounds are lost: per layer and per keypoint, as the theta sub-box shrinks.

For each frame and each sub-box of width ``w`` times the full box (``w = 1, 1/2, ..., 1/64``)
centred at the nominal ``theta = (1, 0)`` and at the frame's worst sampled theta (the sampled theta
with the smallest nominal margin), one forward bound pass (:func:`.certify.bounds.propagate`) gives

- per ReLU layer: the ReLUs the bounds call unstable (input range crosses 0), the ones that
  really change sign on a 5x5 theta grid of the sub-box (a lower bound of the true count), the
  mean / max bound width ``hi - lo`` of the ReLU inputs and the ratio of the mean bound width to
  the mean true range on the grid (the looseness factor of that layer);
- per keypoint: the spec margin's lower bound ``min_s [H_p - H_s]`` (p = nominal cell, s the cells
  outside the radius) from the forward bounds and, for the 16 weakest rows, from the backward
  pass (:func:`.certify.backward.backward_margins`), against the nominal margin at the sub-box
  centre; the gap's rate ``d log gap / d log w``.

    usn-keypoints diagnose-bounds --out results/diagnosis
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from ..certify.backward import backward_margins
from ..certify.bounds import input_clamp, propagate
from ..certify.native import frame_context
from ..data.opencv_doc import opencv_doc_data
from ..model import load_model
from ..perturbation import apply_perturbation

WIDTHS = [1, 2, 4, 8, 16, 32, 64]  # sub-box width = full width / this
BACKWARD_ROWS = 16


def sub_box(centre: tuple[float, float], frac: float, alpha: float, beta: float) -> torch.Tensor:
    """(1, 4) sub-box of ``frac`` times the box's width around ``centre``, shifted into the box."""
    c, b = centre
    hc, hb = frac * alpha, frac * beta
    c = min(max(c, 1 - alpha + hc), 1 + alpha - hc)
    b = min(max(b, -beta + hb), beta - hb)
    return torch.tensor([[c - hc, c + hc, b - hb, b + hb]], dtype=torch.float32)


def _grid(box: torch.Tensor, n: int) -> torch.Tensor:
    c = torch.linspace(float(box[0, 0]), float(box[0, 1]), n)
    b = torch.linspace(float(box[0, 2]), float(box[0, 3]), n)
    cc, bb = torch.meshgrid(c, b, indexing="ij")
    return torch.stack([cc.flatten(), bb.flatten()], dim=1)


def _margins(ctx, hm: torch.Tensor, radius: float) -> torch.Tensor:
    """Nominal spec margin ``H_p - max_{s outside} H_s`` (M, K) of heatmaps ``hm (M, K, h, w)``."""
    flat = hm.flatten(2)
    out = []
    for k in range(flat.shape[1]):
        p = int(ctx.cells[k, 0]) * ctx.heatmap_size[1] + int(ctx.cells[k, 1])
        outside = ctx.dist[k] > radius
        out.append(flat[:, k, p] - flat[:, k][:, outside].amax(dim=1))
    return torch.stack(out, dim=1)


def _relu_inputs(layers: list, x: torch.Tensor) -> list[torch.Tensor]:
    """The inputs of every ReLU of ``layers`` (the folded list) for inputs ``x``."""
    tau, layers = input_clamp(layers)
    x = x.clamp(tau, 1 - tau)
    out = []
    for m in layers:
        if isinstance(m, nn.ReLU):
            out.append(x)
        x = m(x)
    return out


def diagnose_box(ctx, box: torch.Tensor, radius: float) -> dict:
    """Per-layer and per-keypoint statistics of one sub-box (see the module doc)."""
    layers = ctx.plan.layers
    trace: list = []
    with torch.no_grad():
        out = propagate(layers, ctx.x0, box, trace)
        grid = _grid(box, 5)
        xs = apply_perturbation(ctx.x0.expand(len(grid), -1, -1, -1), grid[:, 0], grid[:, 1])
        true = _relu_inputs(layers, xs)
        centre = torch.tensor([[(box[0, 0] + box[0, 1]) / 2, (box[0, 2] + box[0, 3]) / 2]])
        nominal = _margins(ctx, ctx.detector(apply_perturbation(ctx.x0, centre[:, 0], centre[:, 1])), radius)[0]
    _, inner = input_clamp(layers)
    relus = [(j, m) for j, m in enumerate(inner) if isinstance(m, nn.ReLU)]
    per_layer = []
    for (j, _), (lo, hi), t in zip(relus, [e for e in trace if isinstance(e[0], torch.Tensor)], true):
        width = (hi - lo)[0]
        rng = (t.amax(dim=0) - t.amin(dim=0))
        per_layer.append({"layer": j, "shape": list(lo.shape[1:]), "neurons": int(lo[0].numel()),
                          "unstable_bounds": int(((lo < 0) & (hi > 0)).sum()),
                          "unstable_true": int(((t.amin(dim=0) < 0) & (t.amax(dim=0) > 0)).sum()),
                          "mean_width": float(width.mean()), "max_width": float(width.max()),
                          "looseness": float(width.mean() / rng.mean().clamp_min(1e-12))})
    per_kp = []
    for k in range(ctx.cells.shape[0]):
        p = int(ctx.cells[k, 0]) * ctx.heatmap_size[1] + int(ctx.cells[k, 1])
        outside = torch.nonzero(ctx.dist[k] > radius).flatten()
        lo_p = out.lower[0, :, k].flatten(1)[:, p:p + 1]
        up_s = out.upper[0, :, k].flatten(1)[:, outside]
        diff = lo_p - up_s
        fwd = diff[0] - diff[1].abs() - diff[2].abs()  # (S_out,)
        weakest = outside[fwd.argsort()[:BACKWARD_ROWS]]
        rows = torch.stack([torch.zeros_like(weakest), torch.full_like(weakest, k),
                            torch.full_like(weakest, p), weakest], dim=1)
        with torch.no_grad():
            bwd = backward_margins(layers, ctx.x0, box, trace, rows)
        bwd_best = torch.maximum(bwd, fwd[fwd.argsort()[:BACKWARD_ROWS]])
        per_kp.append({"keypoint": k, "nominal_margin": float(nominal[k]), "forward_lb": float(fwd.min()),
                       "backward_lb_weakest": float(bwd_best.min()),
                       "rows_unproven_forward": int((fwd <= ctx.tol).sum()), "rows": int(outside.numel())})
    return {"box": box[0].tolist(), "layers": per_layer, "keypoints": per_kp}


def worst_theta(ctx, alpha: float, beta: float, radius: float, n: int = 17) -> tuple[float, float]:
    """The theta of an ``n x n`` grid over the box with the smallest nominal margin (any keypoint)."""
    grid = _grid(torch.tensor([[1 - alpha, 1 + alpha, -beta, beta]]), n)
    with torch.no_grad():
        m = _margins(ctx, ctx.detector(apply_perturbation(ctx.x0.expand(len(grid), -1, -1, -1), grid[:, 0], grid[:, 1])),
                     radius)
    i = int(m.amin(dim=1).argmin())
    return float(grid[i, 0]), float(grid[i, 1])


def diagnose_frame(model, image: np.ndarray, alpha: float, beta: float, radius: float) -> dict:
    """All sub-boxes of one frame (centre and worst theta, every width of :data:`WIDTHS`)."""
    x0, geo = model.preprocess(image)
    ctx = frame_context(model.detector, x0, geo)
    out = {"worst_theta": worst_theta(ctx, alpha, beta, radius), "centres": {}}
    for name, centre in (("centre", (1.0, 0.0)), ("worst", out["worst_theta"])):
        out["centres"][name] = {str(w): diagnose_box(ctx, sub_box(centre, 1 / w, alpha, beta), radius) for w in WIDTHS}
    return out


def _rate(widths: list[float], gaps: list[float]) -> float:
    """Least-squares slope of log gap against log width (the gap ~ width**rate)."""
    pts = [(math.log(w), math.log(g)) for w, g in zip(widths, gaps) if g > 0]
    if len(pts) < 2:
        return math.nan
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def markdown(results: dict, alpha: float, beta: float, radius: float) -> str:
    """The tables of ``results`` (frame -> :func:`diagnose_frame` output)."""
    lines = [f"# Bound looseness by layer and sub-box width (α = {alpha:g}, β = {beta:g}, r = {radius:g} px)",
             "", f"Command: `usn-keypoints diagnose-bounds --frames {','.join(results)}`; width = sub-box width "
             "÷ full box width. Forward bounds of one pass over the sub-box.", ""]
    lines += ["## Spec margin per keypoint: nominal margin at the sub-box centre vs proven lower bounds", "",
              "fwd = forward-bound lower bound of min_s (H_p − H_s); bwd = backward bound of the 16 weakest rows "
              "(max with fwd); rate = slope of log(nominal − fwd) vs log(width) over the widths ≤ 1/4.", "",
              "| frame | kp | θ centre | " + " | ".join(f"w=1/{w}" for w in WIDTHS) + " | rate |",
              "|---|---|---|" + "---|" * len(WIDTHS) + "---|"]
    for frame, r in results.items():
        for cname, boxes in r["centres"].items():
            for k in range(len(boxes["1"]["keypoints"])):
                cells, gaps, ws = [], [], []
                for w in WIDTHS:
                    kp = boxes[str(w)]["keypoints"][k]
                    cells.append(f"{kp['nominal_margin']:.3f} / {kp['forward_lb']:.3g} / {kp['backward_lb_weakest']:.3g}")
                    if w >= 4:
                        gaps.append(kp["nominal_margin"] - kp["forward_lb"])
                        ws.append(1 / w)
                lines.append(f"| {frame} | {k} | {cname} | " + " | ".join(cells) + f" | {_rate(ws, gaps):.2f} |")
    lines += ["", "Cells: nominal / fwd / bwd.", ""]
    lines += ["## Per ReLU layer (centre sub-box)", "",
              "unstable = bounds cross 0 (true = sign change seen on a 5×5 θ grid); width = mean (max) of hi − lo; "
              "loose = mean bound width ÷ mean sampled range.", ""]
    for frame, r in results.items():
        for cname in ("centre", "worst"):
            boxes = r["centres"][cname]
            first = boxes["1"]["layers"]
            lines += [f"### {frame}, {cname} θ" + (f" {tuple(round(v, 4) for v in r['worst_theta'])}" if cname == "worst" else ""), "",
                      "| width | " + " | ".join(f"L{e['layer']} ({e['neurons']})" for e in first) + " |",
                      "|---|" + "---|" * len(first)]
            for w in WIDTHS:
                row = boxes[str(w)]["layers"]
                lines.append(f"| 1/{w} | " + " | ".join(
                    f"{e['unstable_bounds']}/{e['unstable_true']} · {e['mean_width']:.3g} ({e['max_width']:.3g}) · ×{e['looseness']:.3g}"
                    for e in row) + " |")
            lines.append("")
    lines.append("Cells: unstable by bounds / truly unstable · mean width (max width) · looseness factor.")
    return "\n".join(lines) + "\n"


def diagnose_bounds(frames: list[str], out: str | Path = "results/diagnosis", model_path: str | None = None,
                    alpha: float = 0.02, beta: float = 0.02, radius: float = 4.0) -> str:
    """Diagnose the opencv-doc photos ``frames`` (e.g. ``["left03"]``); writes
    ``bounds_diagnosis.{json,md}`` to ``out`` and returns the markdown."""
    torch.set_num_threads(1)
    model = load_model(model_path, device="cpu")
    data = opencv_doc_data()
    results = {}
    for name in frames:
        image = cv2.imread(str(data / f"{name}.jpg"))
        if image is None:
            raise FileNotFoundError(f"no photo {name}.jpg in {data}")
        results[name] = diagnose_frame(model, image, alpha, beta, radius)
        print(f"[diagnose-bounds] {name} done", flush=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bounds_diagnosis.json").write_text(json.dumps(results, indent=1))
    md = markdown(results, alpha, beta, radius)
    (out / "bounds_diagnosis.md").write_text(md)
    return md
