"""The one place where library results become ROS messages (keypoints and certificates)."""

from __future__ import annotations

import math

from std_msgs.msg import Header
from usn_robust_keypoints_msgs.msg import CertifiedKeypoints, Keypoint, KeypointArray
from usn_robust_keypoints_msgs.msg import KeypointCertificate as KeypointCertificateMsg

from ..certify.results import FrameCertificate, KeypointCertificate, Status
from ..model.keypoint_model import Prediction

STATUS_CODES = {
    Status.CERTIFIED: KeypointCertificateMsg.CERTIFIED,
    Status.NOT_CERTIFIED: KeypointCertificateMsg.NOT_CERTIFIED,
    Status.UNKNOWN: KeypointCertificateMsg.UNKNOWN,
    Status.REFUTED: KeypointCertificateMsg.REFUTED,
    Status.OPEN: KeypointCertificateMsg.OPEN,
}
STATUS_OF_CODE = {v: k for k, v in STATUS_CODES.items()}


def prediction_to_msg(pred: Prediction, names: list[str], header: Header) -> KeypointArray:
    """Detector output -> ``KeypointArray`` with the image's header."""
    msg = KeypointArray(header=header, image_width=pred.geometry.frame_width,
                        image_height=pred.geometry.frame_height)
    msg.keypoints = [Keypoint(name=n, x=float(xy[0]), y=float(xy[1]), score=float(s))
                     for n, xy, s in zip(names, pred.keypoints, pred.scores)]
    return msg


def certificate_to_msg(cert: FrameCertificate, header: Header, model_name: str = "") -> CertifiedKeypoints:
    """``FrameCertificate`` -> ``CertifiedKeypoints`` with the image's header."""
    msg = CertifiedKeypoints(header=header, alpha=float(cert.alpha), beta=float(cert.beta),
                             radius=float(cert.radius), backend=str(cert.backend),
                             time_ms=float(cert.time_ms), frame_width=int(cert.frame_width),
                             frame_height=int(cert.frame_height), model_name=model_name)
    msg.keypoints = [
        KeypointCertificateMsg(
            index=int(k.index), name=k.name, x=float(k.x), y=float(k.y), score=float(k.score),
            certified=k.certified, status=STATUS_CODES[k.status],
            certified_radius=float(k.certified_radius), beta_star=float(k.beta_star),
            alpha_star=float(k.alpha_star), time_ms=float(k.time_ms),
            counterexample_c=float(k.counterexample[0]) if k.counterexample else math.nan,
            counterexample_b=float(k.counterexample[1]) if k.counterexample else math.nan)
        for k in cert.keypoints]
    return msg


def msg_to_certificate(msg: CertifiedKeypoints) -> FrameCertificate:
    """``CertifiedKeypoints`` -> ``FrameCertificate`` (the inverse of :func:`certificate_to_msg`)."""
    return FrameCertificate(
        alpha=msg.alpha, beta=msg.beta, radius=msg.radius, backend=msg.backend, time_ms=msg.time_ms,
        frame_width=msg.frame_width, frame_height=msg.frame_height,
        keypoints=[KeypointCertificate(index=k.index, name=k.name, x=k.x, y=k.y, score=k.score,
                                       status=STATUS_OF_CODE[k.status], radius=msg.radius,
                                       certified_radius=k.certified_radius, beta_star=k.beta_star,
                                       alpha_star=k.alpha_star, time_ms=k.time_ms,
                                       counterexample=(k.counterexample_c, k.counterexample_b)
                                       if k.status == KeypointCertificateMsg.REFUTED else None)
                   for k in msg.keypoints])
