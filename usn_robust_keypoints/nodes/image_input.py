"""The image subscription of the detector and the certifier: raw ``sensor_msgs/Image`` on
``image`` or, as image_transport users expect, ``sensor_msgs/CompressedImage`` (jpeg/png) on
``<image>/compressed``, chosen by the ``image_transport`` parameter (``raw`` | ``compressed``) or
by remapping ``image`` to a topic that ends in ``/compressed``."""

from __future__ import annotations

from typing import Callable

from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CompressedImage, Image

TRANSPORTS = ("raw", "compressed")


def subscribe_image(node: Node, callback: Callable, qos: QoSProfile) -> str:
    """Subscribe ``callback`` to the image topic of the node's ``image_transport`` parameter
    (declared by the node); returns the topic name (an unknown transport is logged, ``raw`` used)."""
    transport = str(node.get_parameter("image_transport").value)
    if transport not in TRANSPORTS:
        node.get_logger().error(f"image_transport must be one of {TRANSPORTS}, got {transport!r}; using raw")
        transport = "raw"
    base = node.resolve_topic_name("image")  # remappings applied, as image_transport does
    if base.endswith("/compressed"):
        transport, topic = "compressed", base
    else:
        topic = base + "/compressed" if transport == "compressed" else base
    kind = CompressedImage if transport == "compressed" else Image
    node.create_subscription(kind, topic, callback, qos)
    node.get_logger().info(f"subscribed to {topic} (sensor_msgs/{kind.__name__})")
    return topic


def describe(msg) -> str:
    """Short description of an image message for log lines (stamp, encoding/format, size)."""
    stamp = f"{msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}"
    if hasattr(msg, "format"):
        return f"{stamp} ({msg.format or 'no format'}, {len(msg.data)} B compressed)"
    return f"{stamp} ({msg.encoding}, {msg.width}x{msg.height})"
