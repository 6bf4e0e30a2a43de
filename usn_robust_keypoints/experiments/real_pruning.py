"""Pruning judged on the real ``left*`` photos (issue 20, item 3): USN + W, USN (λ = 0), BN-scale,
Taylor and random from one parent, the same progressive schedule and fine-tuning (photographed-print
scenes, the parent's certifiability term and distillation), several seeds; ``no pruning`` is the
control: the parent fine-tuned for as many steps as one whole trajectory, no channel removed.

Per pruned model (and the parent): real PCK@3px on the 13 ``left*`` photos; ``certify()`` on every
full frame at ±``eps``, radius ``radius`` frame px, one torch thread, within the node's budget
(a budgeted run) and within ``cap_ms`` (one run whose per-keypoint decision times give the
certified rate within any shorter budget: the search's rounds do not depend on the deadline); the
time to a complete certificate per frame (every keypoint proven or refuted; censored at the cap);
the bound pass cost per sub-box; parameters. Paired per keypoint against USN + W at equal sparsity
and seed (exact McNemar). Writes ``results.json`` (every keypoint's outcome), ``results.md`` and
``pruning_real.png`` to ``out``; finished models and rows are reused when the run is resumed.

    usn-keypoints real-pruning --parent usn_robust_keypoints/weights/chessboard_usn_photo.safetensors \
        --out results/pruning_real [--seeds 0 1 2] [--sparsities 0.25 0.5 0.75] [--jobs 2]
"""

from __future__ import annotations

import copy
import json
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..certify import certify, native
from ..certify.bounds import propagate
from ..certify.training_loss import RobustConfig, RobustnessTerm
from ..data import PhotoConfig, SceneConfig, generate_split
from ..evaluate import evaluate_model, paired_test
from ..model import KeypointModel, load_detector, load_model, save_checkpoint
from ..perturbation import PerturbationBox
from ..prune.schedule import PruneResult, ScheduleConfig, fine_tune, progressive_prune, trajectory_steps
from .box_pass_cost import seconds
from .real_frontier import NODE_BUDGET_MS, labelled_left_photos

METHODS = {"USN+W": ("usn", 1.0), "USN (λ=0)": ("usn", 0.0), "BN-scale": ("bn", 0.0), "Taylor": ("taylor", 0.0),
           "random": ("random", 0.0)}
NO_PRUNING = "no pruning"  # the control: the same fine-tuning, no channel removed (sparsity 0)


@dataclass
class RealPruningConfig:
    """Everything the comparison depends on (written into results.json)."""

    parent: str
    teacher: str | None = None  # distillation teacher of every fine-tuning (None: off)
    distill_weight: float = 1.0
    methods: tuple[str, ...] = (*METHODS, NO_PRUNING)
    sparsities: tuple[float, ...] = (0.25, 0.5, 0.75)
    seeds: tuple[int, ...] = (0, 1, 2)
    steps_per_round: int = 30
    recovery_steps: int = 100
    batch_size: int = 24
    lr: float = 5e-4
    train_images: int = 6000
    robust: RobustConfig = field(default_factory=lambda: RobustConfig(kappa=0.3, eps=0.1, ramp=0.0, sub_eps=0.02,
                                                                       form="log"))
    eps: float = 0.02
    radius: float = 4.0
    cap_ms: float = 5000.0
    anytime_ms: tuple[float, ...] = (120.0, 250.0, 500.0, 1000.0, 5000.0)
    evaluate_sparsities: tuple[float, ...] | None = None  # None: all; else only these (others: seed 0 only)
    frames: int | None = None  # only the first N real photos (quick checks)
    cpu_clock: bool = True  # budgets on the certifying thread's CPU time (an idle core on a loaded machine)
    jobs: int = 1


def _name(method: str, sparsity: float, seed: int) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in f"{method} {sparsity:.0%} s{seed}").strip("_")


def prune_trajectory(cfg: RealPruningConfig, method: str, seed: int, out: Path) -> list[str]:
    """Prune the parent along one method's schedule (all sparsities of ``cfg``) and save every
    result under ``out/models``; returns the files (existing ones are kept)."""
    torch.set_num_threads(1)
    files = [out / "models" / f"{_name(method, s, seed)}.safetensors" for s in _sparsities(cfg, method)]
    if all(f.is_file() for f in files):
        return [str(f) for f in files]
    parent, _ = load_detector(cfg.parent)
    teacher = load_detector(cfg.teacher)[0] if cfg.teacher else None
    c = parent.config
    x, k = generate_split("train", cfg.train_images, SceneConfig(c.input_width, c.input_height, photo=PhotoConfig()),
                          progress=False)
    crit, lam = ("random", 0.0) if method == NO_PRUNING else METHODS[method]  # the control: only the schedule's length
    sched = ScheduleConfig(method=crit, wasserstein=lam, targets=tuple(cfg.sparsities), steps_per_round=cfg.steps_per_round,
                           recovery_steps=cfg.recovery_steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=seed)
    term = RobustnessTerm(x, k, cfg.robust, trajectory_steps(parent, sched), seed=seed)
    t0 = time.process_time()
    distill = cfg.distill_weight if teacher is not None else 0.0
    if method == NO_PRUNING:
        model = copy.deepcopy(parent)
        fine_tune(model, x, k, steps=trajectory_steps(parent, sched), batch_size=sched.batch_size, lr=sched.lr,
                  seed=seed * 100, progress=False, extra_loss=term, teacher=teacher, distill_weight=distill)
        results = [PruneResult(0.0, model.cpu().eval(), list(model.config.conv_channels()), [])]
    else:
        results = progressive_prune(parent, x, k, sched, progress=False, extra_loss=term, teacher=teacher,
                                    distill_weight=distill)
    for res, f in zip(results, files):
        f.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(res.detector, f, extra={"pruning": {**sched.to_dict(), "source": cfg.parent,
                                                            "sparsity": res.sparsity, "cpu_s": time.process_time() - t0},
                                                "robust": term.summary()})
    return [str(f) for f in files]


def _sparsities(cfg: RealPruningConfig, method: str) -> tuple[float, ...]:
    return (0.0,) if method == NO_PRUNING else cfg.sparsities


def leaf_ms(model: KeypointModel, image: np.ndarray, eps: float, reps: int = 5) -> float:
    """CPU ms of one forward bound pass over one ±``eps`` sub-box (the engine's unit of work)."""
    x0, _ = model.preprocess(image)
    layers = native.make_plan(model.detector).layers
    box = PerturbationBox(eps, eps).tensor(x0.dtype).view(1, 4)
    with torch.no_grad():
        return 1000 * seconds(lambda: propagate(layers, x0, box, []), reps, time.thread_time)


def evaluate_real(path: str, label: str, cfg: RealPruningConfig) -> dict:
    """One row: real PCK, certified within the node's budget, per-keypoint decision times within
    the cap, time to a complete certificate per frame, bound-pass cost, parameters."""
    torch.set_num_threads(1)
    if cfg.cpu_clock:
        native.clock = time.thread_time
    model = load_model(path, device="cpu")
    images, kps, symmetries = labelled_left_photos(cfg.frames)
    ev = evaluate_model(model, images, kps, symmetries, (3.0,), progress=False)
    certify(model, images[0], cfg.eps, cfg.eps, cfg.radius, budget_ms=NODE_BUDGET_MS, margins=False)  # warm-up
    node, status, times, complete = [], [], [], []
    for img in images:
        fc = certify(model, img, cfg.eps, cfg.eps, cfg.radius, budget_ms=NODE_BUDGET_MS, margins=False)
        node += [int(k.certified) for k in fc.keypoints]
        fc = certify(model, img, cfg.eps, cfg.eps, cfg.radius, budget_ms=cfg.cap_ms, margins=False)
        status += [k.status.name for k in fc.keypoints]
        times += [k.time_ms for k in fc.keypoints]
        done = all(k.status.name in ("CERTIFIED", "REFUTED") for k in fc.keypoints)
        complete.append(max(k.time_ms for k in fc.keypoints) if done else math.inf)
    det = model.detector
    return {"model": label, "path": str(path), "params": int(sum(p.numel() for p in det.parameters())),
            "channels": det.config.conv_channels(), "pck_real_left": ev.pck(3.0), "keypoints": len(node),
            "node": node, "status": status, "time_ms": times, "complete_ms": complete,
            "leaf_ms": leaf_ms(model, images[0], cfg.eps)}


def certified_within(row: dict, ms: float) -> list[int]:
    """Per keypoint: proven within ``ms`` in the capped run."""
    return [int(s == "CERTIFIED" and t <= ms) for s, t in zip(row["status"], row["time_ms"])]


def _key(method: str, sparsity: float, seed: int) -> str:
    return f"{method}|{sparsity:g}|{seed}"


PARENT_KEY = _key("parent", 0.0, 0)


def run_real_pruning(cfg: RealPruningConfig, out: str | Path, progress: bool = True) -> str:
    """Prune, evaluate and write the table (resumable); returns the markdown."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.json"
    rows = json.loads(res_path.read_text())["rows"] if res_path.is_file() else {}
    jobs = [(m, s) for s in cfg.seeds for m in cfg.methods]
    ctx = multiprocessing.get_context("spawn")

    def save() -> None:
        res_path.write_text(json.dumps({"config": asdict(cfg), "rows": rows}, indent=1))

    with ProcessPoolExecutor(max(1, cfg.jobs), mp_context=ctx) as pool:
        efuts = {}
        if PARENT_KEY not in rows:
            efuts[pool.submit(evaluate_real, cfg.parent, "parent", cfg)] = ("parent", 0.0, 0)
        futs = {pool.submit(prune_trajectory, cfg, m, s, out): (m, s) for m, s in jobs}
        for fut in tqdm(as_completed(futs), total=len(futs), desc="prune", disable=not progress):
            m, s = futs[fut]
            for sp, f in zip(_sparsities(cfg, m), fut.result()):
                wanted = cfg.evaluate_sparsities is None or sp in cfg.evaluate_sparsities or s == cfg.seeds[0]
                if wanted and _key(m, sp, s) not in rows:
                    efuts[pool.submit(evaluate_real, f, f"{m} {sp:.0%} seed {s}", cfg)] = (m, sp, s)
        for fut in tqdm(as_completed(efuts), total=len(efuts), desc="evaluate", disable=not progress):
            m, sp, s = efuts[fut]
            rows[_key(m, sp, s)] = {**fut.result(), "method": m, "sparsity": sp, "seed": s}
            save()
    save()
    md = table(rows, cfg)
    (out / "results.md").write_text(md)
    plot(rows, cfg, out / "pruning_real.png")
    return md


def _mean(vals: list[float]) -> float:
    return float(np.mean(vals)) if vals else math.nan


def _median_complete(rows: list[dict]) -> float:
    return float(np.median([t for r in rows for t in r["complete_ms"]]))


def table(rows: dict, cfg: RealPruningConfig) -> str:
    """Markdown: one line per (method, sparsity), means over the evaluated seeds; certified rates of
    all keypoints; paired against USN + W over the same seeds' keypoints."""
    n = next(iter(rows.values()))["keypoints"]
    ms_cols = [a for a in cfg.anytime_ms if a != NODE_BUDGET_MS and a < cfg.cap_ms] + [cfg.cap_ms]
    head = (["method", "sparsity", "seeds", "params", "real PCK@3px", f"certified, node budget {NODE_BUDGET_MS:g} ms"]
            + [f"within {a:g} ms (capped run)" for a in ms_cols]
            + ["median ms to a complete certificate", "frames complete", "ms per sub-box",
               f"paired vs USN+W within {cfg.cap_ms:g} ms"])
    lines = [f"Real `left*` photos ({n} keypoints per model), ±{cfg.eps:g}, r = {cfg.radius:g} frame px, one thread, "
             f"{'CPU-time' if cfg.cpu_clock else 'wall-clock'} budgets; rates are means over seeds; paired = "
             "keypoints only this row / only USN+W proves (all seeds pooled; the no-pruning control against USN+W "
             f"at {cfg.sparsities[0]:.0%}), exact McNemar p.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups: dict[tuple, list[dict]] = {}
    for r in rows.values():
        groups.setdefault((r["method"], r["sparsity"]), []).append(r)
    order = ["parent"] + list(cfg.methods)
    for (m, sp), rs in sorted(groups.items(), key=lambda g: (g[0][1], order.index(g[0][0]))):
        rs = sorted(rs, key=lambda r: r["seed"])
        cells = [m, f"{sp:.0%}", " ".join(str(r["seed"]) for r in rs) if m != "parent" else "—",
                 str(rs[0]["params"]), f"{_mean([r['pck_real_left'] for r in rs]):.3f}",
                 f"{_mean([np.mean(r['node']) for r in rs]):.3f}"]
        cells += [f"{_mean([np.mean(certified_within(r, a)) for r in rs]):.3f}" for a in ms_cols]
        med = _median_complete(rs)
        cells += [f"{med:.0f}" if math.isfinite(med) else f"> {cfg.cap_ms:g}",
                  f"{sum(math.isfinite(t) for r in rs for t in r['complete_ms'])}/{sum(len(r['complete_ms']) for r in rs)}",
                  f"{_mean([r['leaf_ms'] for r in rs]):.1f}"]
        ref_sp = cfg.sparsities[0] if m == NO_PRUNING else sp  # the control against USN+W's first sparsity
        ref = {r["seed"]: r for r in groups.get(("USN+W", ref_sp), [])}
        mine = [r for r in rs if r["seed"] in ref]
        if m in ("USN+W", "parent") or not mine:
            cells.append("—")
        else:
            a = sum((certified_within(r, cfg.cap_ms) for r in mine), [])
            b = sum((certified_within(ref[r["seed"]], cfg.cap_ms) for r in mine), [])
            p, q, pv = paired_test(a, b)
            cells.append(f"+{p} / −{q} (p = {pv:.2g})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: dict, cfg: RealPruningConfig, path: Path) -> None:
    """Certified rate within the cap and median time to a complete certificate against sparsity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    parent = rows.get(PARENT_KEY)
    for m in cfg.methods:
        rs = [r for r in rows.values() if r["method"] == m]
        if m == NO_PRUNING:
            for ax, v in zip(axes, ([_mean([np.mean(certified_within(r, cfg.cap_ms)) for r in rs])],
                                    [_median_complete(rs) / 1000], [_mean([r["pck_real_left"] for r in rs])])):
                ax.plot([0.0], v, "k*", markersize=10, label=m)
            continue
        sps = sorted({r["sparsity"] for r in rs})
        by = [[r for r in rs if r["sparsity"] == s] for s in sps]
        if parent:
            sps, by = [0.0] + sps, [[parent]] + by
        axes[0].plot(sps, [_mean([np.mean(certified_within(r, cfg.cap_ms)) for r in g]) for g in by], "o-", label=m)
        axes[1].plot(sps, [_median_complete(g) / 1000 for g in by], "o-", label=m)
        axes[2].plot(sps, [_mean([r["pck_real_left"] for r in g]) for g in by], "o-", label=m)
    axes[0].set_ylabel(f"real certified rate within {cfg.cap_ms / 1000:g} s")
    axes[1].set_ylabel("median s to a complete certificate (inf: capped)")
    axes[2].set_ylabel("real PCK@3px")
    for ax in axes:
        ax.set_xlabel("channel sparsity (of the parent)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
