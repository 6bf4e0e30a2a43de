"""`usn-keypoints record-bag` / `certify-bag` on bags written here, in both storage formats: the
output bag read back with rclpy's deserialisation carries the source stamps, bad frames are
rejected with the nodes' reasons, the input bag is never modified, errors are clear, and the real
photos give the same statuses as `certify` on the same frames."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="rosbags (setup.py dependency) is needed for the bag tools")
rclpy = pytest.importorskip("rclpy")

from rclpy.serialization import deserialize_message  # noqa: E402
from rosbags.rosbag2 import Reader, Writer  # noqa: E402
from usn_robust_keypoints_msgs.msg import CertifiedKeypoints, KeypointArray  # noqa: E402

from usn_robust_keypoints.nodes import bag as bagmod  # noqa: E402
from usn_robust_keypoints.nodes.bag import BagError, certify_bag, record_bag, typestore  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _tree_hash(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def _read(path: Path, topic: str) -> list[tuple[int, bytes]]:
    with Reader(path) as r:
        conns = [c for c in r.connections if c.topic == topic]
        return [(ns, bytes(raw)) for _, ns, raw in r.messages(connections=conns)]


def _input_stamps(path: Path, topic: str) -> list[int]:
    store = typestore()
    with Reader(path) as r:
        conns = [c for c in r.connections if c.topic == topic]
        return [int(m.header.stamp.sec) * 10**9 + int(m.header.stamp.nanosec)
                for m in (store.deserialize_cdr(raw, conns[0].msgtype) for _, _, raw in r.messages(connections=conns))]


@pytest.mark.parametrize("storage, fmt", [("sqlite3", "raw"), ("mcap", "jpeg"), ("sqlite3", "png")])
def test_record_and_certify_bag_round_trip(tmp_path, storage, fmt):
    src = tmp_path / "in"
    assert record_bag(src, "synthetic", "/cam/image", fmt, storage, rate=5.0, frames=2) == 2
    assert any(src.glob("*.mcap" if storage == "mcap" else "*.db3"))
    topic = "/cam/image" if fmt == "raw" else "/cam/image/compressed"
    before = _tree_hash(src)
    out = tmp_path / "out"
    s = certify_bag(src, topic, out, budget_ms=300.0, margins=False, progress=False)
    assert _tree_hash(src) == before, "the input bag was modified"
    assert (s["frames"], s["certified_frames"], s["rejected_frames"]) == (2, 2, 0)
    assert bagmod.bag_storage(out) == storage
    stamps = _input_stamps(src, topic)
    kps = [deserialize_message(raw, KeypointArray) for _, raw in _read(out, "/keypoints")]
    certs = [deserialize_message(raw, CertifiedKeypoints) for _, raw in _read(out, "/certified_keypoints")]
    assert [k.header.stamp.sec * 10**9 + k.header.stamp.nanosec for k in kps] == stamps
    assert [c.header.stamp.sec * 10**9 + c.header.stamp.nanosec for c in certs] == stamps
    assert [ns for ns, _ in _read(out, "/certified_keypoints")] == [ns for ns, _ in _read(src, topic)]
    for k, c in zip(kps, certs):
        assert k.header.frame_id == c.header.frame_id == "camera"
        assert (k.image_width, k.image_height) == (c.frame_width, c.frame_height) == (640, 480)
        assert [p.name for p in k.keypoints] == [p.name for p in c.keypoints] and len(c.keypoints) > 0
        assert np.allclose([[p.x, p.y] for p in k.keypoints], [[p.x, p.y] for p in c.keypoints], atol=8.0)
        assert c.alpha == pytest.approx(0.02) and c.radius == 4.0 and c.backend == "native"
        assert all(p.status in (0, 1, 2, 3, 4) and p.certified == (p.status == 0) for p in c.keypoints)
    report = json.loads((tmp_path / "out.json").read_text())
    assert [f["result"] for f in report["frames"]] == ["certified"] * 2
    csv_rows = (tmp_path / "out.csv").read_text().splitlines()
    assert len(csv_rows) == 3 and csv_rows[0].startswith("index,bag_time_ns,stamp_ns,result")
    assert (tmp_path / "out.png").stat().st_size > 1000


def _bad_bag(path: Path, storage: str) -> None:
    """An Image topic and a CompressedImage topic, each with a good frame between bad ones."""
    store = typestore()
    t = store.types
    img = np.random.default_rng(0).integers(0, 256, (48, 64), dtype=np.uint8)

    def header(i):
        return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=100 + i, nanosec=0), frame_id="c")

    def raw(i, enc="mono8", step=64, data=None):
        return t[bagmod.IMAGE](header=header(i), height=48, width=64, encoding=enc, is_bigendian=0, step=step,
                               data=img.reshape(-1) if data is None else data)

    from usn_robust_keypoints.nodes.image_conversion import compress

    jpeg = np.frombuffer(compress(img, "jpeg"), np.uint8)
    comp = [t[bagmod.COMPRESSED](header=header(i), format=f, data=d) for i, (f, d) in enumerate([
        ("jpeg", jpeg[: len(jpeg) // 3]),  # truncated
        ("mono8; jpeg compressed mono8", jpeg),  # good
        ("png", jpeg),  # says png, is jpeg
        ("tiff", jpeg),  # unsupported format
        ("jpeg", np.zeros(0, np.uint8))])]  # empty
    raws = [raw(0, enc="yuv422"), raw(1), raw(2, step=10), raw(3, data=np.zeros(5, np.uint8))]
    with Writer(path, version=9, storage_plugin=bagmod._storage(storage)) as w:
        c1 = w.add_connection("/raw", bagmod.IMAGE, typestore=store)
        c2 = w.add_connection("/raw/compressed", bagmod.COMPRESSED, typestore=store)
        c3 = w.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
        for i, m in enumerate(raws):
            w.write(c1, 10**9 * (i + 1), store.serialize_cdr(m, bagmod.IMAGE))
        w.write(c1, 10**9 * 9, b"\x00\x01\x00\x00garbage")  # a message that does not deserialise
        for i, m in enumerate(comp):
            w.write(c2, 10**9 * (i + 1), store.serialize_cdr(m, bagmod.COMPRESSED))
        w.write(c3, 10**9, store.serialize_cdr(t["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bad_frames_are_rejected_with_the_nodes_reasons(tmp_path, storage):
    src = tmp_path / "bad"
    _bad_bag(src, storage)
    s = certify_bag(src, "/raw", tmp_path / "raw_out", budget_ms=100.0, margins=False, progress=False)
    assert (s["frames"], s["certified_frames"]) == (5, 1)
    reasons = [f["reason"] for f in json.loads((tmp_path / "raw_out.json").read_text())["frames"]]
    assert "unsupported encoding" in reasons[0] and reasons[1] == ""
    assert "step" in reasons[2] and "expected step x height" in reasons[3]
    assert "does not deserialise as sensor_msgs/msg/Image" in reasons[4]
    s = certify_bag(src, "/raw/compressed", tmp_path / "c_out", budget_ms=100.0, margins=False, progress=False)
    assert (s["frames"], s["certified_frames"]) == (5, 1)
    reasons = [f["reason"] for f in json.loads((tmp_path / "c_out.json").read_text())["frames"]]
    assert "cannot decode" in reasons[0] and reasons[1] == ""
    assert "not png" in reasons[2] and "unsupported compressed format" in reasons[3] and "no data" in reasons[4]
    assert len(_read(tmp_path / "c_out", "/certified_keypoints")) == 1


def test_clear_errors(tmp_path):
    src = tmp_path / "bad"
    _bad_bag(src, "sqlite3")
    with pytest.raises(BagError, match="'/nope' is not in .*/raw \\(sensor_msgs/msg/Image\\)"):
        certify_bag(src, "/nope", progress=False)
    with pytest.raises(BagError, match="std_msgs/msg/String; certify-bag reads"):
        certify_bag(src, "/chatter", progress=False)
    with pytest.raises(BagError, match="no bag at"):
        certify_bag(tmp_path / "missing", "/raw", progress=False)
    with pytest.raises(BagError, match="into the input bag"):
        certify_bag(src, "/raw", src / "inside", progress=False)
    (tmp_path / "taken").mkdir()
    with pytest.raises(BagError, match="exists already"):
        certify_bag(src, "/raw", tmp_path / "taken", progress=False)
    with pytest.raises(ValueError, match="beta"):
        certify_bag(src, "/raw", tmp_path / "o", beta=-1.0, progress=False)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for f in src.iterdir():
        data = f.read_bytes()
        (corrupt / f.name).write_bytes(data if f.suffix == ".yaml" else data[:200])  # truncated database
    with pytest.raises(BagError, match="corrupt"):
        certify_bag(corrupt, "/raw", tmp_path / "c", progress=False)
    cli = [sys.executable, "-m", "usn_robust_keypoints.cli"]
    r = subprocess.run(cli + ["certify-bag", str(src), "--topic", "/nope"], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 2 and "usn-keypoints certify-bag: error: topic '/nope' is not in" in r.stderr
    r = subprocess.run(cli + ["record-bag", str(tmp_path / "s"), "--source", "synthetic"], capture_output=True,
                       text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 2 and "endless" in r.stderr


def test_real_photos_bag_gives_the_same_statuses_as_certify(tmp_path):
    """A bag of the 13 real left* photos certified offline: the statuses and radii of `certify` on
    the same frames (no budget, so neither depends on the machine's load)."""
    import cv2

    from usn_robust_keypoints.certify import certify
    from usn_robust_keypoints.data.opencv_doc import opencv_doc_data
    from usn_robust_keypoints.model import load_model
    from usn_robust_keypoints.nodes.messages import STATUS_CODES

    try:
        photos = sorted(opencv_doc_data().glob("left[0-9]*.jpg"))
    except RuntimeError as e:
        pytest.skip(f"opencv-doc photos unavailable: {e}")
    src = tmp_path / "photos"
    assert record_bag(src, "opencv-doc:left[0-9]*.jpg", storage="mcap") == len(photos) == 13
    certify_bag(src, "/camera/image_raw", tmp_path / "out", margins=False, progress=False)
    certs = [deserialize_message(raw, CertifiedKeypoints) for _, raw in _read(tmp_path / "out", "/certified_keypoints")]
    model = load_model(None, device="cpu")
    assert len(certs) == 13
    statuses = []
    for photo, msg in zip(photos, certs):
        ref = certify(model, cv2.imread(str(photo), cv2.IMREAD_UNCHANGED), margins=False)
        assert [k.status for k in msg.keypoints] == [STATUS_CODES[k.status] for k in ref.keypoints]
        statuses += [k.status for k in msg.keypoints]
        for a, b in zip(msg.keypoints, ref.keypoints):
            assert (math.isinf(a.certified_radius) and math.isinf(b.certified_radius)) or \
                a.certified_radius == pytest.approx(b.certified_radius, rel=1e-5)
    assert len(set(statuses)) >= 2 or statuses[0] == 0, "every keypoint NOT_CERTIFIED: a weak comparison"
