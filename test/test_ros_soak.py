"""The 30-second version of `usn-keypoints soak` (the 10-minute one is a benchmark, docs/ros.md):
no crash, every frame accounted for in every node, the certifier killed and restarted, the bad
frames rejected, integer parameter values accepted and an invalid one refused."""

import json

import pytest

pytest.importorskip("rclpy")


def test_30_second_soak(tmp_path):
    from usn_robust_keypoints.nodes.soak import run_soak

    rc = run_soak(minutes=0.5, source="synthetic", rate=10.0, out_dir=tmp_path)
    doc = json.loads((tmp_path / "soak.json").read_text())
    table = (tmp_path / "soak.md").read_text()
    assert not doc["crashed"], table
    rows = {r["node"]: r for r in doc["rows"]}
    for node in ("camera_source", "keypoint_detector", "certifier"):
        r = rows[node]
        assert r["unaccounted"] == 0 and r["failed"] == 0, table
        assert r["received"] > 50 and r["processed"] > 10, table
    bad = doc["bad_frames_sent"]
    assert bad["rejected"] >= 5
    det, cert = rows["keypoint_detector"], rows["certifier"]
    # Every bad frame that reached the detector is rejected (or counted as clipped); frames the DDS
    # never delivered (best-effort QoS, counted as ``lost``) cannot be, so they are allowed for.
    assert bad["rejected"] - det["lost"] <= det["rejected"] <= bad["rejected"], table
    assert bad["processed"] - det["lost"] <= det["clipped"] <= bad["processed"], table
    assert det["rejected"] + det["clipped"] >= bad["rejected"] + bad["processed"] - det["lost"], table
    assert det["sent"] == rows["camera_source"]["processed"] + bad["rejected"] + bad["processed"]
    assert cert["restarts"] == 1 and cert["lost"] >= 0 and det["lost"] >= 0
    assert cert["rejected"] <= bad["rejected"]
    events = "\n".join(doc["events"])
    assert "(True, '')" in events and "must be refused): [(False" in events
    assert "SIGKILL certifier" in events and "certifier restarted" in events
    assert rc == (0 if doc["ok"] else 1)
