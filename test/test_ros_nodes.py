"""The real nodes as separate processes on a loopback-only DDS domain (random ROS_DOMAIN_ID):
camera_source (opencv-doc chessboard photos) -> keypoint_detector + certifier.

Checks stamps and content, soundness of the published certificates (re-running the detector on
sampled brightness/contrast changes of a published frame), rejected bad frames, liveness and
run-time parameter validation."""

import math
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from usn_robust_keypoints.model import DetectorConfig, HeatmapDetector, load_model, save_checkpoint  # noqa: E402
from usn_robust_keypoints.nodes.monitor import stamp_ns  # noqa: E402
from usn_robust_keypoints.nodes.pipeline import running_pipeline  # noqa: E402

from ros_support import wait_for  # noqa: E402


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """The shipped default model when present, else a small random detector."""
    from usn_robust_keypoints.weights import default_model_path

    try:
        return default_model_path()
    except FileNotFoundError:
        torch = pytest.importorskip("torch")
        torch.manual_seed(0)
        cfg = DetectorConfig(input_width=96, input_height=72, stem_width=8, width=8, depth=1, head_width=8)
        return save_checkpoint(HeatmapDetector(cfg), tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def source():
    """Real photos (opencv-doc, fetched into $USN_CACHE); the synthetic stream if that is impossible."""
    from usn_robust_keypoints.data.opencv_doc import opencv_doc_data

    try:
        opencv_doc_data()
        return "opencv-doc:left[0-9]*.jpg"
    except RuntimeError:
        return "synthetic"


@pytest.fixture(scope="module")
def pipeline(model_path, source, tmp_path_factory):
    overrides = {"camera_source": {"source": source, "rate": 8.0},
                 "keypoint_detector": {"model_path": str(model_path), "device": "cpu"},
                 "certifier": {"model_path": str(model_path), "device": "cpu", "budget_ms": 1000.0}}
    with running_pipeline("demo.yaml", tmp_path_factory.mktemp("ros"), overrides, keep_images=400) as (procs, mon):
        wait_for(lambda: len(mon.certificates) >= 2 and len(mon.keypoints) >= 5 or procs.dead(), 90,
                 "keypoints and certificates")
        assert not procs.dead(), f"nodes exited: {procs.dead()}"
        yield procs, mon


def test_keypoints_arrive_with_image_stamps_and_sane_content(pipeline, model_path):
    procs, mon = pipeline
    model = load_model(model_path, device="cpu")
    # the monitor's image subscription may match after its keypoint one (discovery): wait for 3 pairs
    wait_for(lambda: sum(mon.image(stamp_ns(r.msg.header)) is not None for r in list(mon.keypoints)) >= 3, 60,
             "keypoint messages whose image the monitor received")
    recs = list(mon.keypoints)
    assert len(recs) >= 5
    stamps = [stamp_ns(r.msg.header) for r in recs]
    assert len(set(stamps)) == len(stamps)
    matched = 0
    for r in recs:
        m = r.msg
        assert m.header.frame_id == "camera" and m.image_width > 0 and m.image_height > 0
        assert [k.name for k in m.keypoints] == model.keypoint_names
        for k in m.keypoints:
            assert 0 <= k.x < 640 and 0 <= k.y < 480 and math.isfinite(k.score)
        img = mon.image(stamp_ns(m.header))
        if img is not None:  # same stamp as a published image: same keypoints as the model here
            matched += 1
            assert (m.image_height, m.image_width) == img.shape[:2]
            pred = model.predict(img)
            assert np.allclose([[k.x, k.y] for k in m.keypoints], pred.keypoints, atol=1e-3)
    assert matched >= 3


def test_certificates_match_images_and_are_sound(pipeline, model_path):
    procs, mon = pipeline
    model = load_model(model_path, device="cpu")
    rng = np.random.default_rng(0)
    checked = 0

    def with_image():
        return [r for r in list(mon.certificates) if mon.image(stamp_ns(r.msg.header)) is not None]

    # the monitor may miss the first images while discovery completes; later ones must match
    wait_for(lambda: len(with_image()) >= 2, 60, "certificates whose image the monitor received")
    certs = list(mon.certificates)
    first = next(i for i, r in enumerate(certs) if mon.image(stamp_ns(r.msg.header)) is not None)
    later = certs[first:]  # before the first match the monitor may still have been discovering
    assert len(with_image()) >= len(later) - 1, "certificate stamps match no published image"
    for rec in with_image()[:3]:
        m = rec.msg
        img = mon.image(stamp_ns(m.header))
        assert (m.alpha, m.beta, m.radius, m.backend) == (pytest.approx(0.02), pytest.approx(0.02), 4.0, "native")
        assert m.model_name == model_path.name and (m.frame_height, m.frame_width) == img.shape[:2]
        nominal = model.predict(img)
        assert np.allclose([[k.x, k.y] for k in m.keypoints], nominal.keypoints, atol=1e-3)
        thetas = [(c, b) for c in (1 - m.alpha, 1 + m.alpha) for b in (-m.beta, m.beta)]
        thetas += [(1 + rng.uniform(-m.alpha, m.alpha), rng.uniform(-m.beta, m.beta)) for _ in range(12)]
        for theta in thetas:
            moved = np.linalg.norm(model.predict(img, theta=theta).keypoints - nominal.keypoints, axis=1)
            for k, d in zip(m.keypoints, moved):
                assert k.status in (0, 1, 2, 3, 4) and k.certified == (k.status == 0)
                if k.certified:
                    assert k.certified_radius <= m.radius + 1e-4
                if math.isfinite(k.certified_radius):
                    assert d <= k.certified_radius + 1e-3, f"{k.name} moved {d:.2f} px > r*={k.certified_radius}"
        checked += 1
    assert checked >= 2


def _send(node, pub, msg, n=1):
    for _ in range(n):
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        time.sleep(0.05)


def test_bad_frames_are_rejected_and_nodes_stay_alive(pipeline):
    procs, mon = pipeline
    det0 = mon.counts("keypoint_detector").get("rejected", 0)
    cer0 = mon.counts("certifier").get("rejected", 0)
    node = rclpy.create_node("bad_frame_sender", context=mon.context)
    try:
        pub = node.create_publisher(Image, "image", 10)
        wait_for(lambda: pub.get_subscription_count() >= 3, 10, "subscribers of image")
        time.sleep(1.5)  # discovery is two-sided: let the subscribers match this publisher too
        nan = np.full((16, 16), 0.5, np.float32)
        nan[3, 4] = np.nan
        bad = [Image(height=16, width=16, encoding="yuv422", step=32, data=bytes(512)),
               Image(height=0, width=0, encoding="mono8", step=0, data=b""),
               Image(height=16, width=16, encoding="mono8", step=10, data=bytes(160)),
               Image(height=16, width=16, encoding="32FC1", step=64, data=nan.tobytes())]
        for msg in bad:
            _send(node, pub, msg)
        wait_for(lambda: mon.counts("keypoint_detector").get("rejected", 0) - det0 >= 4
                 and mon.counts("certifier").get("rejected", 0) - cer0 >= 4, 15,
                 lambda: f"rejected counts (before: detector {det0}, certifier {cer0}; now: {mon.diagnostics})")
    finally:
        node.destroy_node()
    assert mon.counts("keypoint_detector")["rejected"] - det0 == 4
    assert mon.counts("certifier")["rejected"] - cer0 == 4
    n_kp, n_cert = len(mon.keypoints), len(mon.certificates)
    wait_for(lambda: len(mon.keypoints) > n_kp + 2 and len(mon.certificates) > n_cert, 30, "frames after bad input")
    assert not procs.dead()
    counts = mon.counts("certifier")
    assert counts["processed"] >= 1 and counts["received"] >= counts["processed"] + counts["rejected"]


def _set(executor, client, **params):
    kinds = {float: (ParameterType.PARAMETER_DOUBLE, "double_value"),
             str: (ParameterType.PARAMETER_STRING, "string_value")}
    req = SetParameters.Request()
    for name, value in params.items():
        t, field = kinds[type(value)]
        req.parameters.append(Parameter(name=name, value=ParameterValue(type=t, **{field: value})))
    future = client.call_async(req)
    deadline = time.monotonic() + 10
    while not future.done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)
    assert future.done(), "no answer from set_parameters"
    return future.result().results


def test_parameter_changes_are_validated(pipeline):
    procs, mon = pipeline
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("param_tester", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    try:
        client = node.create_client(SetParameters, "/certifier/set_parameters")
        assert client.wait_for_service(timeout_sec=15)
        for bad in ({"alpha": -0.1}, {"alpha": 1.5}, {"beta": float("nan")}, {"radius": -1.0}, {"beta": 1.5},
                    {"backend": "magic"}, {"budget_ms": -1.0}):
            (res,) = _set(executor, client, **bad)
            assert not res.successful and res.reason, bad
        (res,) = _set(executor, client, radius=6.0, beta=0.01)[:1]
        assert res.successful, res.reason
        n = len(mon.certificates)
        wait_for(lambda: any(r.msg.radius == 6.0 for r in mon.certificates[n:]), 30, "certificates at radius 6")
        last = [r.msg for r in mon.certificates[n:] if r.msg.radius == 6.0][-1]
        assert last.beta == pytest.approx(0.01) and last.alpha == pytest.approx(0.02)
        assert not procs.dead()
    finally:
        executor.shutdown()
        node.destroy_node()
        ctx.try_shutdown()


def test_budget_counts_from_frame_arrival():
    from usn_robust_keypoints.nodes.certifier import remaining_budget_ms

    assert remaining_budget_ms(150.0, 30.0) == 120.0
    assert remaining_budget_ms(150.0, 400.0) == 0.0  # waited past the budget: one pass, then UNKNOWN
    assert remaining_budget_ms(0.0, 30.0) is None  # 0 = no budget
