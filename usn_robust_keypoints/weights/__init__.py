"""Shipped checkpoints (package data)."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT_DENSE = "chessboard_dense.safetensors"
DEFAULT_PRUNED = "chessboard_usn_pruned.safetensors"
# The nodes' default: the previous default fine-tuned 1000 steps on the node's exact property (κ 0.2, r = 4
# frame px, the whole ±0.02 box, photographed-print scenes, distillation from the dense model); chosen
# on the real left* photos (CHANGELOG.md, 2026-12-01; docs/training.md, "Training the node's exact
# property").
DEFAULT_CERTIFIED = "chessboard_usn_node.safetensors"
# The previous defaults, newest first (photo scenes κ 0.3; κ 0.3 + distillation; κ 0.1 sub-boxes; the
# whole-box term); selectable with model_path.
PREVIOUS_DEFAULTS = ("chessboard_usn_photo.safetensors", "chessboard_usn_distill.safetensors",
                     "chessboard_usn_subbox.safetensors", "chessboard_usn_certtrained.safetensors")


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
