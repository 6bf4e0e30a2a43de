"""A running pipeline for the demo, the benchmark and the tests: the nodes as separate processes
(:mod:`.launcher`) plus an in-process :class:`~.monitor.PipelineMonitor`, all on loopback DDS."""

from __future__ import annotations

import os
import random
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import rclpy
from rclpy.executors import SingleThreadedExecutor

from .launcher import NodeProcesses, find_config, loopback_env, start_nodes
from .monitor import PipelineMonitor


@contextmanager
def running_pipeline(config: str | Path, log_dir: Path, overrides: dict[str, dict] | None = None,
                     only: list[str] | None = None, remaps: list[str] | None = None,
                     keep_images: int = 60) -> Iterator[tuple[NodeProcesses, PipelineMonitor]]:
    """Start the nodes of ``config`` (with ``overrides``) on a fresh ROS domain and yield
    ``(processes, monitor)``; everything is stopped on exit."""
    env = loopback_env(log_dir=log_dir / "ros")
    if not os.environ.get("ROS_DOMAIN_ID"):
        env["ROS_DOMAIN_ID"] = str(random.randint(100, 199))
    for key in ("FASTDDS_DEFAULT_PROFILES_FILE", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "ROS_LOG_DIR"):
        os.environ[key] = env[key]  # this process's participant joins the same loopback domain
    context = rclpy.Context()
    rclpy.init(context=context)
    monitor = PipelineMonitor(keep_images=keep_images, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(monitor)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    procs = start_nodes(find_config(config), env, log_dir, remaps, overrides, only)
    try:
        yield procs, monitor
    finally:
        procs.stop()
        executor.shutdown(timeout_sec=2.0)
        monitor.destroy_node()
        context.try_shutdown()
        spinner.join(timeout=2.0)
