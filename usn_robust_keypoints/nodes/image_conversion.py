"""``sensor_msgs/Image`` <-> numpy: the real ``cv_bridge`` when importable (robots), else an
equivalent numpy conversion with the same two functions for bgr8, rgb8, mono8, 16UC1 and 32FC1.

Every problem (unsupported encoding, zero size, a step or data length that does not match the
size) raises :class:`ImageConversionError` with the reason.
"""

from __future__ import annotations

import sys

import numpy as np
from sensor_msgs.msg import Image

# encoding -> (dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "bgr8": (np.dtype(np.uint8), 3),
    "rgb8": (np.dtype(np.uint8), 3),
    "mono8": (np.dtype(np.uint8), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}


class ImageConversionError(ValueError):
    """An image message or array cannot be converted: the message says why."""


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageConversionError(f"image has zero size ({width}x{height})")


def numpy_imgmsg_to_cv2(msg: Image, desired_encoding: str = "passthrough") -> np.ndarray:
    """Image message -> array (H, W) or (H, W, 3); a copy, so it does not alias ``msg.data``."""
    if msg.encoding not in ENCODINGS:
        raise ImageConversionError(
            f"unsupported encoding {msg.encoding!r} (supported: {', '.join(ENCODINGS)})")
    dtype, ch = ENCODINGS[msg.encoding]
    _check_size(msg.width, msg.height)
    row = msg.width * ch * dtype.itemsize
    if msg.step < row:
        raise ImageConversionError(f"step {msg.step} is smaller than a row ({msg.width} px x "
                                   f"{ch * dtype.itemsize} B = {row} B)")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != msg.step * msg.height:
        raise ImageConversionError(f"data has {data.size} B, expected step x height = "
                                   f"{msg.step} x {msg.height} = {msg.step * msg.height} B")
    rows = data.reshape(msg.height, msg.step)[:, :row]
    big = bool(msg.is_bigendian)
    arr = rows.copy().view(dtype.newbyteorder(">" if big else "<")).astype(dtype, copy=False)
    arr = arr.reshape(msg.height, msg.width, ch) if ch > 1 else arr.reshape(msg.height, msg.width)
    return _to_desired(arr, msg.encoding, desired_encoding)


def _to_desired(arr: np.ndarray, encoding: str, desired: str) -> np.ndarray:
    if desired in ("passthrough", encoding):
        return arr
    if {encoding, desired} == {"bgr8", "rgb8"}:
        return np.ascontiguousarray(arr[:, :, ::-1])
    if encoding == "mono8" and desired in ("bgr8", "rgb8"):
        return np.repeat(arr[:, :, None], 3, axis=2)
    if encoding in ("bgr8", "rgb8") and desired == "mono8":
        import cv2

        code = cv2.COLOR_BGR2GRAY if encoding == "bgr8" else cv2.COLOR_RGB2GRAY
        return cv2.cvtColor(arr, code)
    raise ImageConversionError(f"cannot convert {encoding} to {desired}")


def numpy_cv2_to_imgmsg(array: np.ndarray, encoding: str = "passthrough", header=None) -> Image:
    """Array -> Image message (``data`` filled from ``tobytes()``, the fast path)."""
    array = np.asarray(array)
    if encoding == "passthrough":
        encoding = {(np.dtype(np.uint8), 2): "mono8", (np.dtype(np.uint8), 3): "bgr8",
                    (np.dtype(np.uint16), 2): "16UC1", (np.dtype(np.float32), 2): "32FC1"}.get(
            (array.dtype, array.ndim), "")
    if encoding not in ENCODINGS:
        raise ImageConversionError(
            f"unsupported encoding {encoding!r} for array {array.dtype} {array.shape}")
    dtype, ch = ENCODINGS[encoding]
    if array.ndim == 3 and array.shape[2] == 1 and ch == 1:
        array = array[:, :, 0]
    shape_ok = array.ndim == 2 if ch == 1 else (array.ndim == 3 and array.shape[2] == ch)
    if array.dtype != dtype or not shape_ok:
        raise ImageConversionError(f"array {array.dtype} {array.shape} does not match {encoding}")
    _check_size(array.shape[1], array.shape[0])
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = sys.byteorder == "big"
    msg.step = msg.width * ch * dtype.itemsize
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


try:  # robots: the real cv_bridge (ROS 2); here: the numpy conversion above
    from cv_bridge import CvBridge as _CvBridge

    _BRIDGE = _CvBridge()

    def imgmsg_to_cv2(msg: Image, desired_encoding: str = "passthrough") -> np.ndarray:
        """Image message -> array (cv_bridge), with the same errors as the numpy path."""
        if msg.encoding not in ENCODINGS:
            raise ImageConversionError(f"unsupported encoding {msg.encoding!r}")
        _check_size(msg.width, msg.height)
        try:
            return np.array(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding), copy=True)
        except Exception as e:  # cv_bridge raises CvBridgeError / TypeError / ValueError
            raise ImageConversionError(str(e)) from e

    def cv2_to_imgmsg(array: np.ndarray, encoding: str = "passthrough", header=None) -> Image:
        """Array -> Image message (cv_bridge)."""
        try:
            msg = _BRIDGE.cv2_to_imgmsg(np.asarray(array), encoding, header)
        except Exception as e:
            raise ImageConversionError(str(e)) from e
        return msg

    BACKEND = "cv_bridge"
except Exception:  # ImportError, or a ROS 1 / broken cv_bridge
    imgmsg_to_cv2 = numpy_imgmsg_to_cv2
    cv2_to_imgmsg = numpy_cv2_to_imgmsg
    BACKEND = "numpy"


def to_detector_frame(msg: Image) -> np.ndarray:
    """Image message -> uint8 gray or BGR frame for the detector.

    bgr8, rgb8 and mono8 are camera images; 16UC1 (full range) and 32FC1 (intensity in [0, 1],
    every value finite) are scaled to mono8. Anything else raises :class:`ImageConversionError`.
    """
    frame = imgmsg_to_cv2(msg, "bgr8" if msg.encoding == "rgb8" else "passthrough")
    if msg.encoding == "16UC1":
        return (frame.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if msg.encoding == "32FC1":
        if not np.isfinite(frame).all():
            raise ImageConversionError(
                f"32FC1 image has {int((~np.isfinite(frame)).sum())} NaN/inf pixels")
        return (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return frame


__all__ = ["BACKEND", "ENCODINGS", "ImageConversionError", "cv2_to_imgmsg", "imgmsg_to_cv2",
           "numpy_cv2_to_imgmsg", "numpy_imgmsg_to_cv2", "to_detector_frame"]
