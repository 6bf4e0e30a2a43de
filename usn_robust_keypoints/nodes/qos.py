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


def qos_name_or_default(name: str, logger) -> str:
    """``name`` when it is a valid image QoS name; otherwise log the error and fall back to
    ``sensor_data`` (a bad parameter must not stop the node)."""
    if name in IMAGE_QOS_CHOICES:
        return name
    logger.error(f"qos must be one of {IMAGE_QOS_CHOICES}, got {name!r}; using sensor_data")
    return "sensor_data"
