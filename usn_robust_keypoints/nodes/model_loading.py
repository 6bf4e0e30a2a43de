"""Loading the detector checkpoint named by a node's ``model_path``/``device`` parameters."""

from __future__ import annotations

from ..model import KeypointModel, load_model
from ..model.checkpoint import CheckpointError


def load_node_model(model_path: str, device: str) -> KeypointModel:
    """The model at ``model_path`` on ``device``: '' = the shipped default, a detector or
    imported-graph ``.safetensors`` checkpoint, or an ``.onnx`` file (see ``load_model``); raises
    ``ValueError`` (``CheckpointError`` and refusals of unsupported ONNX ops included) with the reason."""
    try:
        return load_model(model_path or None, device=device)
    except (CheckpointError, FileNotFoundError, ValueError, OSError) as e:
        raise ValueError(f"cannot load model {model_path or '<shipped default>'!r}: {e}") from e
