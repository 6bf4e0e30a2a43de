"""Real evaluation photos: opencv-doc's chessboard photos labelled by OpenCV's corner finder.

``left*.jpg`` is the evaluation set. ``right*.jpg`` (the stereo partners of the same scenes) is
reserved for an independent check: never train, tune or select models on it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from .coco import LabelledImage, save_coco
from .opencv_doc import cache_dir, opencv_doc_data
from .target import CHESSBOARD_9X6, ChessboardTarget

SIDES = ("left", "right")


def label_chessboard(gray: np.ndarray, target: ChessboardTarget = CHESSBOARD_9X6) -> np.ndarray | None:
    """All inner corners (rows*cols, 2) in canonical order, sub-pixel refined; None if not found."""
    found, corners = cv2.findChessboardCorners(gray, (target.cols, target.rows))
    if not found:
        return None
    corners = np.asarray(corners, np.float32).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)
    corners = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1), criteria).reshape(-1, 2)
    return target.canonical_order(corners, gray)


def build_real_set(side: str = "left", cache: Path | None = None) -> Path:
    """Label ``<side>*.jpg`` (``left`` or ``right``) and write COCO JSON; returns the JSON path.
    Idempotent: an existing set is reused."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    out = (cache or cache_dir()) / "real" / side
    json_path = out / "keypoints.json"
    if json_path.is_file():
        return json_path
    src = opencv_doc_data(cache)
    out.mkdir(parents=True, exist_ok=True)
    target = CHESSBOARD_9X6
    records = []
    for p in sorted(src.glob(f"{side}[0-9]*.jpg")):
        gray = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        corners = label_chessboard(gray, target)
        if corners is None:
            raise RuntimeError(f"OpenCV did not find the 9x6 corners in {p}")
        dst = out / p.name
        shutil.copyfile(p, dst)
        kps = target.keypoints_from_corners(corners)
        records.append(LabelledImage(dst, kps, np.full(len(kps), 2), gray.shape[1], gray.shape[0]))
    return save_coco(json_path, records, target.keypoint_names, "chessboard_9x6", target.symmetries)
