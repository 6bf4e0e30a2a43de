"""Benchmark: the cost of one full-frame bound pass per sub-box (the unit the native certifier spends
its time in). For every model: the mean time of ``propagate`` over a batch of N sub-boxes on one
synthetic test frame, per sub-box, next to the time of one plain forward pass, and the number of
sub-box passes that fit in a per-frame budget. Returns a markdown table.

    usn-keypoints box-pass-cost MODEL [MODEL ...] --out results/box_pass_cost.md
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..certify.bounds import propagate
from ..certify.native import make_plan
from ..data import SceneConfig, generate_split
from ..model import KeypointModel, load_detector
from ..perturbation import PerturbationBox


def seconds(fn: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Mean time of ``fn()`` on ``clock`` over ``repeats`` calls after one warm-up call."""
    fn()  # warm-up
    t0 = clock()
    for _ in range(repeats):
        fn()
    return (clock() - t0) / repeats


def box_pass_cost(models: list[str], batches: tuple[int, ...] = (1, 4, 16, 25, 64), repeats: int = 5,
                  budget_ms: float = 200.0, threads: int = 1) -> str:
    """The table of the module docstring (sub-boxes of α = β = 0.02, forms without a trace)."""
    torch.set_num_threads(threads)
    lines = ["| model | input | forward ms | " + " | ".join(f"ms/sub-box, batch {n}" for n in batches)
             + f" | sub-boxes in {budget_ms:g} ms |", "|---" * (4 + len(batches)) + "|"]
    for path in models:
        det, _ = load_detector(path)
        km = KeypointModel(det.eval(), device="cpu")
        c = det.config
        frames, _ = generate_split("test", 1, SceneConfig(c.input_width, c.input_height), progress=False)
        x0, _ = km.preprocess(frames[0])
        layers = make_plan(det).layers
        box = PerturbationBox(0.02, 0.02).tensor(x0.dtype)
        with torch.no_grad():
            fwd = seconds(lambda: det(x0), 4 * repeats)
            per_box = [seconds(lambda: propagate(layers, x0, box.expand(n, 4)), repeats) / n for n in batches]
        lines.append(f"| {Path(path).stem} | {c.input_width}×{c.input_height} | {1000 * fwd:.1f} | "
                     + " | ".join(f"{1000 * t:.1f}" for t in per_box) + f" | {int(budget_ms / 1000 / min(per_box))} |")
    head = (f"Full-frame bound pass per sub-box (forward-mode forms, no trace), one synthetic test frame, "
            f"{threads} torch thread(s), mean of {repeats} repeats after a warm-up.\n\n")
    return head + "\n".join(lines)
