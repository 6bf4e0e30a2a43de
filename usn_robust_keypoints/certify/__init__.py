"""Certification of keypoints against brightness/contrast changes (no ROS import)."""

from .api import BACKENDS, certify
from .batch import certify_batch, worst_margins
from .bounds import Forms, bound_layers, propagate
from .native import WarmStart
from .results import FrameCertificate, KeypointCertificate, Status

__all__ = ["BACKENDS", "FrameCertificate", "Forms", "KeypointCertificate", "Status", "bound_layers",
           "WarmStart", "certify", "certify_batch", "propagate", "worst_margins"]
