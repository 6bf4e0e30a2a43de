"""Shared helpers of the ROS tests: waiting, a loopback domain with an in-process monitor, the
ros2-launch stack, process groups."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The ROS 2 launch stack (launch, launch_ros, ros2cli) from source, where this machine has it.
ROS2_LAUNCH_DIRS = (ROOT.parent / "shared" / "ros2-launch", Path("/work/shared/ros2-launch"))


BROKEN_LAUNCH_EDITS = {  # kind: (text of demo.launch.py, its broken replacement, words of the ros2 launch error)
    "remapping_typo": ('remappings=[("image", image), ("camera_info"', 'remapping=[("image", image), ("camera_info"',
                       "remapping"),
    "undeclared_argument": ('image = LaunchConfiguration("image")', 'image = LaunchConfiguration("imgae")', "imgae"),
    "parameters_not_a_list": ('parameters=[params_file], remappings=[("image", image)], output="screen"),\n'
                              '        Node(package=PACKAGE, executable="certifier"',
                              'parameters=params_file, remappings=[("image", image)], output="screen"),\n'
                              '        Node(package=PACKAGE, executable="certifier"', "parameters"),
}


def broken_launch_file(kind: str) -> str:
    """demo.launch.py with one of the :data:`BROKEN_LAUNCH_EDITS` (real `ros2 launch` rejects each)."""
    old, new, _ = BROKEN_LAUNCH_EDITS[kind]
    src = (ROOT / "launch" / "demo.launch.py").read_text()
    assert src.count(old) == 1, f"demo.launch.py changed: update the {kind} edit"
    return src.replace(old, new)


def wait_for(cond, timeout: float, what) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what() if callable(what) else what}")


def ros2_launch_dir() -> Path | None:
    """The ros2-launch folder (../shared/ros2-launch or /work/shared/ros2-launch), if any."""
    return next((d for d in ROS2_LAUNCH_DIRS if (d / "install.sh").is_file()), None)


def ensure_ros2_launch(pytest) -> Path:
    """``ros2`` of this venv with the launch stack installed (install.sh is idempotent); skips
    with the reason when no ros2-launch folder exists (a user's clone)."""
    d = ros2_launch_dir()
    if d is None:
        pytest.skip("no ros2-launch folder (../shared/ros2-launch or /work/shared/ros2-launch): "
                    "real `ros2 launch` tests need the launch stack; the AST launch-file test still runs")
    ros2 = Path(sys.executable).parent / "ros2"
    r = subprocess.run(["bash", str(d / "install.sh"), sys.prefix], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"ros2-launch install.sh failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert ros2.is_file(), f"{ros2} missing after install.sh"
    return ros2


def pids_in_group(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(p.name))
    return out


@contextmanager
def loopback_monitor(log_dir: Path, remaps: list[str] | None = None, keep_images: int = 200):
    """A fresh loopback ROS domain (env for child processes) and an in-process
    :class:`PipelineMonitor`; yields ``(env, monitor)``."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from usn_robust_keypoints.nodes.launcher import loopback_env
    from usn_robust_keypoints.nodes.monitor import PipelineMonitor

    env = loopback_env(log_dir=log_dir / "ros")
    env["ROS_DOMAIN_ID"] = str(100 + (os.getpid() + int(time.time())) % 100)
    saved = {k: os.environ.get(k) for k in ("FASTDDS_DEFAULT_PROFILES_FILE", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                                            "ROS_DOMAIN_ID", "ROS_LOG_DIR")}
    for key in saved:
        os.environ[key] = env[key]
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    args = ["--ros-args"] + [a for r in (remaps or []) for a in ("-r", r)] if remaps else None
    mon = PipelineMonitor(keep_images=keep_images, context=ctx, cli_args=args)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(mon)
    t = threading.Thread(target=ex.spin, daemon=True)
    t.start()
    try:
        yield env, mon
    finally:
        ex.shutdown(timeout_sec=2.0)
        mon.destroy_node()
        ctx.try_shutdown()
        t.join(timeout=2.0)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
