"""Every launch file under the real `ros2 launch` (the launch stack of ros2-launch/, installed into
this venv by the test set-up; skipped with the reason where that folder is absent): the nodes
start, messages flow with the image stamps, a terminal Ctrl-C (SIGINT to the whole process group)
stops everything with exit code 0 and leaves no process behind. Broken launch files fail."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("rclpy")

from ros_support import BROKEN_LAUNCH_EDITS, ROOT, broken_launch_file, ensure_ros2_launch, loopback_monitor, \
    pids_in_group, wait_for  # noqa: E402

from usn_robust_keypoints.nodes.install_layout import missing  # noqa: E402
from usn_robust_keypoints.nodes.monitor import stamp_ns  # noqa: E402

PACKAGE = "usn_robust_keypoints"
LAUNCH_FILES = sorted(p.name for p in (ROOT / "launch").glob("*.launch.py"))


@pytest.fixture(scope="module")
def ros2():
    exe = ensure_ros2_launch(pytest)
    gaps = missing(Path(sys.prefix))
    assert not gaps, f"install layout incomplete (run scripts/setup.sh): {gaps}"
    return exe


@pytest.fixture(scope="module")
def params_file(tmp_path_factory):
    """demo.yaml with a light certifier (no margins) and the camera at 5 Hz, for a loaded machine."""
    data = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    data["camera_source"]["ros__parameters"].update(source="synthetic", rate=5.0)
    for node in ("keypoint_detector", "certifier"):
        data[node]["ros__parameters"]["device"] = "cpu"
    data["certifier"]["ros__parameters"].update(margins=False, budget_ms=2000)  # an int for a double
    p = tmp_path_factory.mktemp("launch") / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _launch(ros2, env, args, log, cwd):
    """`ros2 launch ...` in its own session (process group), as a terminal would run it."""
    return subprocess.Popen([str(ros2), "launch", *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=cwd)


def _stop_group(proc, timeout=40.0) -> tuple[int | None, list[int]]:
    """Ctrl-C in a terminal: SIGINT to the whole process group; (exit code, processes left)."""
    pgid = proc.pid
    os.killpg(pgid, signal.SIGINT)
    try:
        rc = proc.wait(timeout=timeout)
        wait_for(lambda: not pids_in_group(pgid), 10, "the nodes to exit")
    except (subprocess.TimeoutExpired, AssertionError):
        rc = proc.poll()
    left = pids_in_group(pgid)
    if rc is None or left:  # failed: never leave processes behind
        os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=10)
    return rc, left


@pytest.mark.parametrize("launch_file", LAUNCH_FILES)
def test_ros2_launch_runs_nodes_messages_flow_and_ctrl_c_exits_0(ros2, params_file, launch_file, tmp_path):
    from usn_robust_keypoints.nodes.launcher import NodeProcesses, node_command

    with loopback_monitor(tmp_path, remaps=["image:=/camera/image_raw"]) as (env, mon):
        camera = NodeProcesses(env, tmp_path / "camera")
        if launch_file != "demo.launch.py":  # the pipeline needs a camera on /camera/image_raw
            camera.start("camera_source", node_command("camera_source", params_file,
                                                       remaps=["image:=/camera/image_raw"]))
        log = open(tmp_path / "launch.log", "w")
        proc = _launch(ros2, env, [PACKAGE, launch_file, f"params_file:={params_file}"]
                       + (["source:=synthetic"] if launch_file == "demo.launch.py" else []), log, tmp_path)
        try:
            def text():
                return (tmp_path / "launch.log").read_text()

            def matched(records):
                return [r for r in list(records) if mon.image(stamp_ns(r.msg.header)) is not None]

            wait_for(lambda: (len(matched(mon.keypoints)) >= 2 and len(matched(mon.certificates)) >= 1)
                     or proc.poll() is not None, 150,
                     lambda: f"keypoints/certificates with image stamps; launch output:\n{text()[-3000:]}")
            assert proc.poll() is None, text()[-3000:]
            for node in ("keypoint_detector", "certifier") + (("camera_source",) if launch_file == "demo.launch.py" else ()):
                assert f"[{node}-" in text(), f"{node} not started by {launch_file}:\n{text()[-3000:]}"
            kp = matched(mon.keypoints)[-1].msg
            cert = matched(mon.certificates)[-1].msg
            assert kp.header.frame_id == "camera" and len(kp.keypoints) > 0
            assert cert.radius == 4.0 and len(cert.keypoints) == len(kp.keypoints)
        finally:
            rc, left = _stop_group(proc)
            log.close()
            camera.stop()
    out = (tmp_path / "launch.log").read_text()
    assert rc == 0, f"ros2 launch exit code {rc} after SIGINT to its process group:\n{out[-4000:]}"
    assert not left, f"processes left after Ctrl-C: {left}"
    nodes = ["keypoint_detector", "certifier"] + (["camera_source"] if launch_file == "demo.launch.py" else [])
    for node in nodes:  # launch reports each child's exit: "process has finished cleanly" = exit 0
        assert any(f"[{node}-" in line and "process has finished cleanly" in line for line in out.splitlines()), \
            f"{node} did not exit cleanly:\n{out[-4000:]}"
    assert "process has died" not in out, out[-4000:]


@pytest.mark.parametrize("kind", list(BROKEN_LAUNCH_EDITS))
def test_broken_launch_file_fails(ros2, kind, tmp_path):
    path = tmp_path / f"broken_{kind}.launch.py"
    path.write_text(broken_launch_file(kind))
    words = BROKEN_LAUNCH_EDITS[kind][2]
    from usn_robust_keypoints.nodes.launcher import loopback_env

    env = loopback_env(log_dir=tmp_path / "ros")
    r = subprocess.run([str(ros2), "launch", str(path), "source:=synthetic"], env=env, capture_output=True,
                       text=True, timeout=120, start_new_session=True)
    out = r.stdout + r.stderr
    assert r.returncode != 0, f"{kind}: ros2 launch accepted a broken file:\n{out[-3000:]}"
    assert "[ERROR] [launch]" in out and words in out, out[-3000:]
    assert "process started" not in out, f"{kind}: nodes were started:\n{out[-3000:]}"
