"""``KeypointModel``: a loaded detector with the documented ``predict`` API."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..perturbation import apply_perturbation
from .checkpoint import load_detector
from .detector import DetectorConfig
from .device import resolve_device
from .preprocess import FrameGeometry, cell_centers, decode_heatmaps, preprocess


@dataclass
class Prediction:
    """Result of :meth:`KeypointModel.predict` for one frame.

    ``keypoints`` (K, 2) are (x, y) in the caller's frame pixels: the centre of each heatmap's
    argmax cell (the quantity the certificates speak about). ``cells`` (K, 2) are (row, col).
    """

    keypoints: np.ndarray
    scores: np.ndarray
    heatmaps: np.ndarray
    cells: np.ndarray
    geometry: FrameGeometry


class KeypointModel:
    """A heatmap detector ready for inference on camera frames of any size."""

    def __init__(self, detector: nn.Module, device: str | torch.device = "auto",
                 info: dict | None = None, path: str | Path | None = None) -> None:
        self.device = resolve_device(device)
        self.detector = detector.to(self.device).eval()
        self.info = info or {}
        self.path = Path(path) if path is not None else None

    @property
    def config(self) -> DetectorConfig:
        """The detector's :class:`DetectorConfig` (an imported graph's :class:`ModelSpec`)."""
        return self.detector.config

    @property
    def keypoint_names(self) -> list[str]:
        c = self.config
        return c.keypoint_names or [f"kp{i}" for i in range(c.num_keypoints)]

    def preprocess(self, image: np.ndarray) -> tuple[torch.Tensor, FrameGeometry]:
        """Frame -> network input (1, 1, h, w) on the model's device, and the frame geometry."""
        x, geo = preprocess(image, self.config.input_width, self.config.input_height,
                            getattr(self.config, "color", "gray"))
        return x.to(self.device), geo

    @torch.no_grad()
    def heatmaps(self, x: torch.Tensor, theta: tuple[float, float] | None = None) -> torch.Tensor:
        """Heatmaps for a pre-processed input batch, with the perturbation ``theta=(c, b)``
        applied exactly as the certifier models it."""
        if theta is not None:
            x = apply_perturbation(x, float(theta[0]), float(theta[1]))
        return self.detector(x)

    def predict(self, image: np.ndarray, theta: tuple[float, float] | None = None) -> Prediction:
        """Detect keypoints on a uint8 gray or BGR frame of any size.

        ``theta=(c, b)`` applies ``clip(c*x + b, 0, 1)`` to the network input after
        pre-processing, exactly as the certifier models the perturbation.
        """
        x, geo = self.preprocess(image)
        hm = self.heatmaps(x, theta)[0]
        rows, cols, scores = decode_heatmaps(hm)
        rows, cols = rows.cpu().numpy(), cols.cpu().numpy()
        xy_in = cell_centers(rows, cols, self.config.output_stride)
        return Prediction(keypoints=geo.input_to_frame(xy_in), scores=scores.cpu().numpy(),
                          heatmaps=hm.cpu().numpy(), cells=np.stack([rows, cols], axis=-1), geometry=geo)


def load_model(path: str | Path | nn.Module | None = None, device: str | torch.device = "auto",
               spec: "ModelSpec | None" = None) -> KeypointModel:
    """A :class:`KeypointModel` from a detector checkpoint (default: the shipped default model), an
    imported-graph checkpoint, an ONNX file (``.onnx``; ``spec`` optional: the input size comes from
    the file) or a ``torch.nn.Module`` with its ``spec`` (:class:`..model.graph.ModelSpec`)."""
    from ..weights import default_model_path
    from .graph.checkpoint import FORMAT as GRAPH_FORMAT, checkpoint_format, load_graph_checkpoint

    if isinstance(path, nn.Module):
        from .graph import import_module

        if spec is None:
            raise ValueError("load_model(module) needs spec=ModelSpec(input_width=..., input_height=..., ...)")
        return KeypointModel(import_module(path, spec), device=device, info={"source": type(path).__name__})
    path = Path(path) if path is not None else default_model_path()
    if path.suffix.lower() == ".onnx":
        from .graph.onnx_import import import_onnx

        return KeypointModel(import_onnx(path, spec), device=device, info={"source": str(path)}, path=path)
    if checkpoint_format(path) == GRAPH_FORMAT:
        detector, info = load_graph_checkpoint(path)
    else:
        detector, info = load_detector(path)
    return KeypointModel(detector, device=device, info=info, path=path)
