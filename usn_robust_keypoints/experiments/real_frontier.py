"""Accuracy / certifiability frontier on the real ``left*`` photos (never ``right*``).

Per checkpoint: real PCK@3px (model-input pixels, best symmetry); for each box ``alpha = beta = eps``
the sampling upper bound (the share of keypoints that no sampled θ moves farther than the radius: no
sound certifier proves more); and for each box and each per-frame budget (the node's default, 1 s,
none) the share of the real keypoints that ``certify()`` proves (native backend, full 640x480 frames
as the node sees them, radius ``radius`` frame pixels, margins off, one torch thread), the share
proven *and* within 3 px of the label, and the mean
certification time per frame; plus the detector's frames per second on one thread. Writes
``results.json`` (with every keypoint's outcome), ``results.md`` and ``frontier.png`` (real PCK vs real
certified rate within each budget) to ``--out``.

    usn-keypoints real-frontier --models A.safetensors B.safetensors --labels A B --out results/models_real \
        [--eps 0.02] [--budgets 120 1000 none] [--threads 1]
    usn-keypoints real-frontier --merge R1/results.json R2/results.json --out DIR
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..certify import certify
from ..data import build_real_set, load_coco
from ..evaluate import evaluate_model, format_rate, keypoint_errors, paired_test
from ..model import load_model
from .bench_certify import sampling_upper_bound

NODE_BUDGET_MS = 120.0  # config/demo.yaml and config/pipeline.yaml: certifier budget_ms


def _budget_key(b: float | None) -> str:
    return "none" if b is None else f"{b:g}"


def detector_fps(model, frame: np.ndarray, reps: int = 60) -> float:
    """Frames per second of ``model.predict`` (pre-processing + network + argmax) on one frame."""
    for _ in range(5):
        model.predict(frame)
    t0 = time.perf_counter()
    for _ in range(reps):
        model.predict(frame)
    return reps / (time.perf_counter() - t0)


def labelled_left_photos(frames: int | None = None) -> tuple[list[np.ndarray], np.ndarray, list]:
    """The real ``left*`` photos (the first ``frames``; all by default): images, labelled keypoints
    (N, K, 2) in frame pixels and the target's symmetries."""
    records, _, symmetries = load_coco(build_real_set("left"))
    records = records[:frames] if frames else records
    return [r.load() for r in records], np.stack([r.keypoints for r in records]), symmetries


def measure(path: str, label: str, eps: list[float], budgets: list[float | None], radius: float = 4.0,
            tolerance: float = 3.0, frames: int | None = None, progress: bool = True) -> dict:
    """One row: real PCK, certified rate / accuracy / ms per frame per (eps, budget), detector fps."""
    model = load_model(path, device="cpu")
    images, kps, symmetries = labelled_left_photos(frames)
    ev = evaluate_model(model, images, kps, symmetries, (tolerance,), progress=False)
    det = model.detector
    row = {"model": label, "path": str(path), "params": int(sum(p.numel() for p in det.parameters())),
           "dilations": det.config.dilations, "channels": det.config.conv_channels(),
           "input_clamp": det.config.input_clamp, "zero_mean_stem": det.config.zero_mean_stem,
           "pck_real_left": ev.pck(tolerance), "real_keypoints": int(ev.errors.size),
           "detector_fps": detector_fps(model, images[0]), "cert": {},
           "upper": {f"{e:g}": sum(sampling_upper_bound(model, img, e, radius) for img in images) / ev.errors.size
                     for e in eps}}
    certify(model, images[0], eps[0], eps[0], radius, margins=False, budget_ms=NODE_BUDGET_MS)  # warm-up
    for e in eps:
        for b in budgets:
            certified, correct, ms, late = [], [], [], 0
            for img, gt in zip(images, kps):
                t0 = time.perf_counter()
                fc = certify(model, img, e, e, radius, budget_ms=b, margins=False)
                ms.append(1000 * (time.perf_counter() - t0))
                pred = model.predict(img)
                err = keypoint_errors(pred.geometry.frame_to_input(np.array([[k.x, k.y] for k in fc.keypoints])),
                                      pred.geometry.frame_to_input(np.asarray(gt, np.float64)), symmetries)
                # Within the budget: proven by a round that ended in time (the first round always runs and
                # may end after a short budget; what it proves late is counted in "late", not as certified).
                c = [int(k.certified and (b is None or k.time_ms <= b)) for k in fc.keypoints]
                late += sum(int(k.certified) for k in fc.keypoints) - sum(c)
                certified += c
                correct += [int(ci and er <= tolerance) for ci, er in zip(c, err)]
            key = f"{e:g}@{_budget_key(b)}"
            row["cert"][key] = {"rate": float(np.mean(certified)), "acc": float(np.mean(correct)),
                                "ms_per_frame": float(np.mean(ms)), "max_ms": float(np.max(ms)), "late": late,
                                "certified": certified, "correct": correct}
            if progress:
                print(f"{label}: eps {e:g} budget {_budget_key(b)} ms: certified {np.mean(certified):.3f}, "
                      f"{np.mean(ms):.0f} ms/frame", flush=True)
    return row


def _label(key: str) -> str:
    e, b = key.split("@")
    return f"±{e}, " + ("no budget" if b == "none" else f"{b} ms")


def table(rows: list[dict], config: dict) -> str:
    """Markdown table (one row per model); paired counts against the first row in the first and the
    last certification column."""
    n = rows[0]["real_keypoints"]
    keys = list(rows[0]["cert"])
    eps = list(dict.fromkeys(k.split("@")[0] for k in keys))
    head = ["model", "params", "dilations", "real PCK@3px"] + [f"sampling upper bound ±{e}" for e in eps]
    for k in keys:
        head += [f"certified {_label(k)}", "ms/frame"]
    paired_keys = list(dict.fromkeys([keys[0], keys[-1]]))
    head += [f"paired vs first, {_label(k)}" for k in paired_keys] + ["detector fps"]
    lines = [f"Real `left*` photos ({n} keypoints), native `certify()`, radius {config['radius']:g} frame px, "
             "one torch thread; certified = share of all keypoints proven within the budget (by a search round that "
             "ended in time; 95 % Wilson interval); "
             "paired = keypoints only this / only the first row certifies, exact McNemar p.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], str(r["params"]), " ".join(map(str, r["dilations"] or [])) or "none",
                 format_rate(r["pck_real_left"], n)]
        cells += [format_rate(r["upper"][e], n) if e in r.get("upper", {}) else "—" for e in eps]
        for k in keys:
            c = r["cert"][k]
            cells += [format_rate(c["rate"], n), f"{c['ms_per_frame']:.0f}"]
        for k in paired_keys:
            if r is rows[0]:
                cells.append("—")
            else:
                a, b, p = paired_test(r["cert"][k]["certified"], rows[0]["cert"][k]["certified"])
                cells.append(f"+{a} / −{b} (p = {p:.2g})")
        cells.append(f"{r['detector_fps']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """Real PCK vs real certified rate, one panel per certification column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(rows[0]["cert"])
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 4), squeeze=False)
    for ax, k in zip(axes[0], keys):
        for i, r in enumerate(rows):
            ax.scatter(r["cert"][k]["rate"], r["pck_real_left"], s=30)
            ax.annotate(str(i + 1), (r["cert"][k]["rate"], r["pck_real_left"]), fontsize=8,
                        xytext=(3, 3), textcoords="offset points")
        ax.axhline(0.85, ls="--", c="gray", lw=0.8)
        ax.axvline(0.70, ls="--", c="gray", lw=0.8)
        e, b = k.split("@")
        ax.set_title(f"±{e}, budget {'none' if b == 'none' else b + ' ms'}", fontsize=9)
        ax.set_xlabel("real left* certified rate")
        ax.set_xlim(-0.03, 1.03)
    axes[0][0].set_ylabel("real left* PCK@3px")
    fig.legend([f"{i + 1} {r['model']}" for i, r in enumerate(rows)], loc="lower center", fontsize=7,
               ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.03 * ((len(rows) + 1) // 2), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(rows: list[dict], config: dict, out: Path) -> str:
    """results.json, results.md and frontier.png in ``out``; returns the markdown table."""
    out.mkdir(parents=True, exist_ok=True)
    md = table(rows, config)
    (out / "results.json").write_text(json.dumps({"config": config, "rows": rows}, indent=1))
    (out / "results.md").write_text(md)
    plot(rows, out / "frontier.png")
    return md


def run_real_frontier(models: list[str], labels: list[str] | None, out: str | Path, eps: list[float],
                      budgets: list[str], radius: float = 4.0, frames: int | None = None, threads: int = 1) -> str:
    """Measure every checkpoint of ``models`` (``budgets``: ms or ``"none"``) and write ``out``; returns the table."""
    torch.set_num_threads(threads)
    labels = labels or [Path(m).stem for m in models]
    if len(labels) != len(models):
        raise ValueError("one label per model")
    parsed = [None if b == "none" else float(b) for b in budgets]
    config = {"eps": list(eps), "budgets": list(budgets), "radius": radius, "threads": threads, "frames": frames}
    rows = [measure(m, l, list(eps), parsed, radius, frames=frames) for m, l in zip(models, labels)]
    return write(rows, config, Path(out))


def merge_results(files: list[str], out: str | Path) -> str:
    """Combine ``results.json`` files measured with the same settings into ``out``; returns the table."""
    rows, config = [], None
    for f in files:
        d = json.loads(Path(f).read_text())
        same = ("eps", "budgets", "radius", "frames")
        if config is not None and {k: d["config"].get(k) for k in same} != {k: config.get(k) for k in same}:
            raise ValueError(f"{f}: other settings than {files[0]}")
        config = config or d["config"]
        rows += d["rows"]
    return write(rows, config, Path(out))
