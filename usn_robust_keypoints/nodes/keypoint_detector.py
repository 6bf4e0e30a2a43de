"""``keypoint_detector`` node: images -> ``KeypointArray`` (+ annotated debug image).

Subscribes ``image`` (bgr8, rgb8, mono8; 16UC1 and 32FC1 are scaled to gray), publishes
``keypoints`` (usn_robust_keypoints_msgs/KeypointArray, the image's header) and ``debug_image``
(bgr8), and frame counts on ``diagnostics``. A bad frame or a missing model is logged, counted as
rejected, and the node keeps running.
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
from .diagnostics import DiagnosticsPublisher, FrameCounters, reject_frame
from .image_conversion import ImageConversionError, cv2_to_imgmsg, to_detector_frame
from .messages import prediction_to_msg
from .model_loading import load_node_model
from .qos import image_qos, qos_name_or_default
from .runtime import spin_node


class KeypointDetectorNode(Node):
    """Runs the detector on every received image (composable: pass ``**kwargs`` to ``Node``)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("keypoint_detector", **kwargs)
        self.declare_parameter("model_path", "")
        self.declare_parameter("device", "auto")
        self.declare_parameter("qos", "sensor_data")
        self.declare_parameter("publish_debug_image", True)
        self.declare_parameter("num_threads", 1)
        p = self.get_parameter
        qos = qos_name_or_default(p("qos").value, self.get_logger())
        torch.set_num_threads(max(1, int(p("num_threads").value)))
        self.counters = FrameCounters()
        self._lock = threading.Lock()
        self.model = None
        self._try_load(p("model_path").value, p("device").value)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._kp_pub = self.create_publisher(KeypointArray, "keypoints", 10)
        self._debug_pub = self.create_publisher(Image, "debug_image", image_qos(qos))
        self.create_subscription(Image, "image", self._on_image, image_qos(qos))
        self._diag = DiagnosticsPublisher(self, self.counters)

    def _try_load(self, path: str, device: str) -> None:
        try:
            self.model = load_node_model(path, device)
            self.get_logger().info(f"model {self.model.path} on {self.model.device}")
        except ValueError as e:
            self.model = None
            self.counters.last_error = str(e)
            self.get_logger().error(f"{e}; every frame is rejected until model_path is fixed")

    def _on_set_parameters(self, params) -> SetParametersResult:
        new = {q.name: q.value for q in params}
        if "qos" in new or "num_threads" in new:
            return SetParametersResult(successful=False, reason="qos and num_threads are read-only at run time")
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

    def _on_image(self, msg: Image) -> None:
        self.counters.add(received=1)
        with self._lock:
            model = self.model
        if model is None:
            self._reject(msg, "no model loaded (see model_path)")
            return
        try:
            frame = to_detector_frame(msg)
            t0 = time.perf_counter()
            pred = model.predict(frame)
            dt = (time.perf_counter() - t0) * 1e3
        except (ImageConversionError, ValueError) as e:
            self._reject(msg, str(e))
            return
        self._kp_pub.publish(prediction_to_msg(pred, model.keypoint_names, msg.header))
        if self.get_parameter("publish_debug_image").value and self._debug_pub.get_subscription_count():
            self._debug_pub.publish(cv2_to_imgmsg(draw_keypoints(frame, pred.keypoints, model.keypoint_names),
                                                  "bgr8", msg.header))
        self.counters.add(processed=1)
        self.counters.last_time_ms = dt

    def _reject(self, msg: Image, reason: str) -> None:
        reject_frame(self, self.counters, msg, reason)


def main(args: list[str] | None = None) -> int:
    """Console entry point ``keypoint_detector``."""
    return spin_node(KeypointDetectorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
