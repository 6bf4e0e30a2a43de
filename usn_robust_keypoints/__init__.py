"""usn_robust_keypoints: keypoint detection with certified brightness/contrast robustness.

Public API: :func:`load_model` (with :class:`ModelSpec` for your own network),
:class:`PerturbationBox`, :func:`certify` (with :class:`CertifyOptions`) and the result types.
The core library imports no ROS module; ROS lives in ``usn_robust_keypoints.nodes``.
"""

from .certify import CertifyOptions, FrameCertificate, KeypointCertificate, Status, certify, certify_batch
from .model import KeypointModel, Prediction, load_model
from .model.graph import ModelSpec
from .perturbation import PerturbationBox, apply_perturbation

__all__ = ["CertifyOptions", "FrameCertificate", "KeypointCertificate", "KeypointModel", "ModelSpec", "PerturbationBox",
           "Prediction",
           "Status", "apply_perturbation", "certify", "certify_batch", "load_model"]
__version__ = "0.1.0"
