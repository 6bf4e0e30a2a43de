"""Tensor-level entry points for experiments and training (no frame geometry: input pixels).

- :func:`certify_batch`: the native certificate (status, r*) for a batch of pre-processed inputs.
- :func:`worst_margins`: a differentiable spec margin from the same forward-mode bounds (pure
  torch), for certifiability training: > 0 proves the disk spec over the whole box with the given
  cell as the dominating cell.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..model.preprocess import FrameGeometry
from ..perturbation import PerturbationBox
from .bounds import bound_layers, concrete_min, propagate
from . import native
from .native import MAX_DEPTH, frame_context, search


def certify_batch(detector: nn.Module, x: torch.Tensor, alpha: float, beta: float, radius: float,
                  max_depth: int = MAX_DEPTH, budget_ms: float | None = None) -> dict[str, torch.Tensor]:
    """Certify every keypoint of every input ``x (N, 1, h, w)`` (values in [0, 1], the model's input
    size) at ``radius`` *input* pixels over ``c in [1-alpha, 1+alpha]``, ``b in [-beta, beta]``.

    Returns ``certified (N, K) bool``, ``certified_radius (N, K)`` (input px), ``refuted (N, K)``
    (a counter-example was found), ``unknown (N, K)`` (budget per image ran out) and ``cells
    (N, K, 2)`` (nominal argmax row, col)."""
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"x must have shape (N, 1, h, w), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    geo = FrameGeometry(w, h, w, h)
    out: dict[str, list] = {"certified": [], "certified_radius": [], "refuted": [], "unknown": [], "cells": []}
    box = PerturbationBox(alpha, beta)
    for i in range(x.shape[0]):
        deadline = math.inf if budget_ms is None else native.clock() + budget_ms / 1000.0
        ctx = frame_context(detector, x[i:i + 1], geo)
        found = search(ctx, box, radius, deadline, max_depth)
        states = [found[k].state for k in range(len(found))]
        rstar = [found[k].rstar for k in range(len(found))]
        out["certified"].append([s == "proven" for s in states])
        out["refuted"].append([s == "refuted" for s in states])
        out["unknown"].append([s == "unknown" for s in states])
        out["certified_radius"].append(rstar)
        out["cells"].append(ctx.cells.tolist())
    return {"certified": torch.tensor(out["certified"], dtype=torch.bool),
            "refuted": torch.tensor(out["refuted"], dtype=torch.bool),
            "unknown": torch.tensor(out["unknown"], dtype=torch.bool),
            "certified_radius": torch.tensor(out["certified_radius"], dtype=torch.float64),
            "cells": torch.tensor(out["cells"], dtype=torch.long)}


def sub_boxes(alpha: float, beta: float, splits: int) -> torch.Tensor:
    """The ``splits x splits`` grid of sub-boxes ``(splits**2, 4) = (c_lo, c_hi, b_lo, b_hi)`` of
    ``c in [1-alpha, 1+alpha]``, ``b in [-beta, beta]``."""
    c = torch.linspace(1.0 - alpha, 1.0 + alpha, splits + 1, dtype=torch.float64)
    b = torch.linspace(-beta, beta, splits + 1, dtype=torch.float64)
    return torch.tensor([[c[i], c[i + 1], b[j], b[j + 1]] for i in range(splits) for j in range(splits)])


def worst_margins(detector: nn.Module, x: torch.Tensor, cells: torch.Tensor, alpha: float, beta: float,
                  radius_cells: float, splits: int = 1, boxes: torch.Tensor | None = None) -> torch.Tensor:
    """Differentiable ``min over the box, over cells s outside the disk of [H_q - H_s]`` (N, K),
    with ``q = cells[n, k] = (row, col)`` and the disk of ``radius_cells`` heatmap cells around it.

    Pure torch on the forward-mode bounds, so it can be a loss (e.g. ``softplus(t -
    worst_margins(...)).mean()``); > 0 proves the spec for that keypoint. ``splits > 1`` bounds
    each of the ``splits x splits`` sub-boxes separately (tighter, ``splits**2`` times the cost)
    and takes the worst. ``boxes (N, 4) = (c_lo, c_hi, b_lo, b_hi)`` (or parallelograms ``(N, 2, 3)``,
    :func:`.bounds.theta_maps`) instead bounds one given box per input (``alpha``, ``beta`` and
    ``splits`` are then unused)."""
    if splits < 1:
        raise ValueError(f"splits must be >= 1, got {splits}")
    layers = bound_layers(detector, differentiable=True)
    n0 = x.shape[0]
    if boxes is not None:
        if boxes.shape not in ((n0, 4), (n0, 2, 3)):
            raise ValueError(f"boxes must have shape ({n0}, 4) or ({n0}, 2, 3), got {tuple(boxes.shape)}")
        m, boxes = 1, boxes.to(x.dtype).to(x.device)
    else:
        grid = sub_boxes(alpha, beta, splits).to(x.dtype).to(x.device)
        m = grid.shape[0]
        x = x.repeat_interleave(m, dim=0)
        cells = cells.repeat_interleave(m, dim=0)
        boxes = grid.repeat(n0, 1)
    n = x.shape[0]
    f = propagate(layers, x, boxes)
    k, h, w = f.lower.shape[2:]
    flat = (cells[..., 0] * w + cells[..., 1]).to(x.device)  # (N, K)
    lo = f.lower.flatten(3)  # (N, 3, K, h*w)
    lo_q = torch.gather(lo, 3, flat.view(n, 1, k, 1).expand(n, 3, k, 1))  # (N, 3, K, 1)
    diff = lo_q - f.upper.flatten(3)  # (N, 3, K, h*w)
    margin = concrete_min(diff)  # (N, K, h*w)
    rows = torch.arange(h, device=x.device).repeat_interleave(w)
    cols = torch.arange(w, device=x.device).repeat(h)
    d2 = (rows.view(1, 1, -1) - cells[..., :1].to(x.device)) ** 2 + (cols.view(1, 1, -1) - cells[..., 1:].to(x.device)) ** 2
    outside = d2.to(x.dtype) > radius_cells ** 2
    worst = torch.where(outside, margin, torch.full_like(margin, math.inf)).amin(dim=2)  # (N * m, K)
    return worst.view(n0, m, k).amin(dim=1)
