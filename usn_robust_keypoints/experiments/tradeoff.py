"""Accuracy / certifiability trade-off of detectors (e.g. dense vs certifiably trained).

Per model: PCK@``tolerance`` px on the synthetic test split and on the real ``left*`` photos (the
``right*`` photos are never used here), and at each ``eps``: certified accuracy (keypoint within
``tolerance`` px of the ground truth *and* certified by :func:`certify.certify`, native backend,
at ``alpha = beta = eps``, radius ``radius`` frame px, per-frame budget ``budget_ms`` or none: an
``UNKNOWN`` keypoint counts as not certified), the raw certified rate and the mean certification
time per frame, on ``frames`` synthetic test scenes from ``first_frame`` on (default the first ones; a
later range is a held-out check of a choice made on the first ones). Writes ``results.md``,
``results.json`` and ``tradeoff.png`` (PCK vs certified accuracy, one panel per eps).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..evaluate import certified_accuracy, evaluate_model, format_rate, paired_test
from ..model import KeypointModel, load_detector


@dataclass
class TradeoffConfig:
    """What :func:`evaluate_tradeoff` measures (written into results.json)."""

    eps: tuple[float, ...] = (0.02, 0.05, 0.1)
    frames: int = 64
    test_images: int = 500
    radius: float = 4.0
    tolerance: float = 3.0
    budget_ms: float | None = 1000.0  # None: no budget
    max_depth: int | None = None
    threads: int = 1
    first_frame: int = 0  # certify test scenes first_frame .. first_frame + frames - 1


def evaluate_tradeoff(path: str | Path, label: str, cfg: TradeoffConfig, progress: bool = True) -> dict:
    """All metrics of the checkpoint at ``path`` (see the module docstring) as one row."""
    from ..data import CHESSBOARD_9X6, SceneConfig, build_real_set, generate_split, load_coco

    detector, _ = load_detector(path)
    km = KeypointModel(detector.eval(), device="cpu")
    c = detector.config
    sym = CHESSBOARD_9X6.symmetries
    end = cfg.first_frame + cfg.frames
    test_x, test_k = generate_split("test", max(cfg.test_images, end), SceneConfig(c.input_width, c.input_height),
                                    progress=False)
    records, _, real_sym = load_coco(build_real_set("left"))
    ev_syn = evaluate_model(km, list(test_x[: cfg.test_images]), test_k[: cfg.test_images], sym, (cfg.tolerance,),
                            progress=False)
    ev_real = evaluate_model(km, [r.load() for r in records], np.stack([r.keypoints for r in records]), real_sym,
                             (cfg.tolerance,), progress=False)
    row = {"model": label, "path": str(path), "params": int(sum(p.numel() for p in detector.parameters())),
           "pck_synthetic": ev_syn.pck(cfg.tolerance), "pck_real_left": ev_real.pck(cfg.tolerance),
           "real_keypoints": int(ev_real.errors.size)}
    for score in certified_accuracy(km, test_x[cfg.first_frame:end], test_k[cfg.first_frame:end], cfg.eps, radius=cfg.radius,
                                    tolerance=cfg.tolerance, symmetries=sym, budget_ms=cfg.budget_ms,
                                    max_depth=cfg.max_depth, progress=progress, desc=label):
        row.update(score.as_row())
    return row


def tradeoff_table(rows: list[dict], cfg: TradeoffConfig) -> str:
    """Markdown table, one row per model; real-photo PCK and certified accuracy carry their 95 %
    Wilson interval (both are measured on a few hundred keypoints at most)."""
    t = f"{cfg.tolerance:g}"
    head = ["model", "params", f"PCK@{t}px synthetic", f"PCK@{t}px real left"]
    head += [f"cert. acc. ε={e:g}" for e in cfg.eps] + [f"cert. rate ε={e:g}" for e in cfg.eps]
    head += [f"cert. ms/frame ε={e:g}" for e in cfg.eps]
    budget = "no time budget" if cfg.budget_ms is None else f"budget {cfg.budget_ms:g} ms/frame"
    scenes = (f"the first {cfg.frames} of them" if not cfg.first_frame else
              f"test scenes {cfg.first_frame}–{cfg.first_frame + cfg.frames - 1} (0-based)")
    lines = [f"Synthetic PCK on {cfg.test_images} test images; certification of {scenes} "
             f"(α = β = ε, {budget}, r = {cfg.radius:g} px, {cfg.threads} thread(s)"
             + (f", search depth {cfg.max_depth}" if cfg.max_depth is not None else "") + "); 95 % Wilson "
             "intervals in brackets.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        n_cert = r.get("cert_keypoints", 0)  # absent in results.json files written before it existed
        vals = [r["model"], str(r["params"]), f"{r['pck_synthetic']:.3f}",
                format_rate(r["pck_real_left"], r.get("real_keypoints", 0))]
        vals += [format_rate(r[f"cert_acc@{e:g}"], n_cert) for e in cfg.eps]
        vals += [f"{r[f'cert_rate@{e:g}']:.3f}" for e in cfg.eps]
        vals += [f"{r[f'cert_ms@{e:g}']:.0f}" for e in cfg.eps]
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines + paired_lines(rows, cfg))


def paired_lines(rows: list[dict], cfg: TradeoffConfig) -> list[str]:
    """Each model against the first row on the same keypoints: keypoints certified-and-correct only
    by the model / only by the first row, and the exact McNemar p (:func:`paired_test`; rows certified
    on other keypoints raise). Rows written before the per-keypoint outcomes existed are skipped."""
    base = rows[0] if rows else {}
    out = []
    for r in rows[1:]:
        cells = []
        for e in cfg.eps:
            a, b = r.get(f"cert_correct@{e:g}"), base.get(f"cert_correct@{e:g}")
            if a and b:
                only_r, only_base, p = paired_test(a, b)
                cells.append(f"ε={e:g}: +{only_r} / −{only_base} (p = {p:.2g})")
        if cells:
            out.append(f"- {r['model']}: " + ", ".join(cells))
    if out:
        out = ["", f"Paired against {base['model']} on the same keypoints (certified and correct only by the model "
               "/ only by the first row; exact McNemar p):", *out]
    return out


def plot_tradeoff(rows: list[dict], cfg: TradeoffConfig, path: Path) -> Path:
    """PCK@tolerance (synthetic: filled, real left: open markers) vs certified accuracy per eps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cfg.eps), figsize=(4.2 * len(cfg.eps), 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, eps in zip(axes[0], cfg.eps):
        for i, r in enumerate(rows):
            x = r[f"cert_acc@{eps:g}"]
            col = colors[i % len(colors)]
            ax.scatter([x], [r["pck_synthetic"]], color=col, marker="o", label=f"{r['model']} (synthetic)")
            ax.scatter([x], [r["pck_real_left"]], facecolors="none", edgecolors=col, marker="s",
                       label=f"{r['model']} (real left)")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(f"certified accuracy, α=β={eps:g}, r={cfg.radius:g}px")
        ax.set_ylabel(f"PCK@{cfg.tolerance:g}px")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    ncol = min(4, len(labels))
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.05 * -(-len(labels) // ncol) + 0.02, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_tradeoff(models: list[tuple[str, str]], cfg: TradeoffConfig, out: str | Path,
                 progress: bool = True) -> list[dict]:
    """Evaluate ``models`` (label, checkpoint path) and write the table, JSON and plot to ``out``."""
    import torch

    torch.set_num_threads(cfg.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [evaluate_tradeoff(path, label, cfg, progress) for label, path in models]
    (out / "results.md").write_text(tradeoff_table(rows, cfg) + "\n")
    (out / "results.json").write_text(json.dumps({"config": asdict(cfg), "rows": rows}, indent=1))
    plot_tradeoff(rows, cfg, out / "tradeoff.png")
    return rows


def merge_results(files: list[str | Path], out: str | Path) -> tuple[list[dict], TradeoffConfig]:
    """Combine the rows of several ``results.json`` written with the same settings (e.g. one
    process per model) into one table and plot in ``out``."""
    rows, cfg = [], None
    for f in files:
        d = json.loads(Path(f).read_text())
        if d["config"].get("thorough"):
            raise ValueError(f"{f} was measured with the removed uniform 'thorough' search; measure it again")
        conf = {k: v for k, v in d["config"].items() if k != "thorough"}
        c = TradeoffConfig(**{**conf, "eps": tuple(conf["eps"])})
        if cfg is not None and asdict(c) != asdict(cfg):
            raise ValueError(f"{f} was measured with other settings than {files[0]}")
        cfg = c
        rows += d["rows"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(tradeoff_table(rows, cfg) + "\n")
    (out / "results.json").write_text(json.dumps({"config": asdict(cfg), "rows": rows}, indent=1))
    plot_tradeoff(rows, cfg, out / "tradeoff.png")
    return rows, cfg


def pooled_paired(files: list[str | Path]) -> list[str]:
    """Paired comparison pooled over several ``results.json`` files (e.g. one per seed) with the same
    row order, each certified on the same keypoints: row i of every file against row 0 of the same
    file, the per-keypoint outcomes of all files concatenated row by row (:func:`paired_lines`)."""
    docs = [json.loads(Path(f).read_text()) for f in files]
    eps = tuple(docs[0]["config"]["eps"])
    n_rows = len(docs[0]["rows"])
    if any(len(d["rows"]) != n_rows or tuple(d["config"]["eps"]) != eps for d in docs):
        raise ValueError("every file needs the same rows and the same ε")
    pooled = [{"model": docs[0]["rows"][i]["model"],
               **{f"cert_correct@{e:g}": [x for d in docs for x in d["rows"][i][f"cert_correct@{e:g}"]] for e in eps}}
              for i in range(n_rows)]
    return [f"Pooled over {len(docs)} files (labels of the first)."] + paired_lines(pooled, TradeoffConfig(eps=eps))
