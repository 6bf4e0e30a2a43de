"""Image conversion (sensor_msgs/Image <-> numpy) round trips and errors; message conversion."""

import math

import numpy as np
import pytest

pytest.importorskip("rclpy")
from sensor_msgs.msg import Image  # noqa: E402

from usn_robust_keypoints.certify.results import FrameCertificate, KeypointCertificate, Status  # noqa: E402
from usn_robust_keypoints.nodes import image_conversion as ic  # noqa: E402

RNG = np.random.default_rng(0)
ARRAYS = {
    "bgr8": RNG.integers(0, 256, (7, 9, 3), dtype=np.uint8),
    "rgb8": RNG.integers(0, 256, (7, 9, 3), dtype=np.uint8),
    "mono8": RNG.integers(0, 256, (7, 9), dtype=np.uint8),
    "16UC1": RNG.integers(0, 65536, (7, 9), dtype=np.uint16),
    "32FC1": RNG.random((7, 9), dtype=np.float32),
}


@pytest.mark.parametrize("encoding", list(ARRAYS))
@pytest.mark.parametrize("impl", ["public", "numpy"])
def test_round_trip(encoding, impl):
    to_msg = ic.cv2_to_imgmsg if impl == "public" else ic.numpy_cv2_to_imgmsg
    to_arr = ic.imgmsg_to_cv2 if impl == "public" else ic.numpy_imgmsg_to_cv2
    a = ARRAYS[encoding]
    msg = to_msg(a, encoding)
    assert (msg.encoding, msg.height, msg.width) == (encoding, 7, 9)
    assert msg.step == 9 * a.itemsize * (3 if a.ndim == 3 else 1)
    b = to_arr(msg)
    assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)


def test_padded_step_big_endian_and_channel_swap():
    a = ARRAYS["16UC1"]
    msg = Image(height=7, width=9, encoding="16UC1", is_bigendian=1, step=9 * 2 + 6)
    rows = np.zeros((7, 9 * 2 + 6), np.uint8)
    rows[:, :18] = a.astype(">u2").view(np.uint8).reshape(7, 18)
    msg.data = rows.tobytes()
    assert np.array_equal(ic.numpy_imgmsg_to_cv2(msg), a)
    rgb = ic.numpy_imgmsg_to_cv2(ic.numpy_cv2_to_imgmsg(ARRAYS["bgr8"], "bgr8"), "rgb8")
    assert np.array_equal(rgb, ARRAYS["bgr8"][:, :, ::-1])


def _msg(encoding="mono8", h=4, w=5, step=None, data=None):
    step = w if step is None else step
    return Image(height=h, width=w, encoding=encoding, step=step,
                 data=bytes(step * h) if data is None else data)


@pytest.mark.parametrize("msg, words", [
    (_msg(encoding="yuv422"), "unsupported encoding"),
    (_msg(h=0, w=0), "zero size"),
    (_msg(step=3), "step"),
    (_msg(data=bytes(7)), "expected step x height"),
])
def test_bad_messages_raise_clear_errors(msg, words):
    with pytest.raises(ic.ImageConversionError, match=words):
        ic.imgmsg_to_cv2(msg)
    with pytest.raises(ic.ImageConversionError):
        ic.to_detector_frame(msg)


def test_detector_frame_scaling_and_nan():
    f = ARRAYS["32FC1"].copy()
    out = ic.to_detector_frame(ic.cv2_to_imgmsg(f, "32FC1"))
    assert out.dtype == np.uint8 and np.abs(out.astype(float) - f * 255).max() <= 0.5 + 1e-3
    assert np.array_equal(ic.to_detector_frame(ic.cv2_to_imgmsg(ARRAYS["rgb8"], "rgb8")), ARRAYS["rgb8"][:, :, ::-1])
    f[2, 3] = np.nan
    with pytest.raises(ic.ImageConversionError, match="NaN"):
        ic.to_detector_frame(ic.cv2_to_imgmsg(f, "32FC1"))


def test_certificate_message_round_trip():
    from std_msgs.msg import Header

    from usn_robust_keypoints.nodes.messages import certificate_to_msg, msg_to_certificate

    cert = FrameCertificate(alpha=0.02, beta=0.03, radius=4.0, backend="native", time_ms=12.5,
                            frame_width=640, frame_height=480, keypoints=[
        KeypointCertificate(0, "a", 10.5, 20.5, 1.5, Status.CERTIFIED, 4.0, 2.5, 0.1, 0.2, 3.0),
        KeypointCertificate(1, "b", 1.0, 2.0, 0.5, Status.NOT_CERTIFIED, 4.0, math.inf, 0.0, 0.0, 1.0),
        KeypointCertificate(2, "c", 3.0, 4.0, 0.1, Status.UNKNOWN, 4.0, math.inf, math.nan, math.nan, 0.0),
        KeypointCertificate(3, "d", 5.0, 6.0, 0.2, Status.REFUTED, 4.0, math.inf, 0.0, 0.0, 2.0, (1.015, -0.0125)),
        KeypointCertificate(4, "e", 7.0, 8.0, 0.3, Status.OPEN, 4.0, math.inf, 0.0, 0.0, 9.0)])
    h = Header(frame_id="cam")
    h.stamp.sec, h.stamp.nanosec = 12, 345
    msg = certificate_to_msg(cert, h, "m.safetensors")
    assert msg.header.stamp.nanosec == 345 and msg.model_name == "m.safetensors"
    assert [k.certified for k in msg.keypoints] == [True, False, False, False, False]
    assert [k.status for k in msg.keypoints] == [0, 1, 2, 3, 4]
    assert msg.keypoints[3].counterexample_c == pytest.approx(1.015) and math.isnan(msg.keypoints[0].counterexample_c)
    back = msg_to_certificate(msg)
    for a, b in zip(cert.keypoints, back.keypoints):
        assert a.status is b.status and a.name == b.name
        assert (a.counterexample is None) == (b.counterexample is None)
        if a.counterexample is not None:
            assert b.counterexample == pytest.approx(a.counterexample, rel=1e-6)
        for f in ("x", "y", "certified_radius", "beta_star", "alpha_star"):
            x, y = getattr(a, f), getattr(b, f)
            assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-6)
