"""Shipped checkpoints (package data)."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT_DENSE = "chessboard_dense.safetensors"
DEFAULT_PRUNED = "chessboard_usn_pruned.safetensors"


def shipped_model_path(name: str) -> Path:
    """Path of a shipped checkpoint by file name."""
    p = WEIGHTS_DIR / name
    if not p.is_file():
        available = sorted(q.name for q in WEIGHTS_DIR.glob("*.safetensors"))
        raise FileNotFoundError(f"no shipped model {name!r}; available: {available}")
    return p


def default_model_path() -> Path:
    """The pruned model when it has been shipped, else the dense default."""
    pruned = WEIGHTS_DIR / DEFAULT_PRUNED
    return pruned if pruned.is_file() else shipped_model_path(DEFAULT_DENSE)
