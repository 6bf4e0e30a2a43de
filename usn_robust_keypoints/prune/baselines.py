"""Baseline channel importances (Torch-Pruning criteria where they fit).

- ``random``: seeded uniform scores (Torch-Pruning's ``RandomImportance`` draws from the global
  RNG, so a seeded generator is used instead);
- ``l1``: L1 norm of the channel's conv filter (``tp.importance.MagnitudeImportance(p=1)`` on the
  group's first layer);
- ``bn``: |BN gamma| (network slimming, ``tp.importance.BNScaleImportance``);
- ``taylor``: first-order Taylor |w * dL/dw| summed over the group
  (``tp.importance.TaylorImportance``; needs gradients, see :func:`accumulate_gradients`).

All return raw scores (``normalizer=None``): the pruner applies the same per-layer median
normalisation and global ranking to every criterion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch_pruning as tp
from torch import nn

BASELINES = ("random", "l1", "bn", "taylor")


class SeededRandomImportance(tp.importance.Importance):
    """Uniform random channel scores from a seeded generator (deterministic for a seed)."""

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def __call__(self, group: tp.Group) -> torch.Tensor:
        _, idxs = group[0]
        return torch.rand(len(idxs), generator=self.generator)


def baseline_importance(name: str, seed: int = 0) -> tp.importance.Importance:
    """The Torch-Pruning importance for baseline ``name`` (one of :data:`BASELINES`)."""
    if name == "random":
        return SeededRandomImportance(seed)
    if name == "l1":
        return tp.importance.MagnitudeImportance(p=1, group_reduction="first", normalizer=None)
    if name == "bn":
        return tp.importance.BNScaleImportance(normalizer=None)
    if name == "taylor":
        return tp.importance.TaylorImportance(normalizer=None)
    raise ValueError(f"unknown baseline {name!r}; choose from {BASELINES}")


def accumulate_gradients(model: nn.Module, loss_fn: Callable[[nn.Module, object], torch.Tensor],
                         batches: Iterable[object]) -> None:
    """Zero the gradients, then accumulate ``d loss / d params`` over ``batches`` (for Taylor)."""
    model.zero_grad(set_to_none=False)
    was_training = model.training
    model.eval()  # BN running statistics must not move while scoring
    try:
        for batch in batches:
            loss_fn(model, batch).backward()
    finally:
        model.train(was_training)
