"""Accuracy of a detector: PCK@r and mean pixel error in network-input pixels, per keypoint,
with the target's symmetries handled (each image is scored under its best keypoint permutation),
and certified accuracy (correct *and* certified, :func:`certified_accuracy`)."""

from __future__ import annotations

import math
import sys
import time
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


def paired_test(a: list[int], b: list[int]) -> tuple[int, int, float]:
    """Exact McNemar test of two 0/1 outcome vectors on the same trials (e.g. certified-and-correct
    per keypoint for two models on the same frames): ``(only_a, only_b, p)``, ``p`` the two-sided
    binomial probability of a split at least this uneven among the discordant trials."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need the same trials, got {len(a)} and {len(b)}")
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    n = only_a + only_b
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
    return only_a, only_b, min(1.0, 2 * tail)


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


@dataclass
class CertifiedAccuracy:
    """Certification of keypoints against their ground truth at one box ``alpha = beta = eps``."""

    eps: float
    rate: float  # share certified (right or wrong)
    ms_per_frame: float  # mean certification time
    correct: list[int]  # per keypoint: 1 if within the tolerance of the ground truth *and* certified

    @property
    def accuracy(self) -> float:
        """Share of keypoints within the tolerance of the ground truth *and* certified."""
        return float(np.mean(self.correct))

    @property
    def keypoints(self) -> int:
        """Keypoints scored."""
        return len(self.correct)

    def as_row(self) -> dict:
        """The keys results tables use: ``cert_acc@eps``, ``cert_rate@eps``, ``cert_ms@eps``,
        ``cert_keypoints`` and the per-keypoint outcomes ``cert_correct@eps`` (for paired tests)."""
        return {f"cert_acc@{self.eps:g}": self.accuracy, f"cert_rate@{self.eps:g}": self.rate,
                f"cert_ms@{self.eps:g}": self.ms_per_frame, "cert_keypoints": self.keypoints,
                f"cert_correct@{self.eps:g}": self.correct}


def certified_accuracy(model: KeypointModel, images: np.ndarray, keypoints: np.ndarray, eps: tuple[float, ...], *,
                       radius: float = 4.0, tolerance: float = 3.0, symmetries: list[list[int]] | None = None,
                       backend: str = "native", budget_ms: float | None = None, max_depth: int | None = None,
                       progress: bool = False,
                       desc: str = "certify") -> list[CertifiedAccuracy]:
    """Certify every frame of ``images`` (N, h, w) at the model's input size, with ground truth
    ``keypoints`` (N, K, 2), at ``alpha = beta = e`` for each ``e`` in ``eps`` (radius ``radius``
    px, margins off; an ``UNKNOWN`` keypoint counts as not certified; ``max_depth`` as in
    :func:`~usn_robust_keypoints.certify.certify`). One warm-up call is not timed."""
    from .certify import certify

    cfg = model.config
    if len(images) == 0 or tuple(images.shape[1:3]) != (cfg.input_height, cfg.input_width):
        raise ValueError(f"need frames at the model's input size {cfg.input_width}x{cfg.input_height}, "
                         f"got shape {tuple(images.shape)}")
    symmetries = symmetries or [list(range(cfg.num_keypoints))]
    kw = dict(radius=radius, backend=backend, budget_ms=budget_ms, margins=False, max_depth=max_depth)
    certify(model, images[0], alpha=eps[0], beta=eps[0], **kw)  # warm-up
    out = []
    for e in eps:
        acc, ok, times = [], [], []
        for i in tqdm(range(len(images)), desc=f"{desc} eps={e:g}", unit="frame", leave=False, disable=not progress):
            t0 = time.perf_counter()
            fc = certify(model, images[i], alpha=e, beta=e, **kw)
            times.append((time.perf_counter() - t0) * 1000)
            pred = np.array([[k.x, k.y] for k in fc.keypoints])
            err = keypoint_errors(pred, np.asarray(keypoints[i], np.float64), symmetries)
            cert = np.array([k.certified for k in fc.keypoints])
            ok += list(cert)
            acc += list(cert & (err <= tolerance))
        out.append(CertifiedAccuracy(e, float(np.mean(ok)), float(np.mean(times)), [int(x) for x in acc]))
    return out


EVAL_SETS = ("real-left", "real-right", "synthetic-test")


def load_eval_set(name: str | None, coco: str | None = None) -> tuple[list[np.ndarray], np.ndarray, list[list[int]]]:
    """Frames, keypoints (N, K, 2) in frame pixels and symmetries of an evaluation set: a COCO-keypoints
    JSON ``coco``, or ``name`` in :data:`EVAL_SETS` (``real-right`` is held out for independent checks)."""
    from .data import CHESSBOARD_9X6, build_real_set, generate_split, load_coco

    if coco is None and name == "synthetic-test":
        images, kps = generate_split("test", 500)
        return list(images), kps, CHESSBOARD_9X6.symmetries
    if coco is None:
        if name not in EVAL_SETS:
            raise ValueError(f"unknown evaluation set {name!r}; choose one of {', '.join(EVAL_SETS)}")
        if name == "real-right":
            print("note: right* photos are reserved for independent checks; never tune on them", file=sys.stderr)
        coco = build_real_set(name.split("-")[1])
    records, _, symmetries = load_coco(coco)
    return [r.load() for r in records], np.stack([r.keypoints for r in records]), symmetries
