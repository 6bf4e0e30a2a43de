"""Frame counters of a node, published as ``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics``.

Every frame a node receives ends in exactly one of processed, skipped (replaced by a newer frame
before the certifier got to it), rejected (bad input, or no model) or failed (an internal error
while processing it), so ``received = processed + skipped + rejected + failed + pending``.
(camera_source: received = frames read, processed = published, rejected = too large to publish.)
The level follows the latest outcome: OK after a processed frame, WARN after a rejected one,
ERROR after a failure or while no model is loaded; the last error and its time stay as fields.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
COUNTS = ("received", "processed", "skipped", "rejected", "failed", "clipped", "oversize")


@dataclass
class FrameCounters:
    """Thread-safe frame counts, the current level and the last error (with its wall time)."""

    received: int = 0
    processed: int = 0
    skipped: int = 0
    rejected: int = 0
    failed: int = 0
    clipped: int = 0  # processed 32FC1 frames with values outside [0, 1] (clipped)
    oversize: int = 0  # published frames larger than the DDS shared-memory segment (see transport.py)
    last_error: str = ""
    last_error_time: float = 0.0  # time.time() of last_error, 0 = never
    last_time_ms: float = 0.0
    level: bytes = OK
    message: str = "ok"
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def _error(self, reason: str, level: bytes) -> None:
        self.last_error, self.last_error_time = reason, time.time()
        self.level, self.message = level, reason

    def done(self, time_ms: float) -> None:
        """A frame was processed: back to OK (the last error is kept as a field)."""
        with self._lock:
            self.processed += 1
            self.last_time_ms = time_ms
            self.level, self.message = OK, "ok"

    def reject(self, reason: str, level: bytes = WARN) -> None:
        """A frame was refused (bad input: WARN; no model: ERROR)."""
        with self._lock:
            self.rejected += 1
            self._error(reason, level)

    def fail(self, reason: str) -> None:
        """Processing a frame raised an unexpected error (ERROR)."""
        with self._lock:
            self.failed += 1
            self._error(reason, ERROR)

    def set_error(self, reason: str) -> None:
        """A node-level error without a frame (e.g. no model loaded): ERROR until a frame is processed."""
        with self._lock:
            self._error(reason, ERROR)

    def snapshot(self) -> dict[str, str]:
        with self._lock:
            elapsed = max(time.monotonic() - self.started, 1e-9)
            out = {k: str(getattr(self, k)) for k in COUNTS}
            t = self.last_error_time
            out.update({"processed_fps": f"{self.processed / elapsed:.2f}", "last_time_ms": f"{self.last_time_ms:.2f}",
                        "last_error": self.last_error,
                        "last_error_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else "",
                        "last_error_age_s": f"{time.time() - t:.1f}" if t else ""})
            return out

    def status(self) -> tuple[bytes, str]:
        """Current diagnostics level and message."""
        with self._lock:
            return self.level, self.message


class DiagnosticsPublisher:
    """Publishes a node's :class:`FrameCounters` on ``diagnostics`` every ``period_s``."""

    def __init__(self, node: Node, counters: FrameCounters, period_s: float = 1.0) -> None:
        self._node = node
        self._counters = counters
        self._pub = node.create_publisher(DiagnosticArray, "diagnostics", 10)
        self._timer = node.create_timer(period_s, self.publish)

    def publish(self) -> None:
        values = self._counters.snapshot()
        status = DiagnosticStatus(name=f"usn_robust_keypoints/{self._node.get_name()}",
                                  hardware_id=self._node.get_fully_qualified_name())
        status.level, status.message = self._counters.status()
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(msg)


def reject_frame(node: Node, counters: FrameCounters, msg, reason: str, level: bytes = WARN) -> None:
    """Count the rejected image ``msg`` (Image or CompressedImage) and log why (the node keeps running)."""
    from .image_input import describe

    counters.reject(reason, level)
    node.get_logger().error(f"rejected frame {describe(msg)}: {reason}")


def fail_frame(node: Node, counters: FrameCounters, msg, error: Exception) -> None:
    """Count an unexpected error while processing ``msg`` as failed (ERROR) and log it."""
    from .image_input import describe

    reason = f"internal error on frame {describe(msg)}: {type(error).__name__}: {error}"
    counters.fail(reason)
    node.get_logger().error(reason)


def clipped_frame(node: Node, counters: FrameCounters, msg, pixels: int) -> None:
    """Count a float frame whose values outside [0, 1] were clipped and warn (throttled)."""
    from .image_input import describe

    counters.add(clipped=1)
    node.get_logger().warning(f"frame {describe(msg)}: {pixels} pixels outside [0, 1] clipped",
                              throttle_duration_sec=5.0)
