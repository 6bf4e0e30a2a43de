"""Accuracy of a detector: PCK@r and mean pixel error in network-input pixels, per keypoint,
with the target's symmetries handled (each image is scored under its best keypoint permutation)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from .model import KeypointModel


@dataclass
class Evaluation:
    """Errors (N, K) in model-input pixels and the summary metrics derived from them."""

    errors: np.ndarray
    keypoint_names: list[str]
    thresholds: tuple[float, ...] = (3.0,)
    time_ms: list[float] = field(default_factory=list)

    def pck(self, r: float) -> float:
        """Fraction of keypoints within ``r`` input pixels of the ground truth."""
        return float(np.mean(self.errors <= r))

    @property
    def mean_error(self) -> float:
        return float(np.mean(self.errors))

    def to_dict(self) -> dict:
        return {"images": int(self.errors.shape[0]), "mean_error_px": self.mean_error,
                **{f"pck@{r:g}px": self.pck(r) for r in self.thresholds},
                "per_keypoint": {n: {"mean_error_px": float(np.mean(self.errors[:, k])),
                                     **{f"pck@{r:g}px": float(np.mean(self.errors[:, k] <= r)) for r in self.thresholds}}
                                 for k, n in enumerate(self.keypoint_names)}}

    def table(self) -> str:
        """Markdown table: one row per keypoint and an ``all`` row."""
        cols = [f"PCK@{r:g}px" for r in self.thresholds]
        lines = ["| keypoint | " + " | ".join(cols) + " | mean error (px) |",
                 "|---|" + "---|" * (len(cols) + 1)]
        for k, n in enumerate(self.keypoint_names + ["all"]):
            e = self.errors if n == "all" else self.errors[:, k]
            vals = " | ".join(f"{np.mean(e <= r):.3f}" for r in self.thresholds)
            lines.append(f"| {n} | {vals} | {np.mean(e):.2f} |")
        return "\n".join(lines)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95 % for ``z = 1.96``) of a proportion ``successes / n``; ``(nan, nan)``
    for ``n = 0``. Used to show how far a rate measured on a few dozen keypoints can be trusted."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def format_rate(rate: float, n: int) -> str:
    """``rate`` with its 95 % Wilson interval over ``n`` trials, e.g. ``0.312 (0.21–0.44)``; the bare
    rate when ``n`` is unknown (0), ``—`` for nan."""
    if rate is None or math.isnan(rate):
        return "—"
    if n <= 0:
        return f"{rate:.3f}"
    lo, hi = wilson_interval(round(rate * n), n)
    return f"{rate:.3f} ({lo:.2f}–{hi:.2f})"


def keypoint_errors(pred: np.ndarray, gt: np.ndarray, symmetries: list[list[int]]) -> np.ndarray:
    """Per-keypoint distances (K,) under the symmetry permutation with the smallest mean error."""
    best = None
    for perm in symmetries:
        d = np.linalg.norm(pred - gt[perm], axis=-1)
        if best is None or d.mean() < best.mean():
            best = d
    return best


def evaluate_model(model: KeypointModel, images: list[np.ndarray] | np.ndarray, keypoints: np.ndarray,
                   symmetries: list[list[int]] | None = None, thresholds: tuple[float, ...] = (3.0,),
                   progress: bool = True) -> Evaluation:
    """Run ``model`` on frames (any size) with ground-truth keypoints (N, K, 2) in frame pixels."""
    import time

    symmetries = symmetries or [list(range(model.config.num_keypoints))]
    errors, times = [], []
    for img, gt in tqdm(list(zip(images, keypoints)), desc="evaluate", disable=not progress, unit="img"):
        t0 = time.perf_counter()
        p = model.predict(img)
        times.append((time.perf_counter() - t0) * 1000)
        pred_in = p.geometry.frame_to_input(p.keypoints)
        gt_in = p.geometry.frame_to_input(np.asarray(gt, np.float64))
        errors.append(keypoint_errors(pred_in, gt_in, symmetries))
    return Evaluation(np.array(errors), model.keypoint_names, tuple(thresholds), times)
