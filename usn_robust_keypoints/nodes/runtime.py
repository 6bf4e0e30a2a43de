"""Running one node in its own process (console entry points) with a clean Ctrl-C."""

from __future__ import annotations

import sys
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node


def spin_node(make_node: Callable[[], Node], args: list[str] | None = None) -> int:
    """``rclpy.init`` (with ``--ros-args``), spin ``make_node()`` until Ctrl-C/SIGTERM, clean up."""
    rclpy.init(args=sys.argv if args is None else args)
    node = None
    try:
        node = make_node()
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # rclpy's signal handler shuts the context down asynchronously; an executor that builds
        # its next wait set at that moment raises RCLError ("the given context is not valid")
        # instead of ExternalShutdownException (known rclpy race). That is a clean shutdown too.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
