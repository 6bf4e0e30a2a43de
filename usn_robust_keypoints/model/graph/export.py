"""``export_onnx``: any detector of this package (native or imported, pruned or not) as an ONNX file."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


def export_onnx(detector: nn.Module, path: str | Path, opset: int = 17) -> Path:
    """Write ``detector`` (input ``(1, C, H, W)`` in [0, 1] with its normalisation inside, output the
    heatmaps) to ``path`` with torch's TorchScript-based exporter (``dynamo=False``: needs only the
    ``onnx`` package, not ``onnxscript``). The file loads back with ``load_model(path)``."""
    c = detector.config
    channels = 1 if getattr(c, "color", "gray") == "gray" else 3
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    p = next(detector.parameters())
    x = torch.zeros(1, channels, c.input_height, c.input_width, device=p.device, dtype=p.dtype)
    was_training = detector.training
    detector.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
            torch.onnx.export(detector, (x,), str(path), dynamo=False, opset_version=opset,
                              input_names=["image"], output_names=["heatmaps"])
    finally:
        detector.train(was_training)
    return path
