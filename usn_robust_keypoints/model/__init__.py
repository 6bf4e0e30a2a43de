"""Detector family, checkpoints, pre-processing and the inference API."""

from .checkpoint import CheckpointError, load_detector, read_metadata, save_checkpoint
from .detector import DetectorConfig, HeatmapDetector, fold_batchnorm
from .device import resolve_device
from .keypoint_model import KeypointModel, Prediction, load_model
from .preprocess import FrameGeometry, cell_centers, decode_heatmaps, preprocess, to_gray, validate_frame

__all__ = [
    "CheckpointError", "DetectorConfig", "FrameGeometry", "HeatmapDetector", "KeypointModel",
    "Prediction", "cell_centers", "decode_heatmaps", "fold_batchnorm", "load_detector", "load_model",
    "preprocess", "read_metadata", "resolve_device", "save_checkpoint", "to_gray", "validate_frame",
]
