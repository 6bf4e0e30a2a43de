"""Shipped checkpoints (package data)."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT_DENSE = "chessboard_dense.safetensors"
DEFAULT_PRUNED = "chessboard_usn_pruned.safetensors"
# The nodes' default: the pruned model with a zero-mean stem, fine-tuned against the certifier's bounds
# on random ±0.02 sub-boxes of the ±0.1 box (κ 0.3) with distillation from the dense model (why: CHANGELOG.md;
# recipe: docs/training.md, "Certifiability training").
DEFAULT_CERTIFIED = "chessboard_usn_distill.safetensors"
# The previous defaults (κ 0.1 sub-boxes; before it the whole-box term); selectable with model_path.
PREVIOUS_CERTIFIED = "chessboard_usn_subbox.safetensors"
OLDER_CERTIFIED = "chessboard_usn_certtrained.safetensors"

def shipped_model_path(name: str) -> Path:
    """Path of a shipped checkpoint by file name."""
    p = WEIGHTS_DIR / name
    if not p.is_file():
        available = sorted(q.name for q in WEIGHTS_DIR.glob("*.safetensors"))
        raise FileNotFoundError(f"no shipped model {name!r}; available: {available}")
    return p


def default_model_path() -> Path:
    """The nodes' default: the first shipped of the certifiably trained pruned, the pruned and the
    dense model."""
    for name in (DEFAULT_CERTIFIED, DEFAULT_PRUNED):
        if (WEIGHTS_DIR / name).is_file():
            return WEIGHTS_DIR / name
    return shipped_model_path(DEFAULT_DENSE)
