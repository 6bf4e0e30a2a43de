"""The pruning comparison: dense vs USN (lambda = 0), USN + Wasserstein (lambda > 0) and the
baselines (random, L1, BN-scale, Taylor) at several channel sparsities, same schedule and budget.

Metrics per row (synthetic test split only; the real photos are never used here):
PCK@3px and mean pixel error; certified accuracy (keypoint within ``tolerance`` px of the ground
truth *and* certified at alpha = beta = eps, radius r) and the raw certified rate at each eps in
``eps``; mean beta* (largest brightness-only margin of a grid proven at r, 0 when none;
:func:`beta_star_grid`);
certification time per frame; detector latency (batch 1); parameters and MACs. Writes
``results.md`` (table), ``results.json`` and PNG plots (metrics vs sparsity, PCK vs certified
accuracy) to the output folder.

With ``robust`` set, every fine-tuning of every method adds the same certifiability term (the
certifier's bounds, :mod:`usn_robust_keypoints.certify.training_loss`), and one ablation trajectory runs USN + W
without it (``κ=0``).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch_pruning as tp
from tqdm import tqdm

from ..certify.training_loss import RobustConfig, RobustnessTerm
from ..evaluate import format_rate
from ..model import KeypointModel, load_detector, save_checkpoint
from ..model.detector import HeatmapDetector
from ..prune.schedule import ScheduleConfig, progressive_prune, trajectory_steps
from ..prune.surgery import count_hidden_channels
from ..prune.usn import UsnConfig

_SCHEDULE = ScheduleConfig()  # the schedule defaults (one source for the experiment and ``prune``)


@dataclass
class ExperimentConfig:
    """Everything the comparison depends on (written into results.json)."""

    model: str | None = None  # dense checkpoint (default: the shipped dense model)
    sparsities: tuple[float, ...] = (0.25, 0.5, 0.75)
    methods: tuple[str, ...] = ("usn", "usn+w", "random", "l1", "bn", "taylor")
    wasserstein: tuple[float, ...] = (1.0,)  # λ of the "+w" rows: one trajectory per value (ablations: the first)
    w_variant: str = _SCHEDULE.w_variant
    ablations: bool = True  # at the middle sparsity: USN without the bias term (lambda 0 / > 0), W sorted
    steps_per_round: int = _SCHEDULE.steps_per_round
    recovery_steps: int = _SCHEDULE.recovery_steps
    round_fraction: float = _SCHEDULE.round_fraction
    batch_size: int = _SCHEDULE.batch_size
    lr: float = _SCHEDULE.lr
    train_images: int = 16000
    test_images: int = 500
    cert_frames: int = 16
    eps: tuple[float, ...] = (0.02, 0.05)
    beta_grid: tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15)
    radius: float = 4.0
    tolerance: float = 3.0
    backend: str = "native"
    budget_ms: float | None = None
    max_depth: int | None = None  # native θ-box splitting depth (None: the certify default)
    seed: int = 0
    threads: int = 1
    jobs: int = 1  # pruning trajectories run in parallel worker processes
    usn: UsnConfig = field(default_factory=UsnConfig)
    robust: RobustConfig | None = None  # certifiability term in every fine-tuning (None: off)

    @classmethod
    def quick(cls, **kw) -> "ExperimentConfig":
        """A minutes-free smoke configuration (tests, CI)."""
        base = dict(sparsities=(0.5,), methods=("usn", "usn+w", "random"), ablations=False, steps_per_round=2,
                    recovery_steps=2, batch_size=4, train_images=48, test_images=8, cert_frames=2,
                    usn=UsnConfig(num_theta=4))
        base.update(kw)
        return cls(**base)


def _dense_path(cfg: ExperimentConfig) -> Path:
    if cfg.model:
        return Path(cfg.model)
    from ..weights import DEFAULT_DENSE, shipped_model_path

    return shipped_model_path(DEFAULT_DENSE)


def load_split(detector: HeatmapDetector, split: str, n: int, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(images, keypoints) of ``n`` synthetic scenes of ``split`` at the model's input size."""
    from ..data import SceneConfig, generate_split

    return generate_split(split, n, SceneConfig(detector.config.input_width, detector.config.input_height),
                          progress=progress)


def detector_latency_ms(detector: HeatmapDetector, runs: int = 30) -> float:
    """Median forward time (ms) of one input at batch 1 on the CPU."""
    c = detector.config
    x = torch.rand(1, 1, c.input_height, c.input_width)
    det = detector.cpu().eval()
    with torch.no_grad():
        for _ in range(3):
            det(x)
        ts = []
        for _ in range(runs):
            t0 = time.perf_counter()
            det(x)
            ts.append((time.perf_counter() - t0) * 1000)
    return float(np.median(ts))


def evaluate_detector(detector: HeatmapDetector, test_images: np.ndarray, test_kps: np.ndarray,
                      cfg: ExperimentConfig, progress: bool = True) -> dict:
    """All metrics of one model (see the module docstring)."""
    from ..evaluate import certified_accuracy, evaluate_model

    km = KeypointModel(detector.cpu().eval(), device="cpu")
    ev = evaluate_model(km, list(test_images), test_kps, _sym(), (cfg.tolerance,), progress=False)
    c = detector.config
    macs, params = tp.utils.count_ops_and_params(detector, torch.zeros(1, 1, c.input_height, c.input_width))
    row = {"params": int(params), "macs": int(macs), "channels": count_hidden_channels(detector),
           "num_keypoints": c.num_keypoints,
           f"pck@{cfg.tolerance:g}px": ev.pck(cfg.tolerance), "mean_error_px": ev.mean_error,
           "latency_ms": detector_latency_ms(detector)}
    n = min(cfg.cert_frames, len(test_images))
    scores = certified_accuracy(km, test_images[:n], test_kps[:n], cfg.eps, radius=cfg.radius, tolerance=cfg.tolerance,
                                symmetries=_sym(), backend=cfg.backend, budget_ms=cfg.budget_ms,
                                max_depth=cfg.max_depth, progress=progress)
    for s in scores:
        row.update(s.as_row())
    row["mean_beta_star"] = float(np.mean([b for i in range(n) for b in beta_star_grid(km, test_images[i], cfg)]))
    return row


def beta_star_grid(km: KeypointModel, image: np.ndarray, cfg: ExperimentConfig) -> list[float]:
    """Per keypoint, the largest brightness-only margin of ``cfg.beta_grid`` (ascending) proven at
    ``cfg.radius`` with contrast fixed to 1, stopping at its first failure (0.0 when none). A sound
    lower bound of beta*, much cheaper than the API's bisection (``certify(margins=True)``)."""
    from ..certify import certify

    best = [0.0] * km.config.num_keypoints
    alive = [True] * len(best)
    for b in cfg.beta_grid:
        fc = certify(km, image, alpha=0.0, beta=b, radius=cfg.radius, backend=cfg.backend,
                     budget_ms=cfg.budget_ms, margins=False, max_depth=cfg.max_depth)
        for j, kc in enumerate(fc.keypoints):
            if alive[j] and kc.certified:
                best[j] = b
            else:
                alive[j] = False
        if not any(alive):
            break
    return best


def _sym() -> list[list[int]]:
    from ..data import CHESSBOARD_9X6

    return CHESSBOARD_9X6.symmetries


def _runs(cfg: ExperimentConfig) -> list[tuple[str, ScheduleConfig, bool]]:
    """(row label, schedule, with the robustness term) of every pruning trajectory."""
    common = dict(targets=tuple(cfg.sparsities), round_fraction=cfg.round_fraction,
                  steps_per_round=cfg.steps_per_round, recovery_steps=cfg.recovery_steps,
                  batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, usn=cfg.usn, w_variant=cfg.w_variant)
    lam = cfg.wasserstein[0]
    runs = []
    for m in cfg.methods:
        if m.endswith("+w"):  # usn+w, or a baseline with the same Wasserstein concentration (e.g. bn+w)
            base = m[:-2]
            name = "USN" if base == "usn" else base
            runs += [(f"{name}+W (λ={w:g})", ScheduleConfig(method=base, wasserstein=w, **common)) for w in cfg.wasserstein]
        elif m == "usn":
            runs.append(("USN (λ=0)", ScheduleConfig(method="usn", **common)))
        else:
            runs.append((m, ScheduleConfig(method=m, **common)))
    on = cfg.robust is not None
    runs = [(label, sched, on) for label, sched in runs]
    if on and "usn+w" in cfg.methods:
        runs.append((f"USN+W (λ={lam:g}) κ=0", ScheduleConfig(method="usn", wasserstein=lam, **common), False))
    if cfg.ablations:
        mid = (sorted(cfg.sparsities)[len(cfg.sparsities) // 2],)
        nob = replace(cfg.usn, include_bias=False)
        one = {**common, "targets": mid}
        runs += [("USN no bias (λ=0)", ScheduleConfig(method="usn", **{**one, "usn": nob}), on),
                 (f"USN+W no bias (λ={lam:g})", ScheduleConfig(method="usn", wasserstein=lam, **{**one, "usn": nob}), on),
                 (f"USN+W sorted (λ={lam:g})",
                  ScheduleConfig(method="usn", wasserstein=lam, **{**one, "w_variant": "sorted"}), on)]
    return runs


def run_experiment(cfg: ExperimentConfig, out: str | Path, progress: bool = True) -> list[dict]:
    """Run the comparison, write results.md / results.json / plots / pruned checkpoints to ``out``.
    With ``cfg.jobs > 1`` the pruning trajectories run in that many worker processes (each with
    ``cfg.threads`` torch threads; their progress bars are off, one bar counts trajectories)."""
    torch.set_num_threads(cfg.threads)
    out = Path(out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    dense, _ = load_detector(_dense_path(cfg))
    te_x, te_k = load_split(dense, "test", cfg.test_images, progress)
    rows = [{"model": "dense", "method": "dense", "lambda": 0.0, "kappa": 0.0, "sparsity": 0.0,
             **evaluate_detector(dense, te_x, te_k, cfg, progress)}]
    _write(rows, cfg, out)
    runs = _runs(cfg)
    if cfg.jobs <= 1:
        data = (dense, *load_split(dense, "train", cfg.train_images, progress), te_x, te_k)
        for run in runs:
            rows += _trajectory(cfg, run, out, progress, data)
            _write(rows, cfg, out)
    else:
        done: dict[int, list[dict]] = {}
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(cfg.jobs, mp_context=ctx) as pool:
            futures = {pool.submit(_trajectory, cfg, run, out, False): i for i, run in enumerate(runs)}
            for fut in tqdm(as_completed(futures), total=len(futures), desc="trajectories", disable=not progress):
                done[futures[fut]] = fut.result()
                _write(rows + [r for i in sorted(done) for r in done[i]], cfg, out)
        rows += [r for i in sorted(done) for r in done[i]]
    plot_results(rows, cfg, out)
    return rows


def _trajectory(cfg: ExperimentConfig, run: tuple[str, ScheduleConfig, bool], out: Path,
                progress: bool, data: tuple | None = None) -> list[dict]:
    """Prune the dense model along one schedule; save and evaluate the model at every target.
    ``data`` = (dense, train images, train keypoints, test images, test keypoints); a worker
    process (``data=None``) loads them itself."""
    torch.set_num_threads(cfg.threads)
    label, sched, robust = run
    if data is None:
        dense, _ = load_detector(_dense_path(cfg))
        data = (dense, *load_split(dense, "train", cfg.train_images, False),
                *load_split(dense, "test", cfg.test_images, False))
    dense, tr_x, tr_k, te_x, te_k = data
    t0 = time.perf_counter()
    # A fresh term per trajectory; its ε ramp spans the whole trajectory.
    extra = RobustnessTerm(tr_x, tr_k, cfg.robust, trajectory_steps(dense, sched), seed=cfg.seed) if robust else None
    results = progressive_prune(dense, tr_x, tr_k, sched, progress=progress, extra_loss=extra)
    prune_s = time.perf_counter() - t0
    rows = []
    for res in results:
        name = f"{label} {res.sparsity:.0%}"
        fname = "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")
        info = {"pruning": {**sched.to_dict(), "sparsity": res.sparsity}}
        if extra is not None:
            info["robust"] = extra.summary()
        save_checkpoint(res.detector, out / "models" / f"{fname}.safetensors", extra=info)
        rows.append({"model": label, "method": sched.method, "lambda": sched.wasserstein,
                     "kappa": cfg.robust.kappa if extra is not None else 0.0,
                     "sparsity": res.sparsity, "file": f"models/{fname}.safetensors",
                     "prune_time_s": prune_s, **evaluate_detector(res.detector, te_x, te_k, cfg, progress)})
    return rows


def _fmt(v, spec: str) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def results_table(rows: list[dict], cfg: ExperimentConfig) -> str:
    """Markdown table of the rows (dense first, then by sparsity and model)."""
    e0 = cfg.eps[0]
    dense_ms = rows[0].get(f"cert_ms@{e0:g}", float("nan"))
    cols = ["model", "sparsity", f"PCK@{cfg.tolerance:g}px", "mean err px"]
    for e in cfg.eps:
        cols += [f"cert. acc. ε={e:g}", f"certified ε={e:g}"]
    cols += ["mean β* (grid)", f"cert. ms/frame (ε={e0:g})", "× dense", "det. ms", "params", "MMACs"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in sorted(rows, key=lambda r: (r["sparsity"], r["model"] != "dense")):
        v = [r["model"], f"{r['sparsity']:.0%}", _fmt(r[f"pck@{cfg.tolerance:g}px"], ".3f"), _fmt(r["mean_error_px"], ".2f")]
        for e in cfg.eps:
            v += [format_rate(r[f"cert_acc@{e:g}"], r.get("cert_keypoints", 0)), _fmt(r[f"cert_rate@{e:g}"], ".3f")]
        ms = r[f"cert_ms@{e0:g}"]
        v += [_fmt(r["mean_beta_star"], ".4f"), _fmt(ms, ".0f"), _fmt(ms / dense_ms, ".2f"),
              _fmt(r["latency_ms"], ".2f"), str(r["params"]), _fmt(r["macs"] / 1e6, ".1f")]
        lines.append("| " + " | ".join(v) + " |")
    return "\n".join(lines)


def _write(rows: list[dict], cfg: ExperimentConfig, out: Path) -> None:
    (out / "results.json").write_text(json.dumps({"config": asdict(cfg), "rows": rows}, indent=1))
    n_kp = cfg.cert_frames * rows[0].get("num_keypoints", 4)
    head = (f"Synthetic test split: PCK on {cfg.test_images} images; certification on the first "
            f"{cfg.cert_frames} frames ({n_kp} keypoints), backend `{cfg.backend}`, r = {cfg.radius:g} px, "
            f"α = β = ε, max_depth {cfg.max_depth if cfg.max_depth is not None else 'default'}, tolerance "
            f"{cfg.tolerance:g} px, {cfg.threads} torch thread(s) × {cfg.jobs} job(s), seed {cfg.seed}. "
            f"Certified accuracy with its 95 % Wilson interval in brackets. USN: signal {cfg.usn.signal}, "
            f"smoothness {cfg.usn.smoothness}, γ = {cfg.usn.gamma:g}, box ±{cfg.usn.alpha:g}.")
    if cfg.robust is not None:
        r = cfg.robust
        head += (f" Every fine-tuning adds the certifiability term κ = {r.kappa:g} (ε_train = {r.eps:g}, ramp "
                 f"{r.ramp:g}, form {r.form}, batch {r.batch}, r = {r.radius:g} input px) except the `κ=0` row.")
    head += "\n\n"
    (out / "results.md").write_text(head + results_table(rows, cfg) + "\n")


def plot_results(rows: list[dict], cfg: ExperimentConfig, out: Path) -> list[Path]:
    """Certified accuracy, PCK and certification time vs sparsity (one line per method)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e0 = cfg.eps[0]
    metrics = [(f"cert_acc@{e0:g}", f"certified accuracy (ε={e0:g}, r={cfg.radius:g})", "certified_accuracy.png"),
               (f"pck@{cfg.tolerance:g}px", f"PCK@{cfg.tolerance:g}px", "pck.png"),
               (f"cert_ms@{e0:g}", "certification time per frame (ms)", "cert_time.png")]
    dense = rows[0]
    labels = [lbl for lbl in dict.fromkeys(r["model"] for r in rows[1:])]
    paths = []
    for key, title, fname in metrics:
        fig, ax = plt.subplots(figsize=(6, 4))
        for lbl in labels:
            pts = sorted((r["sparsity"], r[key]) for r in rows[1:] if r["model"] == lbl)
            if len(pts) > 1:
                ax.plot(*zip(*pts), marker="o", label=lbl)
            else:
                ax.scatter(*zip(*pts), marker="x", label=lbl)
        ax.axhline(dense[key], color="k", ls="--", lw=1, label="dense")
        ax.set_xlabel("channel sparsity")
        ax.set_ylabel(title)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=100)
        plt.close(fig)
        paths.append(out / fname)
    paths.append(_plot_tradeoff(rows, cfg, out, plt))
    return paths


def _plot_tradeoff(rows: list[dict], cfg: ExperimentConfig, out: Path, plt) -> Path:
    """PCK vs certified accuracy (first eps), one labelled point per row."""
    e0, pck = cfg.eps[0], f"pck@{cfg.tolerance:g}px"
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in rows:
        label = r["model"] if r["model"] == "dense" else f"{r['model']} {r['sparsity']:.0%}"
        ax.scatter(r[pck], r[f"cert_acc@{e0:g}"], marker="s" if r["model"] == "dense" else "o")
        ax.annotate(label, (r[pck], r[f"cert_acc@{e0:g}"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"PCK@{cfg.tolerance:g}px (synthetic test)")
    ax.set_ylabel(f"certified accuracy (ε={e0:g}, r={cfg.radius:g})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "pck_vs_certified.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
