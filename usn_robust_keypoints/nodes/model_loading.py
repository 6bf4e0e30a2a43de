"""Loading the detector checkpoint named by a node's ``model_path``/``device`` parameters."""

from __future__ import annotations

from ..model import KeypointModel, load_model
from ..model.checkpoint import CheckpointError


def load_node_model(model_path: str, device: str) -> KeypointModel:
    """The checkpoint at ``model_path`` ('' = the shipped default) on ``device``; raises
    ``ValueError`` (``CheckpointError`` included) or ``FileNotFoundError`` with the reason."""
    try:
        return load_model(model_path or None, device=device)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        raise ValueError(f"cannot load model {model_path or '<shipped default>'!r}: {e}") from e
