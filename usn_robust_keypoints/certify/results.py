"""Typed certification results (converted to JSON here and to ROS messages in ``nodes``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum


class Status(str, Enum):
    """Outcome for one keypoint. ``CERTIFIED`` is only ever reported with a proof; the others say
    why not: ``REFUTED`` (a θ moves the argmax beyond the radius, see ``counterexample``), ``OPEN``
    (the search stopped undecided: depth or memory cap), ``UNKNOWN`` (the time budget ran out).
    ``NOT_CERTIFIED`` is a bound-only verdict without a search (the ``auto_lirpa`` backend)."""

    CERTIFIED = "certified"
    NOT_CERTIFIED = "not_certified"
    UNKNOWN = "unknown"
    REFUTED = "refuted"
    OPEN = "open"


@dataclass
class KeypointCertificate:
    """Certificate of one keypoint for one frame.

    Distances are in pixels of the frame the caller passed. ``certified_radius`` (r*) is the
    radius proven at the configured box (at most ``radius``; ``math.inf`` unless certified);
    ``counterexample`` the θ = (c, b) that refutes a ``REFUTED`` keypoint (else ``None``);
    ``time_ms`` the time from the start of the call until this keypoint's status was settled;
    ``beta_star`` is the largest brightness-only margin proven at ``radius`` (contrast fixed to 1)
    and ``alpha_star`` the largest contrast-only margin (brightness 0); 0.0 when none was proven
    and ``nan`` when not computed (budget).
    """

    index: int
    name: str
    x: float
    y: float
    score: float
    status: Status
    radius: float
    certified_radius: float = math.inf
    beta_star: float = math.nan
    alpha_star: float = math.nan
    time_ms: float = 0.0
    counterexample: tuple[float, float] | None = None

    @property
    def certified(self) -> bool:
        return self.status is Status.CERTIFIED

    def to_dict(self) -> dict:
        """JSON-ready (``certified_radius`` ``inf`` becomes ``None``; ``counterexample`` ``[c, b]``)."""
        d = asdict(self)
        d["status"] = self.status.value
        d["certified"] = self.certified
        d["certified_radius"] = self.certified_radius if math.isfinite(self.certified_radius) else None
        d["counterexample"] = None if self.counterexample is None else [float(v) for v in self.counterexample]
        return d

    @property
    def radius_label(self) -> str:
        """r* for tables and images: ``"2.8"``, or ``"refuted"`` / ``"—"`` when nothing is proven."""
        if math.isfinite(self.certified_radius):
            return f"{self.certified_radius:.1f}"
        return "refuted" if self.status is Status.REFUTED else "—"


@dataclass
class FrameCertificate:
    """All keypoint certificates of one frame, with the specification they were proven for."""

    alpha: float
    beta: float
    radius: float
    backend: str
    keypoints: list[KeypointCertificate] = field(default_factory=list)
    time_ms: float = 0.0
    frame_width: int = 0
    frame_height: int = 0

    @property
    def certified_rate(self) -> float:
        return sum(k.certified for k in self.keypoints) / max(len(self.keypoints), 1)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "keypoints"}
        d["keypoints"] = [k.to_dict() for k in self.keypoints]
        return d
