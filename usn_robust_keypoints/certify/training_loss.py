"""Certifiability training: a loss on the certified margin, from the certifier's own bounds.

For every keypoint with ground-truth heatmap cell ``q`` the term is

    softplus(target - min over the box, over cells s outside the disk of [H_q - H_s])

where the min is the sound lower bound :func:`.batch.worst_margins` computes from the native
forward-mode affine bounds over the whole box ``c in [1-eps, 1+eps]``, ``b in [-eps, eps]`` (the
same code the certifier runs; a margin > 0 *is* a certificate of that keypoint at that box with
``q`` as the dominating cell). ``eps`` ramps linearly from 0 to ``eps`` over the first ``ramp``
fraction of the steps; the term is weighted by ``kappa`` and evaluated on ``batch`` training images
per step (without augmentation: the box itself is the perturbation). BatchNorm statistics are
frozen while the term is active (:func:`freeze_batchnorm`).

Use :class:`RobustnessTerm` as ``extra_loss`` of :func:`usn_robust_keypoints.train.train_detector`
or of the pruning schedule's fine-tuning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..model.preprocess import pixels_to_grid
from .batch import worst_margins
from .bounds import net_input_clamp
from .native import first_tiles


FORMS = ("softplus", "log")


@dataclass
class RobustConfig:
    """Settings of the robustness term (``radius`` in network-input pixels, like the certifier's
    ``radius`` on frames at the model's input size)."""

    kappa: float = 0.3
    eps: float = 0.1
    ramp: float = 0.5
    batch: int = 8
    radius: float = 4.0
    target: float = 0.5
    form: str = "softplus"  # "log": log1p(softplus(target - m)), scale-free while margins are far below 0
    splits: int = 1  # bound a splits x splits grid of sub-boxes (the certifier splits the box too)
    sub_eps: float = 0.0  # > 0: bound one random sub-box of this half-width inside the box per image
    first_tiles: bool = False  # bound one of the certifier's first tiles of the box per image (native.first_tiles)

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {self.form!r}")
        if not self.kappa >= 0 or not 0 <= self.eps < 1:
            raise ValueError(f"need kappa >= 0 and 0 <= eps < 1, got kappa={self.kappa}, eps={self.eps}")
        if not 0 <= self.ramp <= 1 or self.batch < 1 or not self.radius >= 0 or self.splits < 1:
            raise ValueError("need 0 <= ramp <= 1, batch >= 1, radius >= 0 and splits >= 1")
        if not 0 <= self.sub_eps < 1 or (self.sub_eps > 0 and self.splits > 1):
            raise ValueError("need 0 <= sub_eps < 1, and splits = 1 when sub_eps > 0")
        if self.first_tiles and (self.sub_eps > 0 or self.splits > 1):
            raise ValueError("first_tiles bounds the certifier's first tiles: it needs sub_eps = 0 and splits = 1")

    def eps_at(self, step: int, steps: int) -> float:
        """The ramped box half-width at ``step`` of ``steps``."""
        ramp_steps = self.ramp * steps
        return self.eps if ramp_steps <= 0 else self.eps * min(1.0, (step + 1) / ramp_steps)

    def to_dict(self) -> dict:
        return asdict(self)


def keypoint_cells(keypoints: torch.Tensor, stride: int, heatmap_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmap cells ``(N, K, 2) = (row, col)`` of keypoints ``(N, K, 2)`` in input pixels (the cell
    whose centre is nearest, as the Gaussian target's peak) and a validity mask ``(N, K)`` (finite
    and inside the heatmap)."""
    h, w = heatmap_size
    cell_xy = torch.round(pixels_to_grid(keypoints, stride))
    valid = torch.isfinite(cell_xy).all(-1)
    cell_xy = torch.nan_to_num(cell_xy, nan=-1.0)
    valid &= (cell_xy[..., 0] >= 0) & (cell_xy[..., 0] < w) & (cell_xy[..., 1] >= 0) & (cell_xy[..., 1] < h)
    cells = torch.stack([cell_xy[..., 1], cell_xy[..., 0]], dim=-1).clamp_min(0).long()
    cells[..., 0].clamp_(max=h - 1)
    cells[..., 1].clamp_(max=w - 1)
    return cells, valid


def random_sub_boxes(n: int, eps: float, sub_eps: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` boxes ``(n, 4) = (c_lo, c_hi, b_lo, b_hi)`` of half-width ``min(sub_eps, eps)``, placed
    uniformly at random inside ``c in [1-eps, 1+eps]``, ``b in [-eps, eps]``."""
    w = min(sub_eps, eps)
    centre = (torch.rand(n, 2, generator=generator, dtype=torch.float64) * 2 - 1) * (eps - w)
    c, b = 1.0 + centre[:, 0], centre[:, 1]
    return torch.stack([c - w, c + w, b - w, b + w], dim=1)


def random_first_tiles(x: torch.Tensor, tau: float, eps: float, generator: torch.Generator) -> torch.Tensor:
    """For every input of ``x (N, 1, h, w)``, one of the tiles the certifier's first round bounds over
    ``c in [1-eps, 1+eps]``, ``b in [-eps, eps]`` (:func:`.native.first_tiles`), at random: θ maps ``(N, 2, 3)``."""
    box = (1.0 - eps, 1.0 + eps, -eps, eps)
    out = []
    for xi in x:
        tiles = first_tiles(xi.unsqueeze(0), tau, box)
        out.append(tiles[int(torch.randint(len(tiles), (1,), generator=generator))])
    return torch.stack(out)


def robustness_loss(detector: nn.Module, x: torch.Tensor, cells: torch.Tensor, valid: torch.Tensor, eps: float,
                    radius_cells: float, target: float = 0.5, form: str = "softplus",
                    splits: int = 1, boxes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean softplus(target - margin) over valid keypoints, margins (N, K))`` for inputs ``x
    (N, 1, h, w)`` in [0, 1], their ground-truth cells ``(N, K, 2)`` and the box ``alpha = beta = eps``
    (bounded as ``splits x splits`` sub-boxes, or one given box per input: ``boxes (N, 4)``);
    ``form="log"`` takes ``log1p`` of each term (its gradient is relative to how far the margin is)."""
    margins = worst_margins(detector, x, cells, eps, eps, radius_cells, splits, boxes)
    terms = F.softplus(target - margins)
    if form == "log":
        terms = torch.log1p(terms)
    mask = valid.to(terms.device)
    loss = torch.where(mask, terms, torch.zeros_like(terms)).sum() / mask.sum().clamp_min(1)
    return loss, margins


def freeze_batchnorm(model: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode (running statistics fixed and used in the forward).

    The bounds fold BatchNorm with its running statistics, i.e. they bound the network that is
    certified; with the batch statistics in the training forward, the running statistics would
    drift after every step and undo what the term changed (e.g. a smaller scale is renormalised
    away), so training and bounds must see the same network."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@dataclass
class _Record:
    eps: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    proven: list[float] = field(default_factory=list)  # fraction of valid keypoints with margin > 0


class RobustnessTerm:
    """``kappa * robustness_loss`` on a random batch of training images, one call per training step
    (``extra_loss`` hook); ``eps`` ramps over ``steps`` calls. ``history`` records, per call, eps,
    the unweighted loss and the fraction of keypoints whose margin is already proven (> 0)."""

    def __init__(self, images: np.ndarray, keypoints: np.ndarray, config: RobustConfig, steps: int,
                 seed: int = 0) -> None:
        self.images = torch.from_numpy(np.asarray(images))
        self.keypoints = torch.from_numpy(np.asarray(keypoints, np.float32))
        self.config = config
        self.steps = steps
        self.step = 0
        self.gen = torch.Generator().manual_seed(seed + 7919)
        self.history = _Record()

    def __call__(self, model: nn.Module) -> torch.Tensor:
        cfg, mc = self.config, model.config
        freeze_batchnorm(model)
        dev = next(model.parameters()).device
        eps = cfg.eps_at(self.step, self.steps)
        self.step += 1
        idx = torch.randint(0, len(self.images), (cfg.batch,), generator=self.gen)
        x = self.images[idx].to(dev, torch.float32).div_(255.0).unsqueeze(1)
        cells, valid = keypoint_cells(self.keypoints[idx], mc.output_stride, mc.heatmap_size)
        boxes = random_sub_boxes(cfg.batch, eps, cfg.sub_eps, self.gen) if cfg.sub_eps > 0 else None
        if cfg.first_tiles:
            boxes = random_first_tiles(x, net_input_clamp(model), eps, self.gen)
        loss, margins = robustness_loss(model, x, cells.to(dev), valid.to(dev), eps, cfg.radius / mc.output_stride,
                                        cfg.target, cfg.form, cfg.splits, boxes)
        with torch.no_grad():
            v = valid.to(dev)
            self.history.eps.append(eps)
            self.history.loss.append(float(loss))
            self.history.proven.append(float(((margins > 0) & v).sum() / v.sum().clamp_min(1)))
        return cfg.kappa * loss

    def summary(self, last: int = 50) -> dict:
        """Config and the mean loss / proven fraction over the ``last`` calls (for checkpoints)."""
        h = self.history
        return {**self.config.to_dict(), "steps": self.step,
                "loss": float(np.mean(h.loss[-last:])) if h.loss else None,
                "proven_fraction": float(np.mean(h.proven[-last:])) if h.proven else None}


def robust_term(config: RobustConfig | None, images: np.ndarray, keypoints: np.ndarray, steps: int,
                seed: int = 0) -> RobustnessTerm | None:
    """The term of ``config`` over ``steps`` training steps (None when ``config`` is None, i.e. off)."""
    return None if config is None else RobustnessTerm(images, keypoints, config, steps, seed=seed)
