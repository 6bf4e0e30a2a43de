"""Wasserstein concentration loss on channel gates (this project's definition: docs/method.md,
section "Wasserstein concentration").

For one layer with gates ``g = |BN gamma|`` (n channels) and a set of ``m`` channels marked for
removal, the target multiset ``t`` holds ``m`` zeros and the current (detached) gates of the kept
channels. Two costs:

- ``"sorted"`` — exact 1-D Wasserstein-1 between the empirical distributions of ``g`` and ``t``:
  ``W1 = mean_i |sort(g)_i - sort(t)_i|``. Permutation-invariant: it shapes the gate distribution
  (a mass at zero plus the rest) but does not choose which channels go to zero.
- ``"assigned"`` — the same transport cost with the assignment fixed by the marking (each channel
  paired with its own target: 0 if marked, its current gate if kept):
  ``mean_j |g_j - t_j|``. It is ``>= W1`` and is 0 only when exactly the marked channels sit at 0.

The loss of a model is the sum over layers. Adding ``lambda * loss`` during fine-tuning drives the
channels that will be removed toward zero before removal.
"""

from __future__ import annotations

import torch
from torch import nn

VARIANTS = ("sorted", "assigned")


def w1_sorted(g: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Exact 1-D W1 between two equal-size empirical distributions (uniform weights)."""
    if g.shape != t.shape or g.dim() != 1:
        raise ValueError("w1_sorted needs two 1-D tensors of equal length")
    return (torch.sort(g).values - torch.sort(t).values).abs().mean()


def layer_targets(g: torch.Tensor, marked: torch.Tensor) -> torch.Tensor:
    """Per-channel targets: 0 for marked channels (bool mask), the detached gate for the others."""
    return torch.where(marked, torch.zeros_like(g), g.detach())


def layer_loss(g: torch.Tensor, marked: torch.Tensor, variant: str = "sorted") -> torch.Tensor:
    """Concentration loss of one layer's gates ``g`` toward the target set by ``marked``."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    t = layer_targets(g, marked)
    if variant == "sorted":
        return w1_sorted(g, t)
    return (g - t).abs().mean()


def wasserstein_loss(bns: list[nn.BatchNorm2d], marked: list[torch.Tensor], variant: str = "sorted") -> torch.Tensor:
    """Sum over layers of :func:`layer_loss` on ``|bn.weight|``; ``marked[l]`` is a bool mask (or
    index tensor) of the channels of layer ``l`` that are to be removed."""
    if len(bns) != len(marked):
        raise ValueError("one marking per BatchNorm layer is needed")
    total = bns[0].weight.new_zeros(())
    for bn, mk in zip(bns, marked):
        g = bn.weight.abs()
        if mk.dtype != torch.bool:
            mask = torch.zeros_like(g, dtype=torch.bool)
            mask[mk.long()] = True
            mk = mask
        if mk.any():
            total = total + layer_loss(g, mk.to(g.device), variant)
    return total
