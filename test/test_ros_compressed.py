"""sensor_msgs/CompressedImage input (jpeg/png): decoding round trips, the same rejection rules as
raw images, the nodes' callbacks, and a real camera -> detector/certifier run over
`image/compressed` (image_transport parameter and topic suffix)."""

from __future__ import annotations

import os

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from ros_support import loopback_monitor, wait_for  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402

from usn_robust_keypoints.nodes import image_conversion as ic  # noqa: E402
from usn_robust_keypoints.nodes.monitor import stamp_ns  # noqa: E402

RNG = np.random.default_rng(0)
GRAY = RNG.integers(0, 256, (48, 64), dtype=np.uint8)
BGR = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)


def _msg(fmt: str, data: bytes) -> CompressedImage:
    m = CompressedImage(format=fmt, data=data)
    m.header.stamp.sec = 7
    return m


@pytest.mark.parametrize("array", [GRAY, BGR], ids=["mono8", "bgr8"])
def test_png_round_trip_is_exact_and_jpeg_is_close(array):
    enc = "mono8" if array.ndim == 2 else "bgr8"
    frame, clipped = ic.detector_frame(_msg(f"{enc}; png compressed {enc}", ic.compress(array, "png")))
    assert clipped == 0 and frame.dtype == np.uint8 and np.array_equal(frame, array)
    smooth = np.ascontiguousarray(np.broadcast_to(np.linspace(0, 255, 64, dtype=np.uint8), array.shape[:2]))
    smooth = smooth if array.ndim == 2 else np.repeat(smooth[:, :, None], 3, axis=2)
    frame, _ = ic.detector_frame(_msg("jpeg", ic.compress(smooth, "jpeg", quality=95)))
    assert frame.shape == smooth.shape and np.abs(frame.astype(int) - smooth).max() <= 6


def test_16bit_png_scaled_like_16uc1_and_alpha_dropped():
    import cv2

    a16 = RNG.integers(0, 65536, (8, 9), dtype=np.uint16)
    frame, _ = ic.detector_frame(_msg("16UC1; png compressed", ic.compress(a16, "png")))
    assert np.array_equal(frame, ic.to_detector_frame(ic.cv2_to_imgmsg(a16, "16UC1")))
    bgra = cv2.cvtColor(BGR, cv2.COLOR_BGR2BGRA)
    frame, _ = ic.detector_frame(_msg("png", ic.compress(bgra, "png")))
    assert np.array_equal(frame, BGR)


@pytest.mark.parametrize("fmt, data, words", [
    ("jpeg", b"", "no data"),
    ("jpeg", ic.compress(GRAY, "jpeg")[:60], "cannot decode"),
    ("png", ic.compress(GRAY, "jpeg"), "not png"),
    ("bmp", ic.compress(GRAY, "png"), "unsupported compressed format"),
    ("16UC1; compressedDepth png", ic.compress(GRAY, "png"), "compressedDepth"),
    ("jpeg", b"\xff\xd8\xff" + bytes(100), "cannot decode"),
])
def test_bad_compressed_images_raise_clear_errors(fmt, data, words):
    with pytest.raises(ic.ImageConversionError, match=words):
        ic.detector_frame(_msg(fmt, data))


def test_node_callbacks_take_compressed_images(tmp_path, monkeypatch):
    from usn_robust_keypoints.nodes.certifier import CertifierNode
    from usn_robust_keypoints.nodes.keypoint_detector import KeypointDetectorNode

    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path))
    monkeypatch.setenv("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=["--ros-args", "-p", "image_transport:=compressed", "-p", "device:=cpu",
                                  "-p", "margins:=false", "-p", "budget_ms:=300"])
    cert = CertifierNode(context=ctx)
    det = KeypointDetectorNode(context=ctx)
    try:
        for node in (det, cert):
            infos = node.get_subscriptions_info_by_topic("/image/compressed")
            assert any(i.node_name == node.get_name() and i.topic_type == "sensor_msgs/msg/CompressedImage"
                       for i in infos), infos
            node._on_image(_msg("jpeg", ic.compress(BGR, "jpeg")))
            node._on_image(_msg("jpeg", b""))
        wait_for(lambda: cert.counters.processed == 1, 60, lambda: cert.counters)
        for node in (det, cert):
            c = node.counters
            assert (c.received, c.processed, c.rejected) == (2, 1, 1) and "no data" in c.last_error
    finally:
        cert.close()
        for n in (cert, det):
            n.destroy_node()
        ctx.try_shutdown()


@pytest.mark.parametrize("how", ["parameter", "topic_suffix"])
def test_camera_to_detector_and_certifier_over_compressed(tmp_path, how):
    """camera_source publishes image + image/compressed (jpeg); the detector and the certifier take
    the compressed one (``image_transport:=compressed``, or ``image`` remapped to a .../compressed
    topic); their results carry the camera's stamps."""
    from usn_robust_keypoints.nodes.launcher import NodeProcesses, node_command

    with loopback_monitor(tmp_path, remaps=["image:=/cam/image"]) as (env, mon):
        procs = NodeProcesses(env, tmp_path / "logs")
        procs.start("camera_source", node_command("camera_source", params={
            "source": "synthetic", "rate": 4.0, "compressed": "jpeg"}, remaps=["image:=/cam/image"]))
        params = {"device": "cpu"}
        remap = ["image:=/cam/image"]
        if how == "parameter":
            params["image_transport"] = "compressed"
        else:
            remap = ["image:=/cam/image/compressed"]
        procs.start("keypoint_detector", node_command("keypoint_detector", params=params, remaps=remap))
        procs.start("certifier", node_command("certifier", params={**params, "margins": False, "budget_ms": 300.0},
                                              remaps=remap))
        try:
            def matched(records):
                return [r for r in list(records) if mon.image(stamp_ns(r.msg.header)) is not None]

            wait_for(lambda: (len(matched(mon.keypoints)) >= 2 and len(matched(mon.certificates)) >= 1)
                     or procs.dead(), 120, lambda: f"results over /cam/image/compressed; {mon.diagnostics}")
            assert not procs.dead(), procs.dead()
            log = (tmp_path / "logs" / "certifier.log").read_text()
            assert "subscribed to /cam/image/compressed (sensor_msgs/CompressedImage)" in log
            assert "subscribed to /cam/image/compressed" in (tmp_path / "logs" / "keypoint_detector.log").read_text()
            assert mon.counts("keypoint_detector").get("rejected", 0) == 0
        finally:
            codes = procs.stop()
    assert all(c == 0 for c in codes.values()), codes
