"""Certification of keypoints against brightness/contrast changes (no ROS import)."""

from ..perturbation import PerturbationBox
from .api import certify
from .batch import certify_batch, worst_margins
from .bounds import Forms, bound_layers, propagate
from .native import WarmStart
from .request import BACKENDS, CertifyOptions, validate_request
from .results import FrameCertificate, KeypointCertificate, Status

__all__ = ["BACKENDS", "CertifyOptions", "FrameCertificate", "Forms", "KeypointCertificate", "PerturbationBox",
           "Status", "WarmStart", "bound_layers", "certify", "certify_batch", "propagate", "validate_request",
           "worst_margins"]
