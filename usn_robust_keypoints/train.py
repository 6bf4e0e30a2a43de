"""Training of heatmap detectors (CPU or CUDA) with a progress bar.

Targets are Gaussian heatmaps (sigma in heatmap cells) centred on the keypoints; the task loss is
a spatial cross-entropy against them (:func:`task_loss`). Brightness/contrast augmentation uses :func:`apply_perturbation`, the
same formula the certifier bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .model import DetectorConfig, HeatmapDetector, resolve_device
from .model.preprocess import pixels_to_grid
from .perturbation import PerturbationBox, apply_perturbation

DEFAULT_AUGMENT = PerturbationBox(0.3, 0.15)  # brightness/contrast augmentation of every training loop
# What build_detector may change on --init: options that keep every weight's shape ("dilations"
# re-dilates the stride-4 blocks of the loaded weights, e.g. a smaller receptive field to fine-tune).
INIT_OVERRIDES = ("zero_mean_stem", "stem_padding", "input_clamp", "dilations")


def build_detector(keypoint_names: list[str], init: str | Path | None = None, **overrides) -> HeatmapDetector:
    """The detector a training run starts from.

    Without ``init``: a new :class:`HeatmapDetector` of ``DetectorConfig`` defaults with the given
    ``overrides`` (any ``DetectorConfig`` field; ``None`` values are ignored) and one heatmap per
    name. With ``init``: the checkpoint's detector and weights (its architecture and keypoints are
    kept), with only :data:`INIT_OVERRIDES` allowed to change; the new config is validated and the
    architecture's constraints (``zero_mean_stem``) are applied to the loaded weights."""
    from .model import load_detector

    overrides = {k: v for k, v in overrides.items() if v is not None}
    if init is None:
        return HeatmapDetector(DetectorConfig(num_keypoints=len(keypoint_names), keypoint_names=list(keypoint_names),
                                              **overrides))
    fixed = sorted(set(overrides) - set(INIT_OVERRIDES))
    if fixed:
        raise ValueError(f"the architecture of {init} is kept when fine-tuning; cannot change {', '.join(fixed)}")
    start, _ = load_detector(init)
    model = HeatmapDetector(replace(start.config, **overrides))
    model.load_state_dict(start.state_dict())
    model.apply_constraints()
    return model


def heatmap_targets(keypoints: torch.Tensor, config: DetectorConfig, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian targets (N, K, h, w) for keypoints (N, K, 2) given in network-input pixels.
    Keypoints with a NaN coordinate get an all-zero target."""
    h, w = config.heatmap_size
    s = config.output_stride
    cells = pixels_to_grid(keypoints, s)  # input px -> heatmap cell coordinates
    ys = torch.arange(h, dtype=keypoints.dtype, device=keypoints.device).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=keypoints.dtype, device=keypoints.device).view(1, 1, 1, w)
    d2 = (xs - cells[..., 0, None, None]) ** 2 + (ys - cells[..., 1, None, None]) ** 2
    return torch.nan_to_num(torch.exp(-d2 / (2 * sigma**2)), nan=0.0)


def task_loss(heatmaps: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Spatial cross-entropy: each heatmap is read as logits over its cells (softmax only inside
    the loss, never in the network) against the normalised Gaussian target. It trains sharp peaks
    fast and widens the logit gap H_q - H_s that certificates are made of. Keypoints whose target
    is all zero (unlabelled) are ignored."""
    logp = torch.log_softmax(heatmaps.flatten(-2), dim=-1)
    t = targets.flatten(-2)
    mass = t.sum(-1, keepdim=True)
    labelled = mass.squeeze(-1) > 0
    ce = -(t / mass.clamp_min(1e-12) * logp).sum(-1)
    return ce[labelled].mean()


def distill_loss(heatmaps: torch.Tensor, teacher_heatmaps: torch.Tensor) -> torch.Tensor:
    """Spatial cross-entropy of the student's heatmaps against the teacher's spatial softmax (the
    KL divergence to the teacher up to the teacher's entropy, a constant): :func:`task_loss` with
    the teacher's distribution as the target. A teacher at a finer output stride (heatmaps ``f``
    times the student's on both sides) is coarsened first: the probability of a student cell is the
    sum of the teacher's over the ``f x f`` cells it covers."""
    soft = torch.softmax(teacher_heatmaps.flatten(-2), dim=-1).view_as(teacher_heatmaps)
    f = teacher_heatmaps.shape[-1] // heatmaps.shape[-1]
    if f > 1:
        soft = F.avg_pool2d(soft, f) * (f * f)
    return task_loss(heatmaps, soft)


def check_teacher(teacher: HeatmapDetector, config: DetectorConfig) -> None:
    """Raise ``ValueError`` unless ``teacher`` has a ``config`` student's keypoints and heatmaps of the
    student's shape or an integer multiple of it (a finer output stride, see :func:`distill_loss`)."""
    t = teacher.config
    (th, tw), (sh, sw) = t.heatmap_size, config.heatmap_size
    f = tw // sw
    same = (t.num_keypoints, t.input_width, t.input_height) == (config.num_keypoints, config.input_width,
                                                                config.input_height)
    if not same or f < 1 or (th, tw) != (sh * f, sw * f):
        raise ValueError(f"the teacher's heatmaps ({t.num_keypoints} x {t.heatmap_size}) do not match the "
                         f"student's ({config.num_keypoints} x {config.heatmap_size}): the teacher needs the same "
                         f"keypoints and input size, and the student's output stride or a finer one")


def train_detector(model: HeatmapDetector, images: np.ndarray, keypoints: np.ndarray, *, steps: int,
                   batch_size: int = 32, lr: float = 2e-3, weight_decay: float = 1e-4, seed: int = 0,
                   device: str = "auto", augment: PerturbationBox | None = DEFAULT_AUGMENT,
                   extra_loss: Callable[[HeatmapDetector], torch.Tensor] | None = None,
                   after_step: Callable[[HeatmapDetector, float], None] | None = None,
                   teacher: HeatmapDetector | None = None, distill_weight: float = 0.0,
                   progress: bool = True, desc: str = "train", leave: bool = True) -> list[float]:
    """Train ``model`` in place on images (N, h, w) uint8 at the model's input size and keypoints
    (N, K, 2) in input pixels (AdamW, one-cycle lr, brightness/contrast augmentation).
    ``extra_loss(model)`` is added to the task loss (e.g. the certifiability term);
    ``after_step(model, lr_scale)`` runs after every optimiser step with the current lr as a
    fraction of ``lr`` (e.g. the pruning schedule's gate step). With a ``teacher`` (a frozen
    detector with the same heatmap shape), ``distill_weight * distill_loss`` is added: the student
    is pulled towards the teacher's heatmaps on the same (augmented) batch. Returns the task loss of
    every step."""
    cfg = model.config
    if images.shape[1:] != (cfg.input_height, cfg.input_width):
        raise ValueError(f"images must be {cfg.input_width}x{cfg.input_height}, got {images.shape[1:]}")
    if keypoints.shape[1:] != (cfg.num_keypoints, 2):
        raise ValueError(f"keypoints must have shape (N, {cfg.num_keypoints}, 2), got {keypoints.shape}")
    dev = resolve_device(device)
    model.to(dev).train()
    if teacher is not None:
        check_teacher(teacher, cfg)
        teacher.to(dev).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    # Warm-up: 10 % of the steps (OneCycleLR divides by zero when its warm-up ends exactly at step 0,
    # i.e. 0.1 * steps == 1: then 15 %).
    warmup = 0.15 if steps == 10 else 0.1
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=warmup)
    imgs = torch.from_numpy(images)
    kps = torch.from_numpy(np.asarray(keypoints, np.float32))
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, unit="step", leave=leave)
    for step in bar:
        idx = torch.randint(0, len(imgs), (batch_size,), generator=gen)
        x = imgs[idx].to(dev, torch.float32).div_(255.0).unsqueeze(1)
        if augment is not None:
            theta = augment.sample(batch_size + 4, gen)[4:]
            x = apply_perturbation(x, theta[:, 0].to(dev), theta[:, 1].to(dev))
        target = heatmap_targets(kps[idx].to(dev), cfg)
        out = model(x)
        loss = task_loss(out, target)
        total = loss + extra_loss(model) if extra_loss is not None else loss
        if teacher is not None and distill_weight > 0:
            with torch.no_grad():
                teacher_out = teacher(x)
            total = total + distill_weight * distill_loss(out, teacher_out)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        model.apply_constraints()
        if after_step is not None:
            after_step(model, sched.get_last_lr()[0] / lr)
        sched.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    model.eval()
    return losses


def to_training_arrays(frames: list[np.ndarray], keypoints: np.ndarray,
                       config: DetectorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Frames of any size + keypoints in frame pixels -> (N, h, w) uint8 at the model input size and
    keypoints (N, K, 2) in input pixels (same pre-processing as inference)."""
    from .model import preprocess

    imgs, kps = [], []
    for frame, kp in zip(frames, keypoints):
        x, geo = preprocess(frame, config.input_width, config.input_height)
        imgs.append((x[0, 0].numpy() * 255.0).round().astype(np.uint8))
        kps.append(geo.frame_to_input(np.asarray(kp, np.float64)))
    return np.stack(imgs), np.stack(kps).astype(np.float32)
