"""``PipelineMonitor``: an in-process node that records what the pipeline publishes (images,
keypoints, certificates, diagnostics) with receive times — for the demo, the benchmark and tests."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import Image
from usn_robust_keypoints_msgs.msg import CertifiedKeypoints, KeypointArray

from .diagnostics import COUNTS
from .image_conversion import ImageConversionError, imgmsg_to_cv2
from .qos import image_qos


def stamp_ns(header) -> int:
    """Header stamp in integer nanoseconds (the key that ties an image to its results)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


@dataclass
class Received:
    """A message and the wall time (``time.time()``) it arrived."""

    msg: object
    t: float


class PipelineMonitor(Node):
    """Subscribes ``image``, ``keypoints``, ``certified_keypoints`` and ``diagnostics``.

    Keeps the last ``keep_images`` images (decoded, by stamp) and every result message."""

    def __init__(self, name: str = "usn_monitor", keep_images: int = 60, qos: str = "sensor_data", **kwargs) -> None:
        super().__init__(name, **kwargs)
        self._lock = threading.Lock()
        self.images: OrderedDict[int, np.ndarray] = OrderedDict()
        self.image_times: dict[int, float] = {}
        self.keep_images = keep_images
        self.image_count = 0
        self.keypoints: list[Received] = []
        self.certificates: list[Received] = []
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.diagnostics_times: dict[str, float] = {}
        self.recent_cert_times: deque[float] = deque(maxlen=200)
        self.recent_kp_times: deque[float] = deque(maxlen=200)
        self.create_subscription(Image, "image", self._on_image, image_qos(qos))
        self.create_subscription(KeypointArray, "keypoints", self._on_keypoints, 50)
        self.create_subscription(CertifiedKeypoints, "certified_keypoints", self._on_cert, 50)
        self.create_subscription(DiagnosticArray, "diagnostics", self._on_diag, 50)

    def _on_image(self, msg: Image) -> None:
        try:
            frame = imgmsg_to_cv2(msg)
        except ImageConversionError:
            return
        with self._lock:
            key = stamp_ns(msg.header)
            self.images[key] = frame
            self.image_times[key] = time.time()
            self.image_count += 1
            while len(self.images) > self.keep_images:
                old, _ = self.images.popitem(last=False)
                self.image_times.pop(old, None)

    def _on_keypoints(self, msg: KeypointArray) -> None:
        with self._lock:
            now = time.time()
            self.keypoints.append(Received(msg, now))
            self.recent_kp_times.append(now)

    def _on_cert(self, msg: CertifiedKeypoints) -> None:
        with self._lock:
            now = time.time()
            self.certificates.append(Received(msg, now))
            self.recent_cert_times.append(now)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self._lock:
            for s in msg.status:
                self.diagnostics[s.name.split("/")[-1]] = {**{kv.key: kv.value for kv in s.values},
                                                           "level": str(int.from_bytes(s.level, "little")),
                                                           "message": s.message}
                self.diagnostics_times[s.name.split("/")[-1]] = time.time()

    def image(self, key: int) -> np.ndarray | None:
        """The image with stamp ``key`` (ns) if still kept."""
        with self._lock:
            return self.images.get(key)

    def counts(self, node: str) -> dict[str, int]:
        """Latest frame counts (received, processed, skipped, rejected, failed, clipped) that ``node`` published."""
        with self._lock:
            d = self.diagnostics.get(node, {})
        return {k: int(d[k]) for k in COUNTS if k in d}

    def diagnostics_time(self, node: str) -> float:
        """``time.time()`` when the last diagnostics of ``node`` arrived (0 = never)."""
        with self._lock:
            return self.diagnostics_times.get(node, 0.0)

    def image_times_recent(self) -> list[float]:
        """Receive times of the images still kept."""
        with self._lock:
            return sorted(self.image_times.values())

    @staticmethod
    def rate(times, window: float = 3.0) -> float:
        """Messages per second over the last ``window`` seconds."""
        now = time.time()
        recent = [t for t in times if now - t <= window]
        return (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) >= 2 and recent[-1] > recent[0] else 0.0
