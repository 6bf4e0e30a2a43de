"""Progressive pruning schedule: rounds of score -> remove a fraction -> fine-tune, to target sparsity.

Every method gets the same schedule and fine-tuning budget. Round ``r`` removes
``round_fraction`` of the *original* hidden channels (the last round stops at the target), so the
trajectory passes through every requested sparsity; at each one a copy is taken and fine-tuned
``recovery_steps`` more (task loss only) — that copy is the result at that sparsity.

One round, with ``lambda = 0`` (plain):    fine-tune ``steps_per_round`` -> score -> remove.
One round, with ``lambda > 0`` (USN + W):  score -> mark the channels to remove -> fine-tune
``steps_per_round`` with task loss + ``lambda * W`` (wasserstein.py: gates of the marked channels
driven to 0) -> remove the marked channels.

Fine-tuning (:func:`fine_tune`) is the project's training step (``train.train_detector``: same
targets, task loss, brightness/contrast augmentation, AdamW + one-cycle schedule). The
``lambda * W`` term is minimised by a separate plain gradient step of size ``w_lr`` on the BN
gates after each AdamW step (decoupled, like AdamW's weight decay; annealed with the lr): Adam normalises gradient
magnitudes, so inside Adam the strength of the term would not depend on ``lambda`` and a gate
could move only ``lr`` per step.
The same global allocation rule (surgery.select_channels) applies to every criterion.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch_pruning as tp
from tqdm import tqdm

from ..model.detector import HeatmapDetector
from ..perturbation import PerturbationBox
from ..train import DEFAULT_AUGMENT, heatmap_targets, task_loss, train_detector
from .baselines import BASELINES, accumulate_gradients, baseline_importance
from .surgery import UsnImportance, channel_importance, count_hidden_channels, dependency_graph, remove_channels, select_channels
from .usn import LayerScores, UsnConfig, hidden_convs, usn_scores
from .wasserstein import VARIANTS, wasserstein_loss

METHODS = ("usn",) + BASELINES


@dataclass
class ScheduleConfig:
    """Progressive pruning settings (identical for every method in a comparison)."""

    method: str = "usn"
    targets: tuple[float, ...] = (0.5,)
    round_fraction: float = 0.125
    steps_per_round: int = 30
    recovery_steps: int = 60
    wasserstein: float = 0.0
    w_variant: str = "assigned"
    w_lr: float = 1.0
    batch_size: int = 16
    lr: float = 1e-3
    min_keep: float = 0.125  # every layer keeps at least this fraction of its original width
    calib_images: int = 32
    taylor_batches: int = 4
    seed: int = 0
    usn: UsnConfig = field(default_factory=UsnConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not self.targets or not all(0 < t < 1 for t in self.targets):
            raise ValueError("targets must be channel sparsities in (0, 1)")
        if self.w_variant not in VARIANTS:
            raise ValueError(f"w_variant must be one of {VARIANTS}")
        if self.wasserstein < 0 or not 0 < self.round_fraction <= 1:
            raise ValueError("wasserstein must be >= 0 and round_fraction in (0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PruneResult:
    """The fine-tuned pruned detector at one target sparsity."""

    sparsity: float
    detector: HeatmapDetector
    channels: list[int]
    removed: list[list[list[int]]]  # per round, per layer (indices before that round)


def round_plan(total: int, targets: tuple[float, ...], round_fraction: float) -> list[int]:
    """Cumulative numbers of removed channels after each round (every target is one of them)."""
    top = max(targets)
    fracs = set(np.round(np.arange(round_fraction, top + 1e-9, round_fraction), 6)) | set(targets)
    counts = sorted({int(round(f * total)) for f in fracs if f <= top + 1e-9})
    return [c for c in counts if c > 0]


def trajectory_steps(detector: HeatmapDetector, config: ScheduleConfig) -> int:
    """Fine-tuning steps :func:`progressive_prune` takes on ``detector``: every round plus the
    recovery at every target (e.g. the length of an ``extra_loss`` ramp)."""
    rounds = len(round_plan(count_hidden_channels(detector), config.targets, config.round_fraction))
    return rounds * config.steps_per_round + len(config.targets) * config.recovery_steps


def fine_tune(model: HeatmapDetector, images: np.ndarray, keypoints: np.ndarray, steps: int, batch_size: int,
              lr: float, seed: int, gate_loss=None, w_lr: float = 1.0, weight_decay: float = 1e-4,
              augment: PerturbationBox = DEFAULT_AUGMENT, progress: bool = True,
              desc: str = "fine-tune", extra_loss=None, teacher: HeatmapDetector | None = None,
              distill_weight: float = 0.0) -> list[float]:
    """Fine-tune ``model`` in place with :func:`train.train_detector` on the model's device
    (``teacher``/``distill_weight``: its distillation term). If
    ``gate_loss(model)`` is given, each step is followed by
    ``gate -= w_lr * (lr_t / lr) * d gate_loss / d gate`` on the hidden BN weights (the step
    follows the one-cycle lr, so it anneals). ``extra_loss(model)`` (e.g. the certifiability term
    of certify.training_loss) is added to the task loss. Returns the task losses."""
    gate_step = None
    if gate_loss is not None:
        gates = [bn.weight for _, _, bn in hidden_convs(model)]

        def gate_step(m: HeatmapDetector, lr_scale: float) -> None:
            w = gate_loss(m)
            if w.requires_grad:
                grads = torch.autograd.grad(w, gates, allow_unused=True)
                with torch.no_grad():
                    for g, d in zip(gates, grads):
                        if d is not None:
                            g.sub_(w_lr * lr_scale * d)

    return train_detector(model, images, keypoints, steps=steps, batch_size=batch_size, lr=lr,
                          weight_decay=weight_decay, seed=seed, device=str(next(model.parameters()).device),
                          augment=augment, extra_loss=extra_loss, after_step=gate_step, progress=progress,
                          teacher=teacher, distill_weight=distill_weight, desc=desc, leave=False)


def calibration_set(images: np.ndarray, keypoints: np.ndarray, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n`` calibration inputs ``(n, 1, h, w)`` in [0, 1] and their keypoints ``(n, K, 2)`` that
    every data-driven criterion (USN, Taylor) scores on: a permutation of the training images
    seeded by ``seed`` (not the first ``n``, which may all be alike)."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=gen)[:n].numpy()
    calib = torch.from_numpy(images[idx]).float().div(255.0).unsqueeze(1)
    return calib, torch.from_numpy(np.asarray(keypoints[idx], np.float32))


class _Criterion:
    """Builds the Torch-Pruning importance of a method for the current model; ``on_scores(round,
    scores, usn_config)`` sees the USN scores of every round (the ones that prune) and their settings."""

    def __init__(self, cfg: ScheduleConfig, images: np.ndarray, keypoints: np.ndarray,
                 on_scores: Callable[[int, list[LayerScores], UsnConfig], None] | None = None) -> None:
        self.cfg = cfg
        self.calib, self.calib_kp = calibration_set(images, keypoints, cfg.calib_images, cfg.seed)
        self.on_scores = on_scores
        self.rounds = 0

    def __call__(self, model: HeatmapDetector) -> tp.importance.Importance:
        cfg = self.cfg
        self.rounds += 1
        dev = next(model.parameters()).device
        if cfg.method == "usn":
            ucfg = self.usn_config()
            scores = usn_scores(model, self.calib.to(dev), ucfg)
            if self.on_scores is not None:
                self.on_scores(self.rounds, scores, ucfg)
            return UsnImportance.from_layer_scores(model, scores)
        if cfg.method == "taylor":
            bs = max(1, len(self.calib) // cfg.taylor_batches)
            batches = [(self.calib[i : i + bs].to(dev), self.calib_kp[i : i + bs].to(dev))
                       for i in range(0, len(self.calib), bs)][: cfg.taylor_batches]
            accumulate_gradients(model, lambda m, b: task_loss(m(b[0]), heatmap_targets(b[1], m.config)), batches)
        return baseline_importance(cfg.method, seed=cfg.seed * 1000 + self.rounds)

    def usn_config(self) -> UsnConfig:
        """The USN settings of the current round (a fresh theta seed per round)."""
        return replace(self.cfg.usn, seed=self.cfg.usn.seed + self.rounds)


def _select(model: HeatmapDetector, importance: tp.importance.Importance, n: int, floors: list[int],
            gen: torch.Generator) -> list[list[int]]:
    return select_channels(channel_importance(model, importance, dependency_graph(model)), n, floors, gen)


def progressive_prune(detector: HeatmapDetector, images: np.ndarray, keypoints: np.ndarray,
                      config: ScheduleConfig, progress: bool = True, extra_loss=None,
                      on_scores: Callable[[int, list[LayerScores], UsnConfig], None] | None = None,
                      teacher: HeatmapDetector | None = None, distill_weight: float = 0.0) -> list[PruneResult]:
    """Prune a copy of ``detector`` progressively; one :class:`PruneResult` per target sparsity.

    ``images`` (N, h, w) uint8 and ``keypoints`` (N, K, 2) (network-input pixels) are the
    fine-tuning and calibration data (training split only; calibration: :func:`calibration_set`);
    ``extra_loss`` and the distillation from ``teacher`` (weight ``distill_weight``) go to every
    fine-tuning; ``on_scores(round, scores, usn_config)`` (rounds from
    1) is called with the USN scores each round prunes by and their settings (e.g. to save them)."""
    cfg = config
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = copy.deepcopy(detector)
    total = count_hidden_channels(model)
    floors = [max(1, int(round(cfg.min_keep * c.out_channels))) for _, c, _ in hidden_convs(model)]
    plan = round_plan(total, cfg.targets, cfg.round_fraction)
    targets = {int(round(t * total)): t for t in cfg.targets}
    criterion = _Criterion(cfg, images, keypoints, on_scores)
    bns = lambda m: [bn for _, _, bn in hidden_convs(m)]  # noqa: E731
    removed_so_far, history, results = 0, [], []
    fit = dict(batch_size=cfg.batch_size, lr=cfg.lr, progress=progress, extra_loss=extra_loss, teacher=teacher,
               distill_weight=distill_weight)
    bar = tqdm(plan, desc=f"prune {cfg.method}" + (f"+W{cfg.wasserstein:g}" if cfg.wasserstein else ""),
               unit="round", disable=not progress)
    for r, count in enumerate(bar):
        n = count - removed_so_far
        gate_loss = None
        if cfg.wasserstein > 0:
            marked = _select(model, criterion(model), n, floors, gen)
            masks = [torch.tensor(m, dtype=torch.long) for m in marked]
            gate_loss = lambda m, masks=masks: cfg.wasserstein * wasserstein_loss(bns(m), masks, cfg.w_variant)  # noqa: E731
        fine_tune(model, images, keypoints, steps=cfg.steps_per_round, seed=cfg.seed * 100 + r, gate_loss=gate_loss,
                  w_lr=cfg.w_lr, desc=f"round {r + 1} fine-tune" + ("+W" if gate_loss else ""), **fit)
        removal = marked if gate_loss is not None else _select(model, criterion(model), n, floors, gen)
        remove_channels(model, removal)
        model.zero_grad(set_to_none=True)
        history.append(removal)
        removed_so_far = count
        bar.set_postfix(channels=count_hidden_channels(model))
        if count in targets:
            snap = copy.deepcopy(model)
            fine_tune(snap, images, keypoints, steps=cfg.recovery_steps, seed=cfg.seed * 100 + 50 + r,
                      desc=f"recovery @{targets[count]:.0%}", **fit)
            snap.sync_config()
            results.append(PruneResult(targets[count], snap.cpu().eval(), list(snap.config.channels),
                                       copy.deepcopy(history)))
    return results
