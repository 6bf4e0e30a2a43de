"""Certification of keypoints against brightness/contrast changes (no ROS import)."""

from .results import FrameCertificate, KeypointCertificate, Status

__all__ = ["FrameCertificate", "KeypointCertificate", "Status"]
