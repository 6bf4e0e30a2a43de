"""Running one node in its own process (console entry points) with a clean Ctrl-C."""

from __future__ import annotations

import signal
import sys
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node


def _ignore_stop_signals() -> None:
    """From here on SIGINT/SIGTERM are ignored: a terminal Ctrl-C reaches a node twice (once from
    the shell's process group, once forwarded by ``ros2 launch``), and the second one must not
    interrupt the clean-up (it did: exit -2, or an abort of the worker thread)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError):  # not the main thread (composed in-process): nothing to do
            pass


def spin_node(make_node: Callable[[], Node], args: list[str] | None = None) -> int:
    """``rclpy.init`` (with ``--ros-args``), spin ``make_node()`` until Ctrl-C/SIGTERM, clean up;
    returns 0 after a stop signal, however many times it arrives."""
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
        _ignore_stop_signals()
        for step in (lambda: getattr(node, "close", lambda: None)(), lambda: node.destroy_node()):
            if node is None:
                break
            try:
                step()
            except KeyboardInterrupt:  # raised before the handler above was replaced
                pass
        try:
            if rclpy.ok():
                rclpy.shutdown()
        except KeyboardInterrupt:
            pass
        _ignore_stop_signals()  # rclpy.shutdown() restores Python's SIGINT handler
    return 0
