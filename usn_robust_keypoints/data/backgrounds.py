"""Pool of real background photos (never an evaluation photo)."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import cv2
import numpy as np

from .opencv_doc import EXCLUDED_BACKGROUNDS, opencv_doc_data

# scikit-image's bundled photos that show no chessboard-like pattern.
SKIMAGE_EXCLUDED = ("chessboard*", "checker*", "page*", "text*", "logo*", "lbp*")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def _excluded(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def background_files(include_opencv_doc: bool = True) -> list[Path]:
    """Background photo files: scikit-image's bundled photos, plus opencv-doc's non-target photos."""
    import skimage.data

    files = [p for p in Path(skimage.data.__file__).parent.iterdir()
             if p.suffix.lower() in IMAGE_SUFFIXES and not _excluded(p.name, SKIMAGE_EXCLUDED)]
    if include_opencv_doc:
        files += [p for p in opencv_doc_data().iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and not _excluded(p.name, EXCLUDED_BACKGROUNDS)]
    return sorted(files)


def load_backgrounds(include_opencv_doc: bool = True, min_side: int = 64) -> list[np.ndarray]:
    """All background photos as uint8 gray arrays."""
    out = []
    for p in background_files(include_opencv_doc):
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is not None and min(img.shape) >= min_side:
            out.append(img)
    if not out:
        raise RuntimeError("no background photos found")
    return out
