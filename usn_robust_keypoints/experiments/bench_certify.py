"""``usn-keypoints bench-certify``: every available backend/method on the same model, frames and
boxes in one process; writes a markdown table (certified rate, mean r*, time per frame, ratios).
The bench detector is trained here (and cached): this is an experiment harness, not library code."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
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
                  epsilons: tuple[float, ...] = EPSILONS) -> str:
    """Benchmark the bench detector and ``models`` (default: the shipped default model) and write
    the markdown table to ``out``; returns it."""
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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(head + markdown_table(rows) + "\n")
    return head + markdown_table(rows)
