"""Frame sources of the camera node: V4L2 camera, video file, image folder/glob, the opencv-doc
chessboard photos, or the built-in synthetic chessboard stream. Frames are uint8 BGR or gray."""

from __future__ import annotations

import glob as globlib
import math
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..data.target import CHESSBOARD_9X6

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}
OPENCV_DOC_PREFIX = "opencv-doc:"


class FrameSourceError(ValueError):
    """A frame source cannot be opened: the message says why."""


def synthetic_frames(width: int = 640, height: int = 480, seed: int = 0) -> Iterator[np.ndarray]:
    """Endless gray frames of the 9x6 chessboard moving slowly in front of a textured wall."""
    rng = np.random.default_rng(seed)
    board, _ = CHESSBOARD_9X6.render(square_px=40, margin_px=20)
    bh, bw = board.shape
    wall = cv2.GaussianBlur(rng.uniform(60, 200, (height, width)).astype(np.float32), (0, 0), 9)
    src = np.float32([[0, 0], [bw, 0], [bw, bh], [0, bh]])
    t = 0
    while True:
        a = 0.25 * math.sin(t / 40.0)
        s = 0.55 + 0.1 * math.sin(t / 57.0)
        cx = width / 2 + 0.12 * width * math.sin(t / 33.0)
        cy = height / 2 + 0.1 * height * math.cos(t / 45.0)
        hw, hh = s * width / 2, s * width / 2 * bh / bw
        pts = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
        pts[:, 0] *= 1 + 0.08 * np.array([1, -1, -1, 1]) * math.sin(t / 29.0)  # mild perspective
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        dst = (pts @ rot.T + [cx, cy]).astype(np.float32)
        hom = cv2.getPerspectiveTransform(src, dst)
        warped = cv2.warpPerspective(board.astype(np.float32), hom, (width, height), flags=cv2.INTER_LINEAR,
                                     borderValue=-1.0)
        frame = np.where(warped >= 0, warped, wall) * (0.85 + 0.15 * math.sin(t / 23.0))
        frame += rng.normal(0, 3.0, frame.shape)
        yield np.clip(frame, 0, 255).astype(np.uint8)
        t += 1


def _image_files(spec: str) -> list[Path]:
    p = Path(spec).expanduser()
    if p.is_dir():
        files = [q for q in sorted(p.iterdir()) if q.suffix.lower() in IMAGE_SUFFIXES]
    else:
        files = [Path(q) for q in sorted(globlib.glob(str(p)))
                 if Path(q).suffix.lower() in IMAGE_SUFFIXES]
    return files


def _image_frames(files: list[Path], loop: bool) -> Iterator[np.ndarray]:
    while True:
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            if img is None:
                continue
            if img.ndim == 3 and img.shape[2] == 4:
                img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
            if img.dtype != np.uint8:
                img = cv2.convertScaleAbs(img, alpha=255.0 / max(float(img.max()), 1.0))
            yield img
        if not loop:
            return


def _capture_frames(cap: cv2.VideoCapture, loop: bool, rewind: bool) -> Iterator[np.ndarray]:
    try:
        while True:
            ok, frame = cap.read()
            if ok:
                yield frame
                continue
            if not (loop and rewind) or not cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                return
            ok, frame = cap.read()
            if not ok:
                return
            yield frame
    finally:
        cap.release()


def open_frames(source: str, width: int = 640, height: int = 480, loop: bool = True) -> Iterator[np.ndarray]:
    """Frames of ``source``:

    - ``"synthetic"``: the built-in chessboard stream at ``width x height``;
    - ``"opencv-doc:left*.jpg"``: the opencv-doc photos matching the pattern (downloaded into
      ``$USN_CACHE`` on first use);
    - an integer or ``/dev/videoN``: a V4L2 camera;
    - a video file; an image folder or a glob of image files.
    """
    source = str(source).strip()
    if source == "synthetic":
        return synthetic_frames(width, height)
    if source.startswith(OPENCV_DOC_PREFIX):
        from ..data.opencv_doc import opencv_doc_data

        pattern = source[len(OPENCV_DOC_PREFIX):] or "left*.jpg"
        files = _image_files(str(opencv_doc_data() / pattern))
        if not files:
            raise FrameSourceError(f"no opencv-doc image matches {pattern!r}")
        return _image_frames(files, loop)
    if source.isdigit() or source.startswith("/dev/video"):
        cap = cv2.VideoCapture(int(source) if source.isdigit() else source, cv2.CAP_V4L2)
        if not cap.isOpened():
            raise FrameSourceError(f"cannot open camera {source!r}")
        if width > 0 and height > 0:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        return _capture_frames(cap, loop, rewind=False)
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise FrameSourceError(f"cannot open video {source!r}")
        return _capture_frames(cap, loop, rewind=True)
    files = _image_files(source)
    if not files:
        raise FrameSourceError(f"source {source!r} is not 'synthetic', a camera, a video, an image "
                               "folder or a glob matching images")
    return _image_frames(files, loop)
