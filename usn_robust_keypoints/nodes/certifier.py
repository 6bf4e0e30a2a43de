"""``certifier`` node: images -> ``CertifiedKeypoints`` (per-keypoint certified margins).

Subscribes ``image`` (or ``image/compressed``, see :mod:`.image_input`), rejects bad frames at
once, and keeps only the latest good frame: a worker thread certifies it within
``budget_ms`` while newer frames replace older unprocessed ones, which are counted as skipped —
so the certifier never slows down the camera or the detector (run it as its own node/process).
The budget counts from the frame's arrival: time a frame waited for the worker is taken out of its
certification time, so a certificate is published at most about ``budget_ms`` after its image.
Publishes ``certified_keypoints`` (usn_robust_keypoints_msgs/CertifiedKeypoints, the image's
header) and processed/skipped/rejected/failed counts on ``diagnostics``. ``alpha``, ``beta``,
``radius``, ``backend``, ``budget_ms``, ``margins``, ``warm_start`` (each frame's search starts from
the previous frame's partition of the box; the proof is still made per frame), ``model_path`` and
``device`` can be changed at run time (integers are fine for the numbers); invalid values, and a
backend that cannot run here, are refused with a reason. An unexpected error while certifying a frame is counted as failed,
logged, turns the diagnostics to ERROR, and the worker goes on with the next frame.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import rclpy
import rclpy.parameter
import torch
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from usn_robust_keypoints_msgs.msg import CertifiedKeypoints

from ..certify import WarmStart, certify, validate_request
from .diagnostics import ERROR, WARN, DiagnosticsPublisher, FrameCounters, clipped_frame, fail_frame, reject_frame
from .image_conversion import ImageConversionError, detector_frame
from .image_input import subscribe_image
from .messages import certificate_to_msg
from .model_loading import load_node_model
from .params import as_number, declare_number
from .qos import image_qos, qos_name_or_default
from .runtime import spin_node


@dataclass(frozen=True)
class CertifierSettings:
    """One consistent set of certification parameters (validated)."""

    alpha: float = 0.02
    beta: float = 0.02
    radius: float = 4.0
    backend: str = "native"
    budget_ms: float = 120.0
    margins: bool = True
    warm_start: bool = True  # start each frame's search from the previous frame's partition

    def validate(self) -> None:
        """Raise ``ValueError`` with the reason when a value is out of range (the rules of
        :func:`usn_robust_keypoints.certify.validate_request`; ``budget_ms`` 0 = no budget) or
        when the backend cannot run here (auto_lirpa without auto_LiRPA: refused when set, not by
        every frame in the worker)."""
        validate_request((self.alpha, self.beta), self.radius, self.backend,
                         None if self.budget_ms == 0 else self.budget_ms)
        if self.backend == "auto_lirpa":
            from ..certify.lirpa import import_lirpa

            try:
                import_lirpa()
            except ImportError as e:
                raise ValueError(f"backend auto_lirpa cannot run here: {e}") from e


def remaining_budget_ms(budget_ms: float, waited_ms: float) -> float | None:
    """The certification budget left to a frame that waited ``waited_ms`` since its arrival
    (``None`` = no budget when ``budget_ms`` is 0; at least 0, which yields UNKNOWN at once)."""
    if budget_ms <= 0:
        return None
    return max(0.0, budget_ms - waited_ms)


class CertifierNode(Node):
    """Certifies the latest image in a worker thread (composable: pass ``**kwargs`` to ``Node``)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("certifier", **kwargs)
        d = CertifierSettings()
        self.declare_parameter("model_path", "")
        self.declare_parameter("device", "auto")
        declare_number(self, "alpha", d.alpha, "contrast c in [1 - alpha, 1 + alpha]")
        declare_number(self, "beta", d.beta, "brightness b in [-beta, beta]")
        declare_number(self, "radius", d.radius, "px: certified when the keypoint provably stays within it")
        self.declare_parameter("backend", d.backend)
        declare_number(self, "budget_ms", d.budget_ms, "per frame from its arrival; 0 = no budget")
        self.declare_parameter("margins", d.margins)
        self.declare_parameter("warm_start", d.warm_start)
        self.declare_parameter("qos", "sensor_data")
        self.declare_parameter("num_threads", 1)
        self.declare_parameter("image_transport", "raw")  # raw | compressed (image/compressed)
        p = self.get_parameter
        qos = qos_name_or_default(p("qos").value, self.get_logger())
        torch.set_num_threads(max(1, int(p("num_threads").value)))
        self.counters = FrameCounters()
        self._lock = threading.Condition()
        self._latest: tuple[object, np.ndarray, float] | None = None
        self._stop = False
        self._warm = WarmStart()  # per stream: the previous frame's partitions (the worker's only)
        self.model = None
        try:
            self.settings = self._settings_from({})
        except ValueError as e:
            self.get_logger().error(f"{e}; using the defaults")
            self.settings = d
            self.set_parameters([rclpy.parameter.Parameter(k, value=getattr(d, k)) for k in
                                 ("alpha", "beta", "radius", "backend", "budget_ms", "margins")])
        try:
            self.model = load_node_model(p("model_path").value, p("device").value)
            self.get_logger().info(f"model {self.model.path} on {self.model.device}; {self.settings}")
        except ValueError as e:
            self.counters.set_error(str(e))
            self.get_logger().error(f"{e}; every frame is rejected until model_path is fixed")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._pub = self.create_publisher(CertifiedKeypoints, "certified_keypoints", 10)
        # Queue depth 5, not 1: while the worker certifies, the executor can lag behind the camera, and a
        # depth-1 queue would let DDS drop frames unseen. Every frame reaches _on_image, which validates it
        # (rejected) or replaces the pending one (skipped), so the counts account for every frame.
        subscribe_image(self, self._on_image, image_qos(qos))
        self._diag = DiagnosticsPublisher(self, self.counters)
        self._worker = threading.Thread(target=self._work, name="certifier_worker", daemon=True)
        self._worker.start()

    def _settings_from(self, new: dict) -> CertifierSettings:
        def get(name: str):
            return new[name] if name in new else self.get_parameter(name).value

        s = CertifierSettings(alpha=as_number("alpha", get("alpha")), beta=as_number("beta", get("beta")),
                              radius=as_number("radius", get("radius")), backend=str(get("backend")),
                              budget_ms=as_number("budget_ms", get("budget_ms")), margins=bool(get("margins")),
                              warm_start=bool(get("warm_start")))
        s.validate()
        return s

    def _on_set_parameters(self, params) -> SetParametersResult:
        new = {q.name: q.value for q in params}
        if {"qos", "num_threads", "image_transport"} & set(new):
            return SetParametersResult(successful=False,
                                       reason="qos, num_threads and image_transport are read-only at run time")
        try:
            settings = self._settings_from(new)
            model = None
            if "model_path" in new or "device" in new:
                model = load_node_model(new.get("model_path", self.get_parameter("model_path").value),
                                        new.get("device", self.get_parameter("device").value))
        except (TypeError, ValueError) as e:
            return SetParametersResult(successful=False, reason=str(e))
        with self._lock:
            self.settings = settings
            if model is not None:
                self.model = model
        self.get_logger().info(f"parameters changed: {settings}")
        return SetParametersResult(successful=True)

    def _on_image(self, msg) -> None:
        self.counters.add(received=1)
        try:  # validated here, so every bad frame is counted as rejected (never silently skipped)
            frame, clipped = detector_frame(msg)
        except ImageConversionError as e:
            self._reject(msg, str(e))
            return
        except Exception as e:  # noqa: BLE001 - a bug must not stop the node: counted, logged, ERROR
            self._fail(msg, e)
            return
        if clipped:
            clipped_frame(self, self.counters, msg, clipped)
        with self._lock:
            if self._latest is not None:
                self.counters.add(skipped=1)
            self._latest = (msg, frame, time.perf_counter())
            self._lock.notify()

    def _work(self) -> None:
        while True:
            with self._lock:
                while self._latest is None and not self._stop:
                    self._lock.wait()
                if self._stop:
                    return
                (msg, frame, arrived), self._latest = self._latest, None
                model, s = self.model, self.settings
            if model is None:
                self._reject(msg, "no model loaded (see model_path)", ERROR)
                continue
            try:
                t0 = time.perf_counter()
                cert = certify(model, frame, alpha=s.alpha, beta=s.beta, radius=s.radius, backend=s.backend,
                               budget_ms=remaining_budget_ms(s.budget_ms, (t0 - arrived) * 1e3), margins=s.margins,
                               warm_start=self._warm if s.warm_start else None)
                dt = (time.perf_counter() - t0) * 1e3
                name = model.path.name if model.path is not None else ""
                out = certificate_to_msg(cert, msg.header, name)
            except ValueError as e:
                self._reject(msg, str(e))
                continue
            except Exception as e:  # noqa: BLE001 - the worker survives anything: counted, logged, ERROR
                self._fail(msg, e)
                continue
            try:
                self._pub.publish(out)
            except Exception as e:  # noqa: BLE001
                if self._stop or not rclpy.ok(context=self.context):
                    return  # the context was shut down while certifying (Ctrl-C)
                self._fail(msg, e)
                continue
            self.counters.done(dt)

    def _reject(self, msg, reason: str, level: bytes = WARN) -> None:
        reject_frame(self, self.counters, msg, reason, level)

    def _fail(self, msg, error: Exception) -> None:
        fail_frame(self, self.counters, msg, error)

    def close(self) -> None:
        """Stop the worker thread (called before ``destroy_node``)."""
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        self._worker.join(timeout=5.0)


def main(args: list[str] | None = None) -> int:
    """Console entry point ``certifier``."""
    return spin_node(CertifierNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
