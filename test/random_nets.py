"""Randomly initialised detectors for the certification tests (BatchNorm statistics randomised too,
so that folding is exercised)."""

from __future__ import annotations

import torch
from torch import nn

from usn_robust_keypoints.model import DetectorConfig, HeatmapDetector, KeypointModel


def random_model(seed: int, config: DetectorConfig) -> KeypointModel:
    """An eval-mode :class:`KeypointModel` of ``config`` with seeded random weights and BN statistics."""
    torch.manual_seed(seed)
    det = HeatmapDetector(config)
    for m in det.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.2, 0.2)
    return KeypointModel(det.eval(), device="cpu")
