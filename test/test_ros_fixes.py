"""The nodes' reliability fixes, each checked on the real node classes (in-process, frames handed to
the subscription callbacks) or the real processes: repeated Ctrl-C, integers for doubles, an
unrunnable backend, errors inside the worker, diagnostics levels, clipped 32FC1, oversize frames,
cv_bridge self-test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.parameter import Parameter  # noqa: E402
from ros_support import ROOT, wait_for  # noqa: E402

from usn_robust_keypoints.nodes import certifier as certifier_module  # noqa: E402
from usn_robust_keypoints.nodes.diagnostics import ERROR, OK, WARN  # noqa: E402
from usn_robust_keypoints.nodes.image_conversion import cv2_to_imgmsg  # noqa: E402


@pytest.fixture
def ros_context(tmp_path, monkeypatch):
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "ros"))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    made = []

    def make(cls, *params: str):
        ctx = rclpy.Context()
        rclpy.init(context=ctx, args=["--ros-args"] + [a for p in params for a in ("-p", p)])
        node = cls(context=ctx)
        made.append((node, ctx))
        return node

    yield make
    for node, ctx in made:
        if hasattr(node, "close"):
            node.close()
        node.destroy_node()
        ctx.try_shutdown()


def _frame(stamp_s: int = 1, shape=(120, 160)) -> object:
    rng = np.random.default_rng(stamp_s)
    msg = cv2_to_imgmsg(rng.integers(0, 256, shape, dtype=np.uint8), "mono8")
    msg.header.stamp.sec = stamp_s
    return msg


def test_integers_accepted_for_double_parameters_at_start_up_and_run_time(ros_context):
    from usn_robust_keypoints.nodes.camera_source import CameraSourceNode
    from usn_robust_keypoints.nodes.certifier import CertifierNode

    node = ros_context(CertifierNode, "radius:=6", "budget_ms:=200", "beta:=0")
    assert (node.settings.radius, node.settings.budget_ms, node.settings.beta) == (6.0, 200.0, 0.0)
    (res,) = node.set_parameters([Parameter("budget_ms", value=300)])
    assert res.successful, res.reason
    assert node.settings.budget_ms == 300.0 and isinstance(node.settings.budget_ms, float)
    (res,) = node.set_parameters([Parameter("radius", value="five")])
    assert not res.successful and "number" in res.reason
    cam = ros_context(CameraSourceNode, "source:=synthetic", "rate:=5")
    assert cam._timer is not None and abs(cam._timer.timer_period_ns - 2e8) < 1
    (res,) = cam.set_parameters([Parameter("rate", value=20)])
    assert res.successful and abs(cam._timer.timer_period_ns - 5e7) < 1


def test_integers_in_a_params_yaml_for_doubles(tmp_path, monkeypatch):
    """`radius: 6` in a params file (as users write it) starts the certifier (it crashed before)."""
    import yaml

    from usn_robust_keypoints.nodes.certifier import CertifierNode

    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "ros"))
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"certifier": {"ros__parameters": {"radius": 6, "budget_ms": 200, "alpha": 0}}}))
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=["--ros-args", "--params-file", str(f)])
    node = CertifierNode(context=ctx)
    try:
        assert (node.settings.radius, node.settings.budget_ms, node.settings.alpha) == (6.0, 200.0, 0.0)
    finally:
        node.close()
        node.destroy_node()
        ctx.try_shutdown()


def test_unrunnable_backend_refused_at_parameter_time(ros_context):
    try:
        import auto_LiRPA  # noqa: F401
        pytest.skip("auto_LiRPA is installed here: the auto_lirpa backend can run")
    except ImportError:
        pass
    from usn_robust_keypoints.nodes.certifier import CertifierNode

    node = ros_context(CertifierNode)
    (res,) = node.set_parameters([Parameter("backend", value="auto_lirpa")])
    assert not res.successful and "auto_LiRPA" in res.reason
    assert node.settings.backend == "native"
    started = ros_context(CertifierNode, "backend:=auto_lirpa")  # at start-up: error, the defaults
    assert started.settings.backend == "native" and started.get_parameter("backend").value == "native"


def test_worker_survives_any_exception_and_diagnostics_recover(ros_context, monkeypatch):
    from usn_robust_keypoints.nodes.certifier import CertifierNode

    node = ros_context(CertifierNode, "margins:=false", "budget_ms:=0")
    real = certifier_module.certify
    calls = []

    def failing_once(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected fault")
        return real(*a, **k)

    monkeypatch.setattr(certifier_module, "certify", failing_once)
    c = node.counters
    node._on_image(_frame(1))
    wait_for(lambda: c.failed == 1, 30, lambda: c)
    assert c.status()[0] == ERROR and "injected fault" in c.status()[1] and c.last_error_time > 0
    node._on_image(_frame(2))  # the worker is alive: the next frame is certified
    wait_for(lambda: c.processed == 1, 60, lambda: c)
    assert c.status() == (OK, "ok")
    snap = c.snapshot()
    assert "injected fault" in snap["last_error"] and snap["last_error_time"].endswith("Z")
    bad = _frame(3)
    bad.encoding = "yuv422"
    node._on_image(bad)
    assert c.rejected == 1 and c.status()[0] == WARN
    node._on_image(_frame(4))
    wait_for(lambda: c.processed == 2, 60, lambda: c)
    assert c.status()[0] == OK and "yuv422" in c.snapshot()["last_error"]
    assert c.received == c.processed + c.skipped + c.rejected + c.failed == 4


def test_detector_survives_exception_and_counts_clipped_float_images(ros_context, monkeypatch):
    from usn_robust_keypoints.nodes.keypoint_detector import KeypointDetectorNode

    node = ros_context(KeypointDetectorNode, "device:=cpu")
    c = node.counters

    def broken_predict(frame):
        raise RuntimeError("injected fault")

    good = node.model.predict
    monkeypatch.setattr(node.model, "predict", broken_predict)
    node._on_image(_frame(1))  # before the fix the exception escaped the callback (and the executor)
    assert c.failed == 1 and c.status()[0] == ERROR
    monkeypatch.setattr(node.model, "predict", good)
    f = np.random.default_rng(0).random((120, 160), dtype=np.float32)
    f[0, :10] = 2.0
    f[1, :5] = -0.5
    msg = cv2_to_imgmsg(f, "32FC1")
    node._on_image(msg)
    assert c.processed == 1 and c.clipped == 1 and c.status()[0] == OK
    assert c.snapshot()["clipped"] == "1"


def test_frames_beyond_the_shm_segment_warn_and_beyond_max_message_bytes_are_refused(ros_context, tmp_path,
                                                                                    monkeypatch):
    import cv2

    from usn_robust_keypoints.nodes.camera_source import CameraSourceNode
    from usn_robust_keypoints.nodes.transport import SEGMENT_OVERHEAD_BYTES, SizeCheck, shm_segment_bytes

    profile = ROOT / "config" / "fastdds_loopback.xml"
    assert shm_segment_bytes(profile) == 32 * 1024 * 1024
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
    assert SizeCheck().segment == 32 * 1024 * 1024 - SEGMENT_OVERHEAD_BYTES and SizeCheck().limit is None
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE")
    assert SizeCheck().segment is None and SizeCheck().check(10**9, "x") == (True, "")
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
    big = tmp_path / "big"
    big.mkdir()
    cv2.imwrite(str(big / "a_big.png"), np.zeros((6000, 8000), np.uint8))  # 48 MB mono8: beyond the segment
    cv2.imwrite(str(big / "b_small.png"), np.zeros((480, 640), np.uint8))
    cam = ros_context(CameraSourceNode, f"source:={big}", "loop:=false")
    cam._tick()  # published, with the warning and the count
    assert cam.published == 1 and cam.counters.oversize == 1 and cam.counters.rejected == 0
    limited = ros_context(CameraSourceNode, f"source:={big}", "loop:=false", "max_message_bytes:=40000000")
    limited._tick()
    assert limited.published == 0 and limited.counters.rejected == 1
    assert "48000000 B, larger than max_message_bytes (40000000 B)" in limited.counters.last_error
    limited._tick()
    assert limited.published == 1 and limited.counters.status()[0] == OK and limited.counters.oversize == 0


BROKEN_BRIDGE = """
import numpy as np
from sensor_msgs.msg import Image
class CvBridge:  # like PyPI's ROS 1 cv-bridge: 16UC1 comes back as 8 bit
    def cv2_to_imgmsg(self, a, encoding="passthrough", header=None):
        m = Image(height=a.shape[0], width=a.shape[1], encoding=encoding)
        a = a.astype(np.uint8) if encoding == "16UC1" else a
        m.step = a.strides[0]; m.data = a.tobytes(); return m
    def imgmsg_to_cv2(self, m, desired_encoding="passthrough"):
        dt = {"bgr8": np.uint8, "mono8": np.uint8, "16UC1": np.uint8, "32FC1": np.float32}[m.encoding]
        a = np.frombuffer(bytes(m.data), dt)
        return a.reshape(m.height, m.width, -1).squeeze()
"""
WORKING_BRIDGE = """
from usn_robust_keypoints.nodes.image_conversion import numpy_cv2_to_imgmsg, numpy_imgmsg_to_cv2
class CvBridge:
    def cv2_to_imgmsg(self, a, encoding="passthrough", header=None):
        return numpy_cv2_to_imgmsg(a, encoding, header)
    def imgmsg_to_cv2(self, m, desired_encoding="passthrough"):
        return numpy_imgmsg_to_cv2(m, desired_encoding)
"""


@pytest.mark.parametrize("bridge, backend", [(BROKEN_BRIDGE, "numpy"), (WORKING_BRIDGE, "cv_bridge")])
def test_cv_bridge_used_only_when_its_round_trip_self_test_passes(tmp_path, bridge, backend):
    (tmp_path / "cv_bridge").mkdir()
    (tmp_path / "cv_bridge" / "__init__.py").write_text(textwrap.dedent(bridge))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    code = "from usn_robust_keypoints.nodes import image_conversion as ic; print(ic.BACKEND); print(ic.BRIDGE_REJECTED)"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got, reason = (r.stdout.splitlines() + ["", ""])[:2]
    assert got == backend, r.stdout
    assert ("16UC1" in reason) == (backend == "numpy"), reason


@pytest.mark.parametrize("node", ["certifier", "keypoint_detector"])
def test_repeated_sigint_to_the_process_group_exits_0(tmp_path, node):
    """A terminal Ctrl-C under a launcher: two SIGINTs close together (before the fix: -2 / -6)."""
    from usn_robust_keypoints.nodes.launcher import loopback_env, node_command

    env = loopback_env(log_dir=tmp_path / "ros")
    log = tmp_path / "node.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(node_command(node, params={"device": "cpu"}), env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "subscribed to" in log.read_text() or proc.poll() is not None, 90, lambda: log.read_text())
        assert proc.poll() is None, log.read_text()
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert rc == 0, f"exit code {rc}:\n{log.read_text()[-3000:]}"
