"""``keypoint_detector`` node: images -> ``KeypointArray`` (+ annotated debug image).

Subscribes ``image`` (bgr8, rgb8, mono8; 16UC1 and 32FC1 are scaled to gray) or, with
``image_transport:=compressed``, ``image/compressed`` (jpeg/png; :mod:`.image_input`), publishes
``keypoints`` (usn_robust_keypoints_msgs/KeypointArray, the image's header) and ``debug_image``
(bgr8), and frame counts on ``diagnostics``. A bad frame or a missing model is logged, counted as
rejected, an unexpected error as failed, and the node keeps running. A debug image larger than the
DDS shared-memory segment is published with a warning, one above ``max_message_bytes`` (0 = no
limit) is not (:mod:`.transport`).
"""

from __future__ import annotations

import threading
import time

import torch
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import Image
from usn_robust_keypoints_msgs.msg import KeypointArray

from ..draw import draw_keypoints
from .diagnostics import ERROR, WARN, DiagnosticsPublisher, FrameCounters, clipped_frame, fail_frame, reject_frame
from .image_conversion import ImageConversionError, cv2_to_imgmsg, detector_frame
from .image_input import subscribe_image
from .messages import prediction_to_msg
from .model_loading import load_node_model
from .qos import image_qos, qos_name_or_default
from .runtime import spin_node
from .transport import SizeCheck


class KeypointDetectorNode(Node):
    """Runs the detector on every received image (composable: pass ``**kwargs`` to ``Node``)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("keypoint_detector", **kwargs)
        self.declare_parameter("model_path", "")
        self.declare_parameter("device", "auto")
        self.declare_parameter("qos", "sensor_data")
        self.declare_parameter("publish_debug_image", True)
        self.declare_parameter("num_threads", 1)
        self.declare_parameter("image_transport", "raw")  # raw | compressed (image/compressed)
        self.declare_parameter("max_message_bytes", 0)
        p = self.get_parameter
        self._size = SizeCheck(int(p("max_message_bytes").value))
        qos = qos_name_or_default(p("qos").value, self.get_logger())
        torch.set_num_threads(max(1, int(p("num_threads").value)))
        self.counters = FrameCounters()
        self._lock = threading.Lock()
        self.model = None
        self._try_load(p("model_path").value, p("device").value)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._kp_pub = self.create_publisher(KeypointArray, "keypoints", 10)
        self._debug_pub = self.create_publisher(Image, "debug_image", image_qos(qos))
        subscribe_image(self, self._on_image, image_qos(qos))
        self._diag = DiagnosticsPublisher(self, self.counters)

    def _try_load(self, path: str, device: str) -> None:
        try:
            self.model = load_node_model(path, device)
            self.get_logger().info(f"model {self.model.path} on {self.model.device}")
        except ValueError as e:
            self.model = None
            self.counters.set_error(str(e))
            self.get_logger().error(f"{e}; every frame is rejected until model_path is fixed")

    def _on_set_parameters(self, params) -> SetParametersResult:
        new = {q.name: q.value for q in params}
        if {"qos", "num_threads", "image_transport", "max_message_bytes"} & set(new):
            return SetParametersResult(successful=False, reason="qos, num_threads, image_transport and "
                                                                "max_message_bytes are read-only at run time")
        if "device" in new and new["device"] not in ("auto", "cpu") and not str(new["device"]).startswith("cuda"):
            return SetParametersResult(successful=False, reason="device must be auto, cpu or cuda")
        if "model_path" in new or "device" in new:
            path = new.get("model_path", self.get_parameter("model_path").value)
            device = new.get("device", self.get_parameter("device").value)
            try:
                model = load_node_model(path, device)
            except ValueError as e:
                return SetParametersResult(successful=False, reason=str(e))
            with self._lock:
                self.model = model
        return SetParametersResult(successful=True)

    def _on_image(self, msg) -> None:
        self.counters.add(received=1)
        with self._lock:
            model = self.model
        if model is None:
            self._reject(msg, "no model loaded (see model_path)", ERROR)
            return
        try:
            frame, clipped = detector_frame(msg)
            t0 = time.perf_counter()
            pred = model.predict(frame)
            dt = (time.perf_counter() - t0) * 1e3
            self._kp_pub.publish(prediction_to_msg(pred, model.keypoint_names, msg.header))
            if self.get_parameter("publish_debug_image").value and self._debug_pub.get_subscription_count():
                self._publish_debug(cv2_to_imgmsg(draw_keypoints(frame, pred.keypoints, model.keypoint_names),
                                                  "bgr8", msg.header))
        except (ImageConversionError, ValueError) as e:
            self._reject(msg, str(e))
            return
        except Exception as e:  # noqa: BLE001 - a bug must not stop the node: counted, logged, ERROR
            fail_frame(self, self.counters, msg, e)
            return
        if clipped:
            clipped_frame(self, self.counters, msg, clipped)
        self.counters.done(dt)

    def _publish_debug(self, img: Image) -> None:
        publish, problem = self._size.check(len(img.data), f"debug image {img.width}x{img.height}")
        if problem:
            log = self.get_logger().warning if publish else self.get_logger().error
            log(problem, throttle_duration_sec=10.0)
        if publish:
            self._debug_pub.publish(img)

    def _reject(self, msg, reason: str, level: bytes = WARN) -> None:
        reject_frame(self, self.counters, msg, reason, level)


def main(args: list[str] | None = None) -> int:
    """Console entry point ``keypoint_detector``."""
    return spin_node(KeypointDetectorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
