"""``usn-keypoints bench-large-images``: which image sizes arrive through the DDS set-up of the
local runs (config/fastdds_loopback.xml: 32 MiB shared-memory segment + UDPv4 on 127.0.0.1).

A publisher process sends ``frames`` mono8 images of each size at ``rate`` Hz; this process
subscribes with the same QoS and counts what arrives. Writes a markdown table."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

SIZES_MB = (16.0, 31.9, 32.1, 45.8, 100.0)  # 45.8 MiB = 8000x6000 mono8 (48,000,000 B)


def _publish(qos: str, sizes: list[float], frames: int, rate: float) -> None:
    """Publisher process: ``frames`` images per size, frame_id = the size in MiB."""
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image

    from .qos import image_qos

    rclpy.init()
    node = rclpy.create_node("usn_big_image_publisher")
    pub = node.create_publisher(Image, "big_image", image_qos(qos))
    deadline = time.monotonic() + 20.0
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    for mb in sizes:
        width = 4000
        height = int(mb * 1024 * 1024) // width
        msg = Image(height=height, width=width, encoding="mono8", step=width)
        msg.data = np.zeros(height * width, np.uint8).tobytes()
        msg.header.frame_id = f"{mb:g}"
        for _ in range(frames):
            pub.publish(msg)
            time.sleep(1.0 / rate)
    time.sleep(2.0)
    node.destroy_node()
    rclpy.shutdown()


def measure(qos: str, sizes=SIZES_MB, frames: int = 5, rate: float = 5.0, log_dir: Path | None = None) -> dict:
    """``{size MiB: frames received}`` for ``frames`` sent per size."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from .launcher import loopback_env
    from .qos import image_qos

    env = loopback_env(log_dir=log_dir)
    for k in ("FASTDDS_DEFAULT_PROFILES_FILE", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID"):
        __import__("os").environ[k] = env[k]
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("usn_big_image_subscriber", context=ctx)
    got: dict[str, int] = {}
    lock = threading.Lock()

    def on_image(msg) -> None:
        with lock:
            got[msg.header.frame_id] = got.get(msg.header.frame_id, 0) + 1

    node.create_subscription(Image, "big_image", on_image, image_qos(qos))
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    spinner = threading.Thread(target=ex.spin, daemon=True)
    spinner.start()
    try:
        subprocess.run([sys.executable, "-m", __name__, "--publish", qos, "--frames", str(frames), "--rate", str(rate),
                        "--sizes", *map(str, sizes)], env=env, check=True, timeout=600)
        time.sleep(1.0)
    finally:
        ex.shutdown(timeout_sec=2.0)
        node.destroy_node()
        ctx.try_shutdown()
    return {f"{mb:g}": got.get(f"{mb:g}", 0) for mb in sizes}


def run_bench(frames: int = 5, rate: float = 5.0, out_dir: str | Path = "results/bench_large_images") -> int:
    """Both image QoS; prints and writes ``large_images.md`` / ``.json``."""
    from .transport import shm_segment_bytes

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = {q: measure(q, frames=frames, rate=rate, log_dir=out / "logs") for q in ("sensor_data", "reliable")}
    seg = shm_segment_bytes(Path(__file__).resolve().parents[2] / "config" / "fastdds_loopback.xml")
    lines = [f"mono8 images through config/fastdds_loopback.xml (SHM segment {seg} B = {seg / 2**20:g} MiB), "
             f"{frames} frames per size at {rate:g} Hz, publisher and subscriber in two processes; received / sent:",
             "", "| QoS | " + " | ".join(f"{s:g} MiB" for s in SIZES_MB) + " |", "|---|" + "---|" * len(SIZES_MB)]
    for q, got in rows.items():
        lines.append(f"| {q} | " + " | ".join(f"{got[f'{s:g}']}/{frames}" for s in SIZES_MB) + " |")
    table = "\n".join(lines)
    print(table, flush=True)
    (out / "large_images.md").write_text(table + "\n")
    (out / "large_images.json").write_text(json.dumps({"frames": frames, "rate": rate, "received": rows}, indent=1))
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--publish", required=True)
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--sizes", type=float, nargs="+", default=list(SIZES_MB))
    a = ap.parse_args()
    _publish(a.publish, a.sizes, a.frames, a.rate)
