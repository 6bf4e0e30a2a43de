"""Drawing of keypoints and certificates on frames: the ``certify --plot`` PNGs, the detector
node's debug image and the demo's PNG/MP4 (one colour per status, one layout)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from .certify.results import FrameCertificate, Status
from .model.preprocess import grid_to_pixels

COLORS = {Status.CERTIFIED: (60, 200, 60), Status.NOT_CERTIFIED: (40, 40, 230), Status.REFUTED: (40, 40, 230),
          Status.OPEN: (0, 140, 255), Status.UNKNOWN: (0, 200, 230)}
KEYPOINT_COLOR = (255, 160, 0)  # uncertified detections (BGR)
RADIUS_COLOR = (200, 200, 200)  # the requested radius


def _bgr(frame: np.ndarray, scale: int = 1) -> np.ndarray:
    out = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame.copy()
    return out if scale == 1 else cv2.resize(out, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def _label(img: np.ndarray, p: tuple[int, int], text: str, color: tuple[int, int, int]) -> None:
    cv2.putText(img, text, (p[0] + 6, p[1] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)


def draw_keypoints(frame: np.ndarray, keypoints: np.ndarray, names: list[str]) -> np.ndarray:
    """BGR copy of ``frame`` with a cross and the name at every keypoint (x, y)."""
    out = _bgr(frame)
    for (x, y), name in zip(np.asarray(keypoints, dtype=float), names):
        p = (int(round(x)), int(round(y)))
        cv2.drawMarker(out, p, KEYPOINT_COLOR, cv2.MARKER_CROSS, 12, 2)
        _label(out, p, name, KEYPOINT_COLOR)
    return out


def draw_certificate(frame: np.ndarray, cert: FrameCertificate, min_size: int = 0) -> np.ndarray:
    """BGR copy of ``frame`` (upscaled by an integer factor, nearest neighbour, until its long side
    is at least ``min_size`` px) with every keypoint (cross; green = certified, red = refuted or
    not certified, orange = open, yellow = unknown), its certified radius r* (circle, when
    finite), the requested radius (grey circle), a label (name, r* or the status: never a radius
    that was not proven; beta* when known) and a caption with the box."""
    scale = max(1, int(round(min_size / max(frame.shape[:2])))) if min_size else 1
    out = _bgr(frame, scale)
    for k in cert.keypoints:
        color = COLORS[k.status]
        p = (int(round(grid_to_pixels(k.x, scale))), int(round(grid_to_pixels(k.y, scale))))
        cv2.drawMarker(out, p, color, cv2.MARKER_CROSS, 10, 2)
        if math.isfinite(k.certified_radius):
            cv2.circle(out, p, max(1, int(math.ceil(k.certified_radius * scale))), color, 1, cv2.LINE_AA)
        cv2.circle(out, p, max(1, int(round(cert.radius * scale))), RADIUS_COLOR, 1, cv2.LINE_AA)
        label = f"{k.name} " + (f"r*={k.certified_radius:.1f}" if math.isfinite(k.certified_radius) else k.status.value)
        if math.isfinite(k.beta_star):
            label += f" b*={k.beta_star:.3f}"
        _label(out, p, label, color)
    caption = (f"alpha={cert.alpha:g} beta={cert.beta:g} r={cert.radius:g}px  "
               f"certified {sum(k.certified for k in cert.keypoints)}/{len(cert.keypoints)}  "
               f"{cert.time_ms:.0f} ms")
    cv2.putText(out, caption, (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, caption, (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out
