"""``own-model-speed``: certification time of the shipped default as the native model, as an
imported ``nn.Module`` (torch.fx) and as an imported ONNX file, on the same frames with the same
settings; writes ``results.md`` (a markdown table) and ``results.json`` to the output folder.

Frames are certified in turn by the three copies (the order rotates per frame, so load drift
hits all three alike); the time is ``certify``'s own ``time_ms`` (the best of ``repeats`` runs).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class SpeedConfig:
    frames: int = 16
    alpha: float = 0.02
    beta: float = 0.02
    radius: float = 4.0
    repeats: int = 2
    threads: int = 1
    seed: int = 0


def run_speed(cfg: SpeedConfig, out: str | Path) -> dict:
    """Certify ``cfg.frames`` synthetic test frames with the three copies; write and return the summary."""
    from ..certify import certify
    from ..data.synthetic import SceneConfig, generate_split
    from ..model import load_model
    from ..model.graph import ModelSpec
    from ..model.graph.export import export_onnx

    torch.set_num_threads(cfg.threads)
    native = load_model(device="cpu")
    c = native.config
    spec = ModelSpec(c.input_width, c.input_height, keypoint_names=list(c.keypoint_names))
    t0 = time.perf_counter()
    imported = load_model(native.detector, device="cpu", spec=spec)
    import_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(native.detector, Path(tmp) / "default.onnx")
        onnx_model = load_model(onnx_path, device="cpu", spec=spec)
    models = {"native": native, "imported nn.Module": imported, "imported ONNX": onnx_model}
    images, _ = generate_split("test", cfg.frames, SceneConfig(c.input_width, c.input_height), progress=False)
    names = list(models)
    times = {n: [] for n in names}
    statuses = {n: [] for n in names}
    for i, image in enumerate(images):
        order = names[i % 3:] + names[:i % 3]
        for n in order:
            best, fc = np.inf, None
            for _ in range(cfg.repeats):
                fc = certify(models[n], image, cfg.alpha, cfg.beta, cfg.radius)
                best = min(best, fc.time_ms)
            times[n].append(best)
            statuses[n].append([k.status.name for k in fc.keypoints])
    base = float(np.mean(times["native"]))
    rows = []
    for n in names:
        same = sum(a == b for a, b in zip(statuses[n], statuses["native"]))
        cert = sum(s == "CERTIFIED" for f in statuses[n] for s in f)
        rows.append({"model": n, "ms_per_frame": float(np.mean(times[n])), "ratio": float(np.mean(times[n])) / base,
                     "frames_same_statuses": same, "certified": cert})
    summary = {"config": cfg.__dict__, "frames": len(images), "keypoints_per_frame": c.num_keypoints,
               "import_seconds": import_s, "rows": rows}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    (out / "results.md").write_text(table(summary))
    return summary


def table(summary: dict) -> str:
    cfg = summary["config"]
    lines = [f"Shipped default certified as native / imported copies: {summary['frames']} synthetic test frames, "
             f"α = {cfg['alpha']}, β = {cfg['beta']}, radius {cfg['radius']} px, margins on, {cfg['threads']} CPU "
             f"thread(s), best of {cfg['repeats']} runs per frame.",
             "", "| model | ms / frame | × native | frames with the native statuses | certified keypoints |",
             "|---|---:|---:|---:|---:|"]
    for r in summary["rows"]:
        lines.append(f"| {r['model']} | {r['ms_per_frame']:.1f} | {r['ratio']:.2f} | "
                     f"{r['frames_same_statuses']}/{summary['frames']} | {r['certified']} |")
    lines += ["", f"Import (torch.fx trace + checks) took {summary['import_seconds']:.2f} s.", ""]
    return "\n".join(lines)

