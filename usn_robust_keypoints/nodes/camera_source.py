"""``camera_source`` node: publishes ``image`` (sensor_msgs/Image) and ``camera_info``.

``source`` is ``synthetic`` (built-in chessboard stream), ``opencv-doc:<glob>`` (the opencv-doc
chessboard photos), a V4L2 camera (``0``, ``/dev/video0``), a video file, an image folder or a
glob; frames are published at ``rate`` Hz, looping at the end when ``loop`` is true.
``compressed`` (``jpeg`` | ``png``) also publishes ``image/compressed``
(sensor_msgs/CompressedImage, as image_transport does). ``rate`` and ``paused`` can be changed at
run time. A frame larger than the DDS shared-memory segment is published with a warning (counted
as ``oversize``), one larger than ``max_message_bytes`` (0 = no limit) is not (:mod:`.transport`).
Published frames are counted on ``diagnostics``.
"""

from __future__ import annotations

import cv2
import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from .diagnostics import DiagnosticsPublisher, FrameCounters
from .frame_sources import FrameSourceError, open_frames
from .image_conversion import COMPRESSED_FORMATS, ImageConversionError, compress, cv2_to_imgmsg
from .params import as_number, declare_number
from .qos import IMAGE_QOS_CHOICES, image_qos
from .runtime import spin_node
from .transport import SizeCheck

ENCODING_CHOICES = ("auto", "bgr8", "rgb8", "mono8")


def camera_info(header, width: int, height: int) -> CameraInfo:
    """A nominal pinhole ``CameraInfo`` (focal length = width, no distortion)."""
    f = float(width)
    info = CameraInfo(header=header, width=width, height=height, distortion_model="plumb_bob")
    info.d = [0.0] * 5
    info.k = [f, 0.0, (width - 1) / 2, 0.0, f, (height - 1) / 2, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [f, 0.0, (width - 1) / 2, 0.0, 0.0, f, (height - 1) / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def convert_frame(frame: np.ndarray, encoding: str) -> tuple[np.ndarray, str]:
    """Frame (gray or BGR) -> (array, encoding) for the requested ``encoding`` (``auto`` keeps it)."""
    gray = frame.ndim == 2
    if encoding == "auto":
        return frame, "mono8" if gray else "bgr8"
    if encoding == "mono8":
        return (frame if gray else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)), "mono8"
    bgr = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if gray else frame
    return (bgr if encoding == "bgr8" else np.ascontiguousarray(bgr[:, :, ::-1])), encoding


class CameraSourceNode(Node):
    """Publishes frames of a source at a fixed rate (composable: pass ``**kwargs`` to ``Node``)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("camera_source", **kwargs)
        self.declare_parameter("source", "synthetic")
        declare_number(self, "rate", 10.0, "frames per second")
        self.declare_parameter("loop", True)
        self.declare_parameter("frame_id", "camera")
        self.declare_parameter("width", 640)
        self.declare_parameter("height", 480)
        self.declare_parameter("encoding", "auto")
        self.declare_parameter("qos", "sensor_data")
        self.declare_parameter("max_frames", 0)
        self.declare_parameter("compressed", "")
        self.declare_parameter("paused", False)
        self.declare_parameter("max_message_bytes", 0)
        p = self.get_parameter
        self.published = 0
        self.counters = FrameCounters()
        self._size = SizeCheck(int(p("max_message_bytes").value))
        self._compressed = str(p("compressed").value)
        if self._compressed not in ("",) + COMPRESSED_FORMATS:
            self.get_logger().error(f"compressed must be '', jpeg or png, got {self._compressed!r}; not compressing")
            self._compressed = ""
        self._max_frames = int(p("max_frames").value)
        self._frame_id = str(p("frame_id").value)
        self._encoding = str(p("encoding").value)
        if self._encoding not in ENCODING_CHOICES:
            self.get_logger().error(f"encoding must be one of {ENCODING_CHOICES}, got {self._encoding!r}; using auto")
            self._encoding = "auto"
        qos = p("qos").value
        if qos not in IMAGE_QOS_CHOICES:
            self.get_logger().error(f"qos must be one of {IMAGE_QOS_CHOICES}, got {qos!r}; using sensor_data")
            qos = "sensor_data"
        self._image_pub = self.create_publisher(Image, "image", image_qos(qos))
        self._info_pub = self.create_publisher(CameraInfo, "camera_info", image_qos(qos))
        self._compressed_pub = None
        if self._compressed:
            self._compressed_pub = self.create_publisher(
                CompressedImage, self.resolve_topic_name("image") + "/compressed", image_qos(qos))
        self._diag = DiagnosticsPublisher(self, self.counters)
        self._timer = None
        source = str(p("source").value)
        try:
            self._frames = open_frames(source, int(p("width").value), int(p("height").value), bool(p("loop").value))
        except (FrameSourceError, RuntimeError) as e:
            self._frames = None
            self.get_logger().error(f"cannot open source {source!r}: {e}")
            return
        try:
            rate = _check_rate(p("rate").value)
        except ValueError as e:
            self.get_logger().error(f"{e}; using 10 Hz")
            rate = 10.0
        self.get_logger().info(f"publishing {source!r} at {rate:g} Hz on {self._image_pub.topic_name}"
                               + (f" (+ {self._compressed} on {self._compressed_pub.topic_name})"
                                  if self._compressed_pub else ""))
        self._timer = self.create_timer(1.0 / rate, self._tick)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _on_set_parameters(self, params) -> SetParametersResult:
        new = {q.name: q.value for q in params}
        if set(new) - {"rate", "paused"}:
            return SetParametersResult(successful=False, reason="only rate and paused can be changed at run time")
        if "rate" in new:
            try:
                rate = _check_rate(new["rate"])
            except ValueError as e:
                return SetParametersResult(successful=False, reason=str(e))
            if self._timer is not None and self._frames is not None:
                self._timer.cancel()
                self._timer = self.create_timer(1.0 / rate, self._tick)
        return SetParametersResult(successful=True)

    def _tick(self) -> None:
        if self._frames is None or self.get_parameter("paused").value:
            return
        frame = next(self._frames, None)
        if frame is None or (self._max_frames and self.published >= self._max_frames):
            self.get_logger().info(f"source finished after {self.published} frames")
            self._frames = None
            self._timer.cancel()
            return
        array, encoding = convert_frame(frame, self._encoding)
        msg = cv2_to_imgmsg(array, encoding)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self._frame_id
        self.counters.add(received=1)
        publish, problem = self._size.check(len(msg.data), f"frame {msg.width}x{msg.height} {msg.encoding}")
        if not publish:
            self.counters.reject(problem)
            self.get_logger().error(problem, throttle_duration_sec=10.0)
            return
        if problem:
            self.counters.add(oversize=1)
            self.get_logger().warning(problem, throttle_duration_sec=10.0)
        self._image_pub.publish(msg)
        if self._compressed_pub is not None:
            try:
                data = compress(array if encoding != "rgb8" else np.ascontiguousarray(array[:, :, ::-1]),
                                self._compressed)
                fmt = f"{encoding}; {self._compressed} compressed {'mono8' if array.ndim == 2 else 'bgr8'}"
                self._compressed_pub.publish(CompressedImage(header=msg.header, format=fmt, data=data))
            except ImageConversionError as e:
                self.get_logger().error(str(e), throttle_duration_sec=10.0)
        self._info_pub.publish(camera_info(msg.header, msg.width, msg.height))
        self.published += 1
        self.counters.done(0.0)


def _check_rate(value) -> float:
    rate = as_number("rate", value)
    if not (rate > 0 and rate < 1e4):
        raise ValueError(f"rate must be > 0 Hz, got {rate}")
    return rate


def main(args: list[str] | None = None) -> int:
    """Console entry point ``camera_source``."""
    return spin_node(CameraSourceNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
