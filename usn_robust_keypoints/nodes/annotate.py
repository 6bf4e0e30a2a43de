"""Drawing of keypoints and certified radii on frames (debug image, demo PNG/MP4)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..certify.results import FrameCertificate, Status

COLORS = {Status.CERTIFIED: (60, 200, 60), Status.NOT_CERTIFIED: (40, 40, 230), Status.REFUTED: (40, 40, 230),
          Status.OPEN: (0, 140, 255), Status.UNKNOWN: (0, 200, 230)}


def _bgr(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame.copy()


def draw_keypoints(frame: np.ndarray, keypoints: np.ndarray, names: list[str]) -> np.ndarray:
    """BGR copy of ``frame`` with a cross and the name at every keypoint (x, y)."""
    out = _bgr(frame)
    for (x, y), name in zip(np.asarray(keypoints, dtype=float), names):
        p = (int(round(x)), int(round(y)))
        cv2.drawMarker(out, p, (255, 160, 0), cv2.MARKER_CROSS, 12, 2)
        cv2.putText(out, name, (p[0] + 6, p[1] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 160, 0), 1, cv2.LINE_AA)
    return out


def draw_certificate(frame: np.ndarray, cert: FrameCertificate) -> np.ndarray:
    """BGR copy of ``frame`` with every keypoint, its certified radius r* (circle; green =
    certified, red = refuted / not certified, orange = open, yellow = unknown; the label is r* or
    the status, never a radius that was not proven) and a caption with the box."""
    out = _bgr(frame)
    for k in cert.keypoints:
        color = COLORS[k.status]
        p = (int(round(k.x)), int(round(k.y)))
        cv2.drawMarker(out, p, color, cv2.MARKER_CROSS, 10, 2)
        if math.isfinite(k.certified_radius):
            cv2.circle(out, p, max(1, int(math.ceil(k.certified_radius))), color, 1, cv2.LINE_AA)
        label = f"r*={k.radius_label}" if math.isfinite(k.certified_radius) else k.status.value
        cv2.putText(out, label, (p[0] + 6, p[1] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    caption = (f"alpha={cert.alpha:g} beta={cert.beta:g} r={cert.radius:g}px  "
               f"certified {sum(k.certified for k in cert.keypoints)}/{len(cert.keypoints)}  "
               f"{cert.time_ms:.0f} ms")
    cv2.putText(out, caption, (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, caption, (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out
