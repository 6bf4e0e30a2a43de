"""``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` -> numpy, numpy -> ``Image``.

The real ``cv_bridge`` is used when it imports *and* passes a round-trip self-test at import
(robots); otherwise (no cv_bridge, or PyPI's ROS 1 ``cv-bridge``, which fails under numpy 2 and
maps 16UC1 to 8 bit) an equivalent numpy conversion with the same two functions for bgr8, rgb8,
mono8, 16UC1 and 32FC1. ``BACKEND`` says which one; ``BRIDGE_REJECTED`` why cv_bridge was not used.

Every problem (unsupported encoding or compression format, zero size, a step or data length that
does not match the size, data that does not decode) raises :class:`ImageConversionError` with the
reason. The functions read only message fields, so they also take the message objects of
``rosbags`` (no rclpy needed for reading); building an ``Image`` needs ``sensor_msgs``.
"""

from __future__ import annotations

import sys

import numpy as np

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


def numpy_imgmsg_to_cv2(msg, desired_encoding: str = "passthrough") -> np.ndarray:
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


def numpy_cv2_to_imgmsg(array: np.ndarray, encoding: str = "passthrough", header=None):
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
    from sensor_msgs.msg import Image

    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = sys.byteorder == "big"
    msg.step = msg.width * ch * dtype.itemsize
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg



COMPRESSED_FORMATS = ("jpeg", "png")
_MAGIC = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}


def compressed_format(fmt: str) -> str:
    """``jpeg`` or ``png`` from a CompressedImage ``format`` (``"jpeg"``, ``"png"``, or
    image_transport's ``"bgr8; jpeg compressed bgr8"``); anything else raises."""
    f = str(fmt).lower()
    if "compresseddepth" in f.replace(" ", ""):
        raise ImageConversionError(f"unsupported compressed format {fmt!r} (compressedDepth); use jpeg or png")
    found = [c for c in COMPRESSED_FORMATS if c in f or (c == "jpeg" and "jpg" in f)]
    if len(found) != 1:
        raise ImageConversionError(f"unsupported compressed format {fmt!r} (supported: jpeg, png)")
    return found[0]


def compressed_to_cv2(msg) -> np.ndarray:
    """CompressedImage (jpeg/png) -> decoded array as stored: uint8/uint16, gray, BGR or BGRA."""
    import cv2

    kind = compressed_format(msg.format)
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageConversionError("compressed image has no data")
    if bytes(data[:len(_MAGIC[kind])]) != _MAGIC[kind]:
        raise ImageConversionError(f"compressed data is not {kind} (format {msg.format!r})")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageConversionError(f"cannot decode the {data.size} B of {kind} data (truncated or corrupt)")
    return img


def compress(array: np.ndarray, fmt: str = "jpeg", quality: int = 95) -> bytes:
    """uint8 gray/BGR (or uint16 gray for png) array -> jpeg/png bytes (image_transport's encoding)."""
    import cv2

    kind = compressed_format(fmt)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if kind == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buf = cv2.imencode(".jpg" if kind == "jpeg" else ".png", np.asarray(array), params)
    if not ok:
        raise ImageConversionError(f"cannot encode {np.asarray(array).dtype} {np.asarray(array).shape} as {kind}")
    return buf.tobytes()


def _self_test(to_msg, to_arr) -> None:
    """Round trips of every supported encoding must give back the same array (raises if not)."""
    rng = np.random.default_rng(0)
    arrays = {"bgr8": rng.integers(0, 256, (3, 5, 3), dtype=np.uint8),
              "mono8": rng.integers(0, 256, (3, 5), dtype=np.uint8),
              "16UC1": rng.integers(0, 65536, (3, 5), dtype=np.uint16),
              "32FC1": rng.random((3, 5), dtype=np.float32)}
    for enc, a in arrays.items():
        msg = to_msg(a, enc)
        b = np.asarray(to_arr(msg, "passthrough"))
        if msg.encoding != enc or b.dtype != a.dtype or b.shape != a.shape or not np.array_equal(a, b):
            raise ValueError(f"{enc} round trip gave {msg.encoding} {b.dtype} {b.shape}")


def _load_cv_bridge():
    """``(imgmsg_to_cv2, cv2_to_imgmsg)`` of the real cv_bridge when it passes the self-test."""
    from cv_bridge import CvBridge

    bridge = CvBridge()

    def imgmsg_to_cv2(msg, desired_encoding: str = "passthrough") -> np.ndarray:
        """Image message -> array (cv_bridge), with the same errors as the numpy path."""
        if msg.encoding not in ENCODINGS:
            raise ImageConversionError(f"unsupported encoding {msg.encoding!r}")
        _check_size(msg.width, msg.height)
        try:
            return np.array(bridge.imgmsg_to_cv2(msg, desired_encoding), copy=True)
        except Exception as e:  # cv_bridge raises CvBridgeError / TypeError / ValueError
            raise ImageConversionError(str(e)) from e

    def cv2_to_imgmsg(array: np.ndarray, encoding: str = "passthrough", header=None):
        """Array -> Image message (cv_bridge)."""
        try:
            return bridge.cv2_to_imgmsg(np.asarray(array), encoding, header)
        except Exception as e:
            raise ImageConversionError(str(e)) from e

    _self_test(cv2_to_imgmsg, imgmsg_to_cv2)
    return imgmsg_to_cv2, cv2_to_imgmsg


BRIDGE_REJECTED = ""
try:  # robots: the real cv_bridge (ROS 2), if it converts correctly; here: the numpy conversion above
    imgmsg_to_cv2, cv2_to_imgmsg = _load_cv_bridge()
    BACKEND = "cv_bridge"
except Exception as _e:  # ImportError, or a ROS 1 / broken cv_bridge (numpy 2, 16UC1 -> 8 bit, ...)
    imgmsg_to_cv2, cv2_to_imgmsg = numpy_imgmsg_to_cv2, numpy_cv2_to_imgmsg
    BACKEND = "numpy"
    BRIDGE_REJECTED = "" if isinstance(_e, ModuleNotFoundError) and _e.name == "cv_bridge" else \
        f"cv_bridge failed its self-test ({type(_e).__name__}: {_e}); using the numpy conversion"


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint16:
        return (frame.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    return frame


def detector_frame(msg, to_array=None) -> tuple[np.ndarray, int]:
    """Image or CompressedImage message -> (uint8 gray or BGR frame for the detector, number of
    pixels clipped to [0, 1]).

    bgr8, rgb8 and mono8 are camera images; 16UC1 (full range) and 32FC1 (intensity in [0, 1],
    every value finite; values outside are clipped and counted) are scaled to mono8. Compressed
    jpeg/png decode to gray or BGR (16-bit png scaled like 16UC1, alpha dropped). Anything else
    raises :class:`ImageConversionError`. ``to_array`` replaces :func:`imgmsg_to_cv2`.
    """
    if hasattr(msg, "format"):  # sensor_msgs/CompressedImage
        import cv2

        img = compressed_to_cv2(msg)
        if img.ndim == 3 and img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        if img.dtype not in (np.uint8, np.uint16) or not (img.ndim == 2 or img.shape[2] == 3):
            raise ImageConversionError(f"decoded {img.dtype} {img.shape} image is not gray or BGR")
        return _to_uint8(img), 0
    to_array = to_array or imgmsg_to_cv2
    frame = to_array(msg, "bgr8" if msg.encoding == "rgb8" else "passthrough")
    if msg.encoding == "16UC1":
        return _to_uint8(frame), 0
    if msg.encoding == "32FC1":
        if not np.isfinite(frame).all():
            raise ImageConversionError(
                f"32FC1 image has {int((~np.isfinite(frame)).sum())} NaN/inf pixels")
        clipped = int(((frame < 0.0) | (frame > 1.0)).sum())
        return (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), clipped
    return frame, 0


def to_detector_frame(msg) -> np.ndarray:
    """:func:`detector_frame` without the clip count."""
    return detector_frame(msg)[0]


__all__ = ["BACKEND", "BRIDGE_REJECTED", "COMPRESSED_FORMATS", "ENCODINGS", "ImageConversionError", "compress",
           "compressed_format", "compressed_to_cv2", "cv2_to_imgmsg", "detector_frame", "imgmsg_to_cv2",
           "numpy_cv2_to_imgmsg", "numpy_imgmsg_to_cv2", "to_detector_frame"]
