"""Quality of service of the image topics (a node parameter: ``sensor_data`` or ``reliable``)."""

from __future__ import annotations

from rclpy.qos import QoSProfile, qos_profile_sensor_data

IMAGE_QOS_CHOICES = ("sensor_data", "reliable")


def image_qos(name: str, depth: int = 5) -> QoSProfile:
    """``sensor_data``: best effort, keep last ``depth`` (the default for camera images);
    ``reliable``: reliable, keep last ``depth``."""
    if name == "sensor_data":
        return QoSProfile(depth=depth, reliability=qos_profile_sensor_data.reliability,
                          durability=qos_profile_sensor_data.durability,
                          history=qos_profile_sensor_data.history)
    if name == "reliable":
        return QoSProfile(depth=depth)
    raise ValueError(f"qos must be one of {IMAGE_QOS_CHOICES}, got {name!r}")
