"""Shipped checkpoints (package data)."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT_DENSE = "chessboard_dense.safetensors"
DEFAULT_PRUNED = "chessboard_usn_pruned.safetensors"
# The nodes' default: the previous default fine-tuned on photographed-print scenes (data/photo.py), 800
# steps at κ 0.3 (±0.02 sub-boxes of the ±0.1 box, distillation from the dense model); chosen on the
# real left* photos with the branch-and-bound certifier (CHANGELOG.md, 2026-12-01; docs/training.md,
# "Training for real frames"). The more certifiable, less accurate κ 0.6 continuation is
# results/models_real/models/photo_k0.3_then_k0.6.safetensors (selectable with model_path).
DEFAULT_CERTIFIED = "chessboard_usn_photo.safetensors"
# The previous defaults, newest first (κ 0.3 + distillation; κ 0.1 sub-boxes; the whole-box term);
# selectable with model_path.
PREVIOUS_CERTIFIED = "chessboard_usn_distill.safetensors"
OLDER_CERTIFIED = "chessboard_usn_subbox.safetensors"
OLDEST_CERTIFIED = "chessboard_usn_certtrained.safetensors"

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
