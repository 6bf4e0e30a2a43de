"""``usn-keypoints bench-certify``: every available backend/method on the same model, frames and
boxes in one process; writes a markdown table (certified rate, mean r*, time per frame, ratios).
The bench detector is trained here (and cached): this is an experiment harness, not library code."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..model import DetectorConfig, HeatmapDetector, KeypointModel, load_detector, save_checkpoint
from ..certify import CertifyOptions, PerturbationBox, certify

BENCH_CONFIG = DetectorConfig(input_width=64, input_height=48, output_stride=4, stem_width=16, width=32,
                              depth=2, target="chessboard_9x6")
EPSILONS = (0.005, 0.02, 0.05, 0.1)


def bench_model(steps: int = 1500, train_images: int = 3000, seed: int = 0, progress: bool = True) -> KeypointModel:
    """The benchmark detector (64x48 input, stride 4, 4 keypoints): trained on synthetic scenes
    with the shared training loop on first use, then cached under ``$USN_CACHE/bench``."""
    from ..data.opencv_doc import cache_dir
    from ..data.synthetic import SceneConfig, generate_split
    from ..train import train_detector

    path = cache_dir() / "bench" / f"bench_detector_{steps}_{train_images}_{seed}.safetensors"
    if path.is_file():
        det, info = load_detector(path)
        return KeypointModel(det, device="cpu", info=info, path=path)
    images, kps = generate_split("train", train_images, SceneConfig(BENCH_CONFIG.input_width, BENCH_CONFIG.input_height),
                                 progress=progress)
    torch.manual_seed(seed)
    det = HeatmapDetector(DetectorConfig.from_dict(BENCH_CONFIG.to_dict()))
    train_detector(det, images, kps, steps=steps, batch_size=32, seed=seed, device="cpu", progress=progress,
                   desc="bench detector")
    save_checkpoint(det, path, extra={"bench": {"steps": steps, "train_images": train_images, "seed": seed}})
    return KeypointModel(det.eval(), device="cpu", path=path)


def bench_frames(model: KeypointModel, n: int, progress: bool = False) -> list[np.ndarray]:
    """``n`` synthetic test frames at the model's input size."""
    from ..data.synthetic import SceneConfig, generate_split

    cfg = model.config
    images, _ = generate_split("test", n, SceneConfig(cfg.input_width, cfg.input_height), progress=progress)
    return list(images)


@dataclass
class BenchRow:
    model: str
    eps: float
    method: str
    certified: int
    total: int
    mean_rstar: float
    ms_per_frame: float
    unknown: int = 0


def available_methods(include_lirpa: bool = True) -> list[tuple[str, str, dict]]:
    """(label, backend, options) of every runnable method."""
    methods = [("native (no split)", "native", {"max_depth": 0}),
               ("native (forward + split)", "native", {"backward": False}),
               ("native", "native", {})]
    if include_lirpa:
        try:
            import auto_LiRPA  # noqa: F401
        except ImportError:
            return methods
        methods += [("auto_LiRPA IBP", "auto_lirpa", {"method": "IBP"}),
                    ("auto_LiRPA CROWN", "auto_lirpa", {"method": "CROWN"})]
    return methods


def run_bench(models: list[tuple[str, KeypointModel, list[np.ndarray]]], radius: float = 4.0,
              epsilons: tuple[float, ...] = EPSILONS, lirpa_frames: int | None = None,
              include_lirpa: bool = True, progress: bool = True) -> list[BenchRow]:
    """Certify every frame with every method at every epsilon (alpha = beta = eps)."""
    from tqdm import tqdm

    rows: list[BenchRow] = []
    methods = available_methods(include_lirpa)
    jobs = [(name, m, frames, eps, meth) for name, m, frames in models for eps in epsilons for meth in methods
            if not (meth[1] == "auto_lirpa" and name != models[0][0])]
    for name, model, frames, eps, (label, backend, opts) in tqdm(jobs, desc="bench-certify", disable=not progress):
        if backend == "auto_lirpa" and lirpa_frames is not None:
            frames = frames[:lirpa_frames]
        cert = n_unknown = 0
        rstars, times = [], []
        for img in frames:
            t = time.perf_counter()
            fc = certify(model, img, box=PerturbationBox(eps, eps), radius=radius, backend=backend,
                         options=CertifyOptions(margins=False, **opts))
            times.append(1000 * (time.perf_counter() - t))
            cert += sum(k.certified for k in fc.keypoints)
            n_unknown += sum(k.status.value == "unknown" for k in fc.keypoints)
            rstars += [k.certified_radius for k in fc.keypoints if k.certified]
        total = len(frames) * model.config.num_keypoints
        rows.append(BenchRow(name, eps, label, cert, total, float(np.mean(rstars)) if rstars else math.nan,
                             float(np.mean(times)), n_unknown))
    return rows


def markdown_table(rows: list[BenchRow]) -> str:
    """Rows grouped by model and epsilon; ratios against auto_LiRPA CROWN when present, else
    against native without splitting (certified-rate ratio and speed-up)."""
    lines = ["| model | α=β | method | certified | rate | mean r* (px) | ms/frame | rate vs ref | speed-up vs ref |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (model, eps) in dict.fromkeys((r.model, r.eps) for r in rows):
        group = [r for r in rows if r.model == model and r.eps == eps]
        ref = next((r for r in group if r.method == "auto_LiRPA CROWN"), None) or \
            next(r for r in group if r.method == "native (no split)")
        for r in group:
            rate = r.certified / max(r.total, 1)
            ref_rate = ref.certified / max(ref.total, 1)
            ratio = f"{rate / ref_rate:.2f}×" if ref_rate > 0 else ("=" if rate == 0 else "∞")
            lines.append(f"| {model} | {eps:g} | {r.method} | {r.certified}/{r.total} | {rate:.2f} | "
                         f"{r.mean_rstar:.2f} | {r.ms_per_frame:.1f} | {ratio} (ref {ref.method}) | "
                         f"{ref.ms_per_frame / r.ms_per_frame:.1f}× |")
    return "\n".join(lines)


REAL_EPSILONS = (0.02, 0.05, 0.1)
REAL_BUDGETS_MS = (120.0, 1000.0)  # run as budgets: the certifier node's default, 1 s
DERIVED_BUDGETS_MS = (10000.0,)  # read off the capped run's decision times (see run_real)
NO_BUDGET_CAP_S = 60.0  # "no budget" is capped at 60 s per frame


@dataclass
class RealRow:
    """One frame set at one box: sampling upper bound, and per budget the certified / refuted
    counts, mean and p90 seconds per frame and the peak memory above the process baseline (MB);
    ``frames`` holds the per-frame statuses, seconds and MB of the uncapped ("no budget") run."""

    name: str
    eps: float
    keypoints: int
    upper: int  # keypoints whose argmax never left the disk over the sampled θ
    by_budget: dict  # budget label -> {"certified", "refuted", "mean_s", "p90_s", "peak_mb"}
    frames: list = field(default_factory=list)


def sampling_upper_bound(model: KeypointModel, img: np.ndarray, eps: float, radius: float, n: int = 100) -> int:
    """Keypoints of ``img`` that no sampled θ (the box's corners, edge midpoints and centre, and
    ``n - 9`` uniform) moves farther than ``radius`` frame px: no sound certifier proves more."""
    from ..model.preprocess import decode_heatmaps
    from ..perturbation import apply_perturbation

    box = PerturbationBox(eps, eps)
    g = torch.Generator().manual_seed(0)
    grid = torch.tensor([[c, b] for c in (1 - eps, 1.0, 1 + eps) for b in (-eps, 0.0, eps)])
    theta = torch.cat([grid, box.sample(n - 9, g).float()])
    x0, geo = model.preprocess(img)
    with torch.no_grad():
        hm = model.detector(apply_perturbation(x0.expand(len(theta), -1, -1, -1), theta[:, 0], theta[:, 1]))
        rows, cols, _ = decode_heatmaps(torch.cat([model.detector(x0), hm]))
    s = model.config.output_stride
    xs, ys = (cols.double() + 0.5) * s * geo.scale[0], (rows.double() + 0.5) * s * geo.scale[1]
    d = torch.hypot(xs[1:] - xs[:1], ys[1:] - ys[:1])
    return int((d.amax(dim=0) <= radius + 1e-9).sum())


def run_real(model: KeypointModel, sets: list[tuple[str, list[np.ndarray]]], radius: float = 4.0,
             epsilons: tuple[float, ...] = REAL_EPSILONS, budgets: tuple = REAL_BUDGETS_MS,
             derived: tuple = DERIVED_BUDGETS_MS, cap_s: float = NO_BUDGET_CAP_S,
             progress: bool = True) -> list[RealRow]:
    """Certify every frame of every named set at every box: once per budget of ``budgets``, and
    once with only the ``cap_s`` cap ("no budget"). The ``derived`` budgets are read off that
    last run: a keypoint counts as certified within B when it was proven less than B after the
    call started (the search's rounds do not depend on the budget, so a budget B stops the same
    search by then, up to the one round it would not start). Times are on :data:`.native.clock`."""
    from tqdm import tqdm

    from ..certify import native
    from .bab_frames import PeakRSS

    rows = []
    labels = [budget_label(b) for b in budgets] + [budget_label(b) for b in derived] + [budget_label(None, cap_s)]
    for name, frames, eps in tqdm([(n, f, e) for n, f in sets for e in epsilons], desc="bench-certify real",
                                  disable=not progress):
        upper = sum(sampling_upper_bound(model, f, eps, radius) for f in frames)
        acc = {lab: {"certified": 0, "refuted": 0, "secs": [], "peak_mb": 0.0} for lab in labels}
        per_frame = []
        for i, f in enumerate(frames):
            for budget in list(budgets) + [None]:
                with PeakRSS() as mem:
                    t = native.clock()
                    fc = certify(model, f, eps, eps, radius, margins=False,
                                 budget_ms=1000.0 * cap_s if budget is None else budget)
                    dt = native.clock() - t
                cells = [(budget_label(budget, cap_s), None)] + ([(budget_label(b), b) for b in derived]
                                                                  if budget is None else [])
                for lab, b in cells:
                    a = acc[lab]
                    ok = [k for k in fc.keypoints if k.certified and (b is None or k.time_ms <= b)]
                    a["certified"] += len(ok)
                    a["refuted"] += sum(k.status.value == "refuted" and (b is None or k.time_ms <= b)
                                        for k in fc.keypoints)
                    a["secs"].append(dt if b is None else min(dt, b / 1000.0))
                    a["peak_mb"] = max(a["peak_mb"], mem.peak - mem.base)
            per_frame.append({"frame": i, "statuses": [k.status.value for k in fc.keypoints],
                              "decided_ms": [round(k.time_ms, 1) for k in fc.keypoints],
                              "seconds": dt, "peak_mb": mem.peak - mem.base})
        by = {lab: {"certified": a["certified"], "refuted": a["refuted"], "mean_s": float(np.mean(a["secs"])),
                    "p90_s": float(np.percentile(a["secs"], 90)), "peak_mb": a["peak_mb"]} for lab, a in acc.items()}
        rows.append(RealRow(name, eps, len(frames) * model.config.num_keypoints, upper, by, per_frame))
    return rows


def budget_label(budget: float | None, cap_s: float = NO_BUDGET_CAP_S) -> str:
    if budget is None:
        return f"no budget ({cap_s:g} s cap)"
    return f"{budget / 1000:g} s" if budget >= 1000 else f"{budget:g} ms"


def real_table(rows: list[RealRow]) -> str:
    """Markdown: per frame set and box, the sampling upper bound and per budget the certified rate
    (certified / refuted of all keypoints), mean / p90 s per frame and peak MB."""
    budgets = list(rows[0].by_budget) if rows else []
    head = ["frames", "α=β", "keypoints", "sampling upper bound"] + [f"{b}: cert. (refuted)" for b in budgets] \
        + [f"{b}: mean / p90 s" for b in budgets] + ["peak MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        n = max(r.keypoints, 1)
        cells = [r.name, f"{r.eps:g}", str(r.keypoints), f"{r.upper / n:.0%}"]
        cells += [f"{v['certified'] / n:.0%} ({v['refuted']})" for v in r.by_budget.values()]
        cells += [f"{v['mean_s']:.2f} / {v['p90_s']:.2f}" for v in r.by_budget.values()]
        cells.append(f"{max(v['peak_mb'] for v in r.by_budget.values()):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_labels(paths: list) -> list[str]:
    """Per checkpoint, the shortest path tail no other checkpoint shares (its file name when the
    names differ), so that same-named checkpoints in different folders stay apart."""
    parts = [Path(p).parts for p in paths]
    labels = []
    for i, q in enumerate(parts):
        others = [r for j, r in enumerate(parts) if j != i]
        k = next((k for k in range(1, len(q) + 1) if all(r[-k:] != q[-k:] for r in others)), len(q))
        labels.append("/".join(q[-k:]))
    return labels


def bench_certify(out: str | Path, frames: int = 8, lirpa_frames: int = 4, radius: float = 4.0,
                  train_steps: int = 1500, threads: int = 2, models: list[str] | None = None,
                  epsilons: tuple[float, ...] = EPSILONS, real_frames: int = 13, real_synthetic: int = 8,
                  real_eps: tuple = REAL_EPSILONS, real_budgets: tuple = REAL_BUDGETS_MS,
                  real_derived: tuple = DERIVED_BUDGETS_MS, real_cap_s: float = NO_BUDGET_CAP_S,
                  cpu_clock: bool = False) -> str:
    """Benchmark the bench detector and ``models`` (default: the shipped default model) and write
    the markdown table to ``out``; returns it. The real-frame rows (``real_frames`` left* photos,
    ``real_synthetic`` full-size synthetic scenes; :func:`bench_real`) are measured on the last
    model (the shipped default unless ``models`` are given)."""
    from ..model import load_model
    from ..weights import default_model_path

    torch.set_num_threads(threads)
    bench = bench_model(steps=train_steps)
    entries = [("bench 64×48", bench, bench_frames(bench, frames))]
    paths = list(models or [])
    if not paths:
        try:
            paths = [default_model_path()]
        except FileNotFoundError:
            print("no shipped model yet: benchmarking the bench detector only")
    for p, label in zip(paths, model_labels(paths)):
        m = load_model(p, device="cpu")
        c = m.config
        entries.append((f"{label} {c.input_width}×{c.input_height}", m, bench_frames(m, frames)))
    rows = run_bench(entries, radius=radius, epsilons=epsilons, lirpa_frames=lirpa_frames)
    head = (f"Certification benchmark: radius {radius} px, α=β=ε, {frames} synthetic test frames per model "
            f"(auto_LiRPA on the first {lirpa_frames}), torch threads {threads}, CPU.\n\n")
    table = markdown_table(rows)
    if real_frames or real_synthetic:
        table += "\n\n" + bench_real(entries[-1], real_frames, real_synthetic, radius, threads, real_eps, real_budgets,
                                     real_derived, real_cap_s, cpu_clock, Path(out).with_suffix(".real.json"))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(head + table + "\n")
    return head + table


def bench_real(entry: tuple, n_photos: int, n_synthetic: int, radius: float, threads: int, epsilons: tuple,
               budgets: tuple, derived: tuple, cap_s: float, cpu_clock: bool, json_path: Path) -> str:
    """The real-frame rows (:func:`run_real`) of one ``(label, model, frames)`` entry on the left*
    photos and full-size synthetic scenes; writes every row to ``json_path``, returns the markdown."""
    import json
    from dataclasses import asdict

    import cv2

    from ..certify import native
    from ..data.synthetic import generate_split
    from .bab_frames import left_photos

    label, model, _ = entry
    sets = []
    if n_photos:
        photos = left_photos()[:n_photos]
        sets.append((f"left* photos ({len(photos)})", [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in photos]))
    if n_synthetic:
        sets.append((f"synthetic scenes ({n_synthetic})", list(generate_split("test", n_synthetic, progress=False)[0])))
    if cpu_clock:
        native.clock = time.thread_time  # budgets and times on the certifying thread's CPU time
    real = run_real(model, sets, radius=radius, epsilons=tuple(epsilons), budgets=tuple(budgets),
                    derived=tuple(derived), cap_s=cap_s)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps([asdict(r) for r in real], indent=1))
    clock = "CPU time of the certifying thread" if cpu_clock else "wall time"
    return (f"### Real frames: {label}, r = {radius:g} px, {threads} thread(s), budgets and times per frame in "
            f"{clock} ({budget_label(REAL_BUDGETS_MS[0])} is the certifier node's default; "
            f"{', '.join(budget_label(b) for b in derived) or 'nothing'} read off the capped run's decision times)"
            f"\n\n" + real_table(real))
