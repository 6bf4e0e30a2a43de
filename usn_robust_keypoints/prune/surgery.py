"""Physical channel removal with Torch-Pruning, driven by any per-channel importance.

Every importance criterion (USN, random, L1, BN-scale, Taylor) is a Torch-Pruning
``tp.importance.Importance``: it is called on the dependency group of each hidden conv's output
channels (the conv, its BatchNorm and the next conv's input channels) and returns one score per
channel. Scores are divided by their layer median and ranked **globally** across layers (the same
allocation rule for every criterion), with a per-layer floor on the channels kept. The chosen
channels are removed through the dependency graph (conv out-channels, BN, next conv in-channels
stay consistent); the heatmap head's outputs (the keypoints) are never pruned. Afterwards
``detector.sync_config()`` records the new widths, so the checkpoint reloads with the normal
loader. No masks remain.
"""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from ..model.detector import HeatmapDetector
from .usn import LayerScores, hidden_convs


class UsnImportance(tp.importance.Importance):
    """USN scores as a Torch-Pruning importance: looks up the precomputed score of each channel
    of the group's root conv (scores from :func:`usn.usn_scores`, keyed by the conv module)."""

    def __init__(self, scores: dict[nn.Conv2d, torch.Tensor]) -> None:
        self.scores = scores

    @classmethod
    def from_layer_scores(cls, detector: HeatmapDetector, layer_scores: list[LayerScores]) -> "UsnImportance":
        convs = hidden_convs(detector)
        if [n for n, _, _ in convs] != [s.name for s in layer_scores]:
            raise ValueError("USN scores do not match the detector's layers")
        for (_, conv, _), s in zip(convs, layer_scores):
            if len(s.score) != conv.out_channels:
                raise ValueError(f"{s.name}: {len(s.score)} scores for {conv.out_channels} channels")
        return cls({conv: s.score.clone() for (_, conv, _), s in zip(convs, layer_scores)})

    @torch.no_grad()
    def __call__(self, group: tp.Group) -> torch.Tensor:
        dep, idxs = group[0]
        return self.scores[dep.target.module][list(idxs)].float()


def dependency_graph(detector: HeatmapDetector) -> tp.DependencyGraph:
    """Torch-Pruning dependency graph of ``detector`` (traced with one input of its geometry)."""
    c = detector.config
    device = next(detector.parameters()).device
    example = torch.zeros(1, 1 if getattr(c, "color", "gray") == "gray" else 3, c.input_height, c.input_width,
                          device=device)
    return tp.DependencyGraph().build_dependency(detector, example_inputs=example)


def channel_importance(detector: HeatmapDetector, importance: tp.importance.Importance,
                       graph: tp.DependencyGraph | None = None) -> list[torch.Tensor]:
    """Per-layer importance vectors (one per hidden conv), as the criterion computes them."""
    graph = graph or dependency_graph(detector)
    out = []
    for _, conv, _ in hidden_convs(detector):
        group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(range(conv.out_channels)))
        imp = importance(group)
        if imp is None or imp.numel() != conv.out_channels:
            raise ValueError(f"importance {type(importance).__name__} gave no score for a conv layer")
        out.append(imp.detach().float().cpu())
    return out


def select_channels(importances: list[torch.Tensor], n_remove: int, min_keep: int | float | list[int] = 0.125,
                    generator: torch.Generator | None = None) -> list[list[int]]:
    """Channels to remove per layer: the ``n_remove`` lowest layer-median-normalised scores
    globally, never leaving a layer with fewer than ``min_keep`` channels (an int, a fraction of
    the layer's current width, or one floor per layer; at least 1). Ties break by a seeded random
    permutation."""
    cands = []
    for li, imp in enumerate(importances):
        norm = imp / (imp.median().abs() + 1e-12)
        cands += [(float(v), li, ci) for ci, v in enumerate(norm)]
    perm = torch.randperm(len(cands), generator=generator).tolist()
    order = sorted(range(len(cands)), key=lambda i: (cands[i][0], perm[i]))
    if isinstance(min_keep, (list, tuple)):
        floors = [max(1, int(f)) for f in min_keep]
    else:
        floors = [max(1, min_keep if isinstance(min_keep, int) else int(round(min_keep * len(imp))))
                  for imp in importances]
    left = [len(imp) for imp in importances]
    chosen: list[list[int]] = [[] for _ in importances]
    for i in order:
        if n_remove <= 0:
            break
        _, li, ci = cands[i]
        if left[li] > floors[li]:
            chosen[li].append(ci)
            left[li] -= 1
            n_remove -= 1
    return [sorted(c) for c in chosen]


def remove_channels(detector: HeatmapDetector, removal: list[list[int]],
                    graph: tp.DependencyGraph | None = None) -> HeatmapDetector:
    """Physically remove ``removal[l]`` output channels of hidden conv ``l`` (in place) and
    update ``detector.config.channels``. Returns ``detector``."""
    convs = hidden_convs(detector)
    if len(removal) != len(convs):
        raise ValueError(f"removal lists {len(removal)} layers, the detector has {len(convs)}")
    graph = graph or dependency_graph(detector)
    for (name, conv, _), idxs in zip(convs, removal):
        if not idxs:
            continue
        if len(set(idxs)) >= conv.out_channels or min(idxs) < 0 or max(idxs) >= conv.out_channels:
            raise ValueError(f"{name}: cannot remove channels {idxs} of {conv.out_channels}")
        group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=sorted(set(idxs)))
        if not graph.check_pruning_group(group):
            raise ValueError(f"{name}: Torch-Pruning refuses to remove {idxs}")
        group.prune()
    detector.sync_config()
    return detector


def count_hidden_channels(detector: HeatmapDetector) -> int:
    """Total output channels of the hidden conv layers (what channel sparsity is measured on)."""
    return sum(conv.out_channels for _, conv, _ in hidden_convs(detector))
