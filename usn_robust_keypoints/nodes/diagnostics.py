"""Frame counters of a node, published as ``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics``."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node


@dataclass
class FrameCounters:
    """Thread-safe counts of received, processed, skipped and rejected frames."""

    received: int = 0
    processed: int = 0
    skipped: int = 0
    rejected: int = 0
    last_error: str = ""
    last_time_ms: float = 0.0
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected += 1
            self.last_error = reason

    def snapshot(self) -> dict[str, str]:
        with self._lock:
            elapsed = max(time.monotonic() - self.started, 1e-9)
            return {"received": str(self.received), "processed": str(self.processed),
                    "skipped": str(self.skipped), "rejected": str(self.rejected),
                    "processed_fps": f"{self.processed / elapsed:.2f}",
                    "last_time_ms": f"{self.last_time_ms:.2f}", "last_error": self.last_error}


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
        status.level = DiagnosticStatus.WARN if values["last_error"] else DiagnosticStatus.OK
        status.message = values["last_error"] or "ok"
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(msg)


def reject_frame(node: Node, counters: FrameCounters, msg, reason: str) -> None:
    """Count the rejected ``sensor_msgs/Image`` ``msg`` and log why (the node keeps running)."""
    counters.reject(reason)
    node.get_logger().error(f"rejected frame {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d} "
                            f"({msg.encoding}, {msg.width}x{msg.height}): {reason}")
