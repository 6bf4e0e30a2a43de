"""Experiment and diagnostic subcommands (harnesses in :mod:`usn_robust_keypoints.experiments`):
``experiment``, ``tradeoff``, ``pooled-paired``, ``bench-certify``, ``certify-timing``,
``box-pass-cost``, ``frontier``, ``stream-check``, ``diagnose-bounds``, ``exact-verdicts``,
``real-frontier``, ``real-pruning``, ``own-model-speed``. Options left out keep the harness config's default."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_robust_args, given, robust_config


def _add_real_frame_args(p: argparse.ArgumentParser) -> None:
    """The photos, model and box of the per-keypoint diagnostics on real frames."""
    p.add_argument("--frames", default="left01,left03,left04,left07", help="opencv-doc photo names, comma-separated")
    p.add_argument("--model", help="checkpoint (default: the shipped default model)")
    p.add_argument("--alpha", type=float, default=0.02)
    p.add_argument("--beta", type=float, default=0.02)
    p.add_argument("--radius", type=float, default=4.0, help="disk radius r in frame px")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="pruning comparison (USN, USN+W, baselines): markdown table + plots")
    p.add_argument("--out", default="results/pruning", help="results folder")
    p.add_argument("--model", help="dense checkpoint (default: the shipped dense model)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (seconds to minutes)")
    p.add_argument("--wasserstein", type=float, nargs="+",
                   help="λ of the USN+W rows (several values: one USN+W trajectory each, a λ sweep; default 1)")
    p.add_argument("--cert-frames", type=int, help="test frames certified per model")
    p.add_argument("--max-depth", type=int, help="native branch-and-bound depth cap (splits per sub-box; default: certify's)")
    p.add_argument("--train-images", type=int, help="synthetic training scenes for fine-tuning")
    p.add_argument("--no-ablations", action="store_true")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch CPU threads (default 1)")
    p.add_argument("--jobs", type=int, help="pruning trajectories run in parallel processes (default 1)")
    p.add_argument("--sparsities", type=float, nargs="+", help="target channel sparsities (default 0.25 0.5 0.75)")
    p.add_argument("--methods", nargs="+",
                   help="usn usn+w random l1 bn taylor (default: all); a baseline + '+w' (e.g. bn+w) adds the "
                        "Wasserstein concentration to that criterion's marks")
    p.add_argument("--steps-per-round", type=int, help="fine-tune steps per pruning round")
    p.add_argument("--recovery-steps", type=int, help="fine-tune steps at each target sparsity")
    p.add_argument("--batch-size", type=int, help="fine-tuning batch size (default 16)")
    p.add_argument("--lr", type=float, help="fine-tuning peak learning rate (default 1e-3)")
    p.add_argument("--test-images", type=int, help="synthetic test scenes for PCK")
    p.add_argument("--eps", type=float, nargs="+", help="α = β values of the certified columns")
    p.add_argument("--beta-grid", type=float, nargs="+", help="ascending β grid of mean β*")
    p.add_argument("--usn-smoothness", choices=("sampled", "bounds"),
                   help="USN smoothness term of the USN rows (default: sampled)")
    p.add_argument("--usn-gamma", type=float, help="USN weight of the stability ratio, 0..1 (default 0.5)")
    add_robust_args(p)
    p.set_defaults(func=run_experiment)

    p = sub.add_parser("tradeoff", help="PCK@3px vs certified accuracy of models at several ε: table + PNG")
    p.add_argument("--models", nargs="+", help="checkpoints (default: the shipped dense model)")
    p.add_argument("--labels", nargs="+", help="one label per model (default: file stems)")
    p.add_argument("--out", default="results/certifiability", help="results folder")
    p.add_argument("--eps", type=float, nargs="+", help="α = β values certified (default 0.02 0.05 0.1)")
    p.add_argument("--frames", type=int, help="synthetic test scenes certified per ε (default 64)")
    p.add_argument("--first-frame", type=int,
                   help="certify test scenes from this index on (a held-out range for a check of a choice)")
    p.add_argument("--radius", type=float, help="disk radius r in frame px (default 4)")
    p.add_argument("--budget-ms", type=float, help="certification budget per frame (default 1000)")
    p.add_argument("--no-budget", action="store_true",
                   help="no time budget: every keypoint is decided, numbers do not depend on machine load")
    p.add_argument("--max-depth", type=int, help="native branch-and-bound depth cap (splits per sub-box; default: certify's)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default 1)")
    p.add_argument("--merge", nargs="+", help="only combine these results.json files (same settings) into --out")
    p.set_defaults(func=run_tradeoff)

    p = sub.add_parser("pooled-paired", help="paired comparison of tradeoff results pooled over files (e.g. seeds)")
    p.add_argument("files", nargs="+", help="tradeoff results.json files, same row order")
    p.set_defaults(func=run_pooled_paired)

    p = sub.add_parser("bench-certify", help="benchmark every certification backend/method (markdown table)")
    p.add_argument("--out", default="results/bench_certify.md")
    p.add_argument("--frames", type=int, default=8, help="synthetic test frames per model")
    p.add_argument("--lirpa-frames", type=int, default=4, help="frames for the (slow) auto_LiRPA methods")
    p.add_argument("--radius", type=float, default=4.0)
    p.add_argument("--train-steps", type=int, default=1500, help="training steps of the bench detector (cached)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--model", action="append", help="extra checkpoint to benchmark (repeatable; default: the shipped model)")
    p.add_argument("--eps", type=float, nargs="+", help="α = β boxes to benchmark (default 0.005 0.02 0.05 0.1)")
    p.add_argument("--real-frames", type=int, default=13, help="left* photos of the real-frame rows (0: none)")
    p.add_argument("--real-synthetic", type=int, default=8, help="full-size synthetic scenes of the real-frame rows")
    p.add_argument("--real-eps", type=float, nargs="+", default=[0.02, 0.05, 0.1], help="α = β of the real-frame rows")
    p.add_argument("--real-budgets", type=float, nargs="*", default=[120.0, 1000.0],
                   help="per-frame budgets (ms) run for the real-frame rows")
    p.add_argument("--real-derived", type=float, nargs="*", default=[10000.0],
                   help="budgets (ms) read off the capped run's decision times")
    p.add_argument("--real-cap-s", type=float, default=60.0, help="the 'no budget' cap per frame (s)")
    p.add_argument("--cpu-clock", action="store_true",
                   help="budgets and times on the certifying thread's CPU time (a shared, loaded machine)")
    p.set_defaults(func=run_bench_certify)

    p = sub.add_parser("certify-timing", help="certification time per frame of several checkpoints, alternating")
    p.add_argument("models", nargs="+", help="checkpoints (.safetensors)")
    p.add_argument("--frames", type=int, default=20, help="synthetic test scenes")
    p.add_argument("--eps", type=float, default=0.02, help="α = β")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="also write the table here")
    p.set_defaults(func=run_certify_timing)

    p = sub.add_parser("own-model-speed", help="certification time of the shipped default: native vs imported "
                                               "nn.Module vs imported ONNX (markdown table)")
    p.add_argument("--out", default="results/own_model", help="results folder")
    p.add_argument("--frames", type=int, help="synthetic test frames (default 16)")
    p.add_argument("--repeats", type=int, help="runs per frame and copy, the best counts (default 2)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default 1)")
    p.set_defaults(func=run_own_model_speed)

    p = sub.add_parser("box-pass-cost", help="time of one full-frame bound pass per sub-box (markdown table)")
    p.add_argument("models", nargs="+", help="checkpoints (.safetensors)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 25, 64], help="sub-boxes per pass")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--budget-ms", type=float, default=200.0, help="per-frame budget the last column counts in")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="results/box_pass_cost.md")
    p.set_defaults(func=run_box_pass_cost)

    p = sub.add_parser("frontier", help="accuracy / certification trade-off of tradeoff results: table + plot")
    p.add_argument("results", nargs="+", help="tradeoff results.json files decided without a budget")
    p.add_argument("--out", default="results/certifiability_subbox/frontier", help="results folder")
    p.set_defaults(func=run_frontier)

    p = sub.add_parser("stream-check", help="certify camera_source's synthetic stream offline (no budget)")
    p.add_argument("--model", help="checkpoint (default: the shipped certified model)")
    p.add_argument("--frames", type=int, default=15, help="stream frames (every 4th of the first 4·N)")
    p.add_argument("--eps", type=float, default=0.02, help="α = β")
    p.add_argument("--radii", type=float, nargs="+", default=[4.0, 20.0, 40.0], help="radii in frame px")
    p.set_defaults(func=run_stream_check)

    p = sub.add_parser("real-frontier", help="real left* PCK vs certified rate within budgets: table + plot")
    p.add_argument("--models", nargs="+", help="checkpoints")
    p.add_argument("--labels", nargs="+", help="one label per model (default: file stems)")
    p.add_argument("--out", default="results/models_real", help="results folder")
    p.add_argument("--eps", type=float, nargs="+", default=[0.02], help="α = β values certified")
    p.add_argument("--budgets", nargs="+", default=["120", "1000", "none"],
                   help="per-frame budgets in ms ('none': no budget); the first is the paired column "
                        "(default: the node's 120, 1000, none)")
    p.add_argument("--radius", type=float, default=4.0, help="disk radius r in frame px")
    p.add_argument("--frames", type=int, help="only the first N real photos (quick checks)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--merge", nargs="+", help="only combine these results.json files (same settings) into --out")
    p.set_defaults(func=run_real_frontier)
    p = sub.add_parser("real-pruning", help="pruning criteria judged on the real left* photos (certified rate "
                                            "within budgets, time to a complete certificate, PCK): table + plot")
    p.add_argument("--parent", help="checkpoint to prune (default: the shipped default model)")
    p.add_argument("--teacher", help="distillation teacher of every fine-tuning (default: the shipped dense model; "
                                     "'none': off)")
    p.add_argument("--out", default="results/pruning_real", help="results folder (resumable)")
    p.add_argument("--methods", nargs="+", help="subset of: USN+W, 'USN (λ=0)', BN-scale, Taylor, random, "
                                                      "'no pruning' (the control: the same fine-tuning; default: all)")
    p.add_argument("--sparsities", type=float, nargs="+", help="channel sparsities (default 0.25 0.5 0.75)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default 0 1 2)")
    p.add_argument("--evaluate-sparsities", type=float, nargs="+",
                   help="evaluate every seed only at these sparsities (the others: the first seed)")
    p.add_argument("--steps-per-round", type=int, help="fine-tune steps per pruning round (default 30)")
    p.add_argument("--recovery-steps", type=int, help="fine-tune steps at each sparsity (default 100)")
    p.add_argument("--train-images", type=int, help="photographed-print training scenes (default 6000)")
    p.add_argument("--cap-ms", type=float, help="per-frame cap of the anytime run (default 5000)")
    p.add_argument("--frames", type=int, help="only the first N real photos (quick checks)")
    p.add_argument("--wall-clock", action="store_true", help="budgets on wall-clock time (default: CPU time)")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes (one thread each)")
    add_robust_args(p)
    p.set_defaults(func=run_real_pruning)
    p = sub.add_parser("diagnose-bounds", help="where the bounds are lost on real photos: per layer and "
                                               "keypoint as the θ sub-box shrinks (markdown + JSON)")
    _add_real_frame_args(p)
    p.add_argument("--out", default="results/diagnosis", help="results folder")
    p.set_defaults(func=run_diagnose_bounds)

    p = sub.add_parser("exact-verdicts", help="exact proven / refuted / open per keypoint of real photos "
                                              "(linear-region enumeration over the θ box)")
    _add_real_frame_args(p)
    p.add_argument("--time-limit", type=float, default=300.0, help="seconds per keypoint before 'open'")
    p.add_argument("--max-regions", type=int, default=200_000, help="linear regions per keypoint before 'open'")
    p.add_argument("--no-hybrid", action="store_true", help="enumerate without the sound-bound shortcut")
    p.add_argument("--out", default="results/exact", help="results folder")
    p.set_defaults(func=run_exact_verdicts)


def run_experiment(args: argparse.Namespace) -> int:
    """Run the whole pruning comparison and write the table and plots."""
    from dataclasses import replace

    from ..experiments.pruning import ExperimentConfig, results_table, run_experiment as run

    kw = given(model=args.model, seed=args.seed, threads=args.threads, jobs=args.jobs, cert_frames=args.cert_frames,
               max_depth=args.max_depth, train_images=args.train_images, steps_per_round=args.steps_per_round,
               recovery_steps=args.recovery_steps, batch_size=args.batch_size, lr=args.lr,
               test_images=args.test_images)
    for key in ("sparsities", "methods", "eps", "beta_grid", "wasserstein"):
        if getattr(args, key) is not None:
            kw[key] = tuple(getattr(args, key))
    if args.no_ablations:
        kw["ablations"] = False
    kw["robust"] = robust_config(args)
    cfg = ExperimentConfig.quick(**kw) if args.quick else ExperimentConfig(**kw)
    usn = given(smoothness=args.usn_smoothness, gamma=args.usn_gamma)
    if not args.quick:
        usn["seed"] = cfg.seed
    cfg.usn = replace(cfg.usn, **usn)
    rows = run(cfg, args.out)
    print(results_table(rows, cfg))
    print(f"wrote {Path(args.out) / 'results.md'}")
    return 0


def run_tradeoff(args: argparse.Namespace) -> int:
    from ..experiments.tradeoff import TradeoffConfig, merge_results, run_tradeoff as run, tradeoff_table
    from ..weights import DEFAULT_DENSE, shipped_model_path

    if args.merge:
        rows, cfg = merge_results(args.merge, args.out)
        print(tradeoff_table(rows, cfg))
        return 0
    paths = args.models or [str(shipped_model_path(DEFAULT_DENSE))]
    labels = args.labels or [Path(p).stem for p in paths]
    if len(labels) != len(paths):
        raise ValueError("--labels needs one label per --models entry")
    kw = given(frames=args.frames, radius=args.radius, budget_ms=args.budget_ms, max_depth=args.max_depth,
               threads=args.threads, first_frame=args.first_frame)
    if args.eps is not None:
        kw["eps"] = tuple(args.eps)
    if args.no_budget:
        kw["budget_ms"] = None
    cfg = TradeoffConfig(**kw)
    rows = run(list(zip(labels, paths)), cfg, args.out)
    print(tradeoff_table(rows, cfg))
    print(f"wrote {Path(args.out) / 'results.md'} and {Path(args.out) / 'tradeoff.png'}")
    return 0


def run_pooled_paired(args: argparse.Namespace) -> int:
    from ..experiments.tradeoff import pooled_paired

    print("\n".join(pooled_paired(args.files)))
    return 0


def run_bench_certify(args: argparse.Namespace) -> int:
    from ..experiments.bench_certify import EPSILONS, bench_certify

    table = bench_certify(args.out, frames=args.frames, lirpa_frames=args.lirpa_frames, radius=args.radius,
                          train_steps=args.train_steps, threads=args.threads, models=args.model,
                          epsilons=tuple(args.eps or EPSILONS), real_frames=args.real_frames,
                          real_synthetic=args.real_synthetic, real_eps=tuple(args.real_eps),
                          real_budgets=tuple(args.real_budgets), real_derived=tuple(args.real_derived),
                          real_cap_s=args.real_cap_s, cpu_clock=args.cpu_clock)
    print(table)
    print(f"wrote {args.out}")
    return 0


def run_certify_timing(args: argparse.Namespace) -> int:
    from ..experiments.certify_timing import certify_timing

    write_table(certify_timing(args.models, frames=args.frames, eps=args.eps, threads=args.threads), args.out)
    return 0


def run_own_model_speed(args: argparse.Namespace) -> int:
    from ..experiments.own_model_speed import SpeedConfig, run_speed, table

    print(table(run_speed(SpeedConfig(**given(frames=args.frames, repeats=args.repeats, threads=args.threads)), args.out)))
    print(f"wrote {Path(args.out) / 'results.md'}")
    return 0


def run_box_pass_cost(args: argparse.Namespace) -> int:
    from ..experiments.box_pass_cost import box_pass_cost

    table = box_pass_cost(args.models, tuple(args.batches), args.repeats, args.budget_ms, args.threads)
    write_table(table, args.out)
    return 0


def write_table(table: str, out: str | None) -> None:
    """Print a markdown table and write it to ``out`` (if given)."""
    print(table)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(table + "\n")
        print(f"wrote {out}")


def run_frontier(args: argparse.Namespace) -> int:
    from ..experiments.frontier import write_frontier

    print(write_frontier(args.results, args.out))
    print(f"wrote {Path(args.out) / 'frontier.md'} and {Path(args.out) / 'frontier.png'}")
    return 0


def run_stream_check(args: argparse.Namespace) -> int:
    from ..experiments.stream_check import stream_check

    print(stream_check(args.model, frames=args.frames, eps=args.eps, radii=tuple(args.radii)))
    return 0


def run_real_frontier(args: argparse.Namespace) -> int:
    from ..experiments.real_frontier import merge_results, run_real_frontier as run

    if args.merge:
        print(merge_results(args.merge, args.out))
        return 0
    if not args.models:
        raise ValueError("real-frontier needs --models (or --merge)")
    print(run(args.models, args.labels, args.out, args.eps, args.budgets, args.radius, args.frames, args.threads))
def run_real_pruning(args: argparse.Namespace) -> int:
    from ..experiments.real_pruning import METHODS, NO_PRUNING, RealPruningConfig, run_real_pruning as run
    from ..weights import DEFAULT_DENSE, default_model_path, shipped_model_path

    bad = set(args.methods or ()) - {*METHODS, NO_PRUNING}
    if bad:
        raise ValueError(f"unknown methods {sorted(bad)} (choose from {[*METHODS, NO_PRUNING]})")
    teacher = None if args.teacher == "none" else (args.teacher or str(shipped_model_path(DEFAULT_DENSE)))
    robust = robust_config(args)
    cfg = RealPruningConfig(parent=args.parent or str(default_model_path()), teacher=teacher,
                            cpu_clock=not args.wall_clock, jobs=args.jobs,
                            **given(methods=tuple(args.methods) if args.methods else None,
                                    sparsities=tuple(args.sparsities) if args.sparsities else None,
                                    seeds=tuple(args.seeds) if args.seeds else None,
                                    evaluate_sparsities=tuple(args.evaluate_sparsities) if args.evaluate_sparsities else None,
                                    steps_per_round=args.steps_per_round, recovery_steps=args.recovery_steps,
                                    train_images=args.train_images, cap_ms=args.cap_ms, robust=robust,
                                    frames=args.frames))
    print(run(cfg, args.out))
    return 0


def run_diagnose_bounds(args: argparse.Namespace) -> int:
    from ..experiments.diagnose_bounds import diagnose_bounds

    print(diagnose_bounds(args.frames.split(","), args.out, args.model, args.alpha, args.beta, args.radius))
    print(f"wrote {args.out}")
    return 0


def run_exact_verdicts(args: argparse.Namespace) -> int:
    from ..experiments.exact_verdicts import exact_verdicts

    print(exact_verdicts(args.frames.split(","), args.out, args.model, args.alpha, args.beta, args.radius,
                         args.time_limit, args.max_regions, not args.no_hybrid))
    return 0
