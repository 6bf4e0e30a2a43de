"""A certification request: the perturbation box, radius, backend and budget, and the one set of
rules they must satisfy (used by :func:`.api.certify`, the ``certify`` CLI and the certifier node).

Rules (:func:`validate_request`):

- box: ``alpha`` in [0, 1) (contrast stays positive), ``beta`` in [0, 1] (a brightness shift beyond
  ±1 saturates every pixel), both finite (:class:`~usn_robust_keypoints.perturbation.PerturbationBox`
  checks the first part);
- ``radius`` finite and >= 0 frame pixels. 0 is a meaningful request: the argmax must stay in the
  nominal heatmap cell (a cell's centre is at distance 0 only from itself);
- ``backend`` one of :data:`BACKENDS`;
- ``budget_ms`` ``None`` (no budget) or a finite number >= 0 (0: nothing is decided, every
  keypoint is ``UNKNOWN``).

:class:`CertifyOptions` holds the knobs that only experiments and benchmarks change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..perturbation import PerturbationBox

BACKENDS = ("native", "auto_lirpa")
LIRPA_METHODS = ("IBP", "CROWN-IBP", "CROWN", "full-CROWN", "alpha-CROWN")  # see .lirpa.METHODS


@dataclass(frozen=True)
class CertifyOptions:
    """Engine settings of :func:`.api.certify` beyond the request itself.

    ``margins``: compute beta*/alpha* by bisection; ``method``: the auto_LiRPA method
    (:data:`LIRPA_METHODS`, meanings in :data:`.lirpa.METHODS`) for ``backend="auto_lirpa"``;
    ``max_depth``: cap of the native branch and bound (splits per sub-box; 0 = one bound pass over
    the whole box; ``None``: :data:`.native.MAX_DEPTH`); ``backward=False``: no backward bounds of
    undecided spec rows (forward bounds + branch and bound only)."""

    margins: bool = True
    method: str = "CROWN"
    max_depth: int | None = None
    backward: bool = True

    def __post_init__(self) -> None:
        if self.method not in LIRPA_METHODS:
            raise ValueError(f"unknown auto_LiRPA method {self.method!r}; choose one of {', '.join(LIRPA_METHODS)}")
        if self.max_depth is not None and (not isinstance(self.max_depth, int) or self.max_depth < 0):
            raise ValueError(f"max_depth must be an integer >= 0 or None, got {self.max_depth!r}")


def validate_request(box: PerturbationBox | tuple[float, float], radius: float, backend: str = "native",
                     budget_ms: float | None = None) -> PerturbationBox:
    """Raise ``ValueError`` with a clear message for a bad request (rules in the module docstring);
    returns the box as a :class:`PerturbationBox`. ``box`` may be given as ``(alpha, beta)``."""
    if not isinstance(box, PerturbationBox):
        alpha, beta = box
        box = PerturbationBox(alpha, beta)  # alpha/beta finite, >= 0, alpha < 1
    if box.beta > 1:
        raise ValueError(f"beta must be in [0, 1] (a brightness shift beyond ±1 saturates every pixel), got {box.beta}")
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not math.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be a finite number >= 0 (frame pixels), got {radius!r}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if budget_ms is not None and (isinstance(budget_ms, bool) or not isinstance(budget_ms, (int, float))
                                  or not math.isfinite(budget_ms) or budget_ms < 0):
        raise ValueError(f"budget_ms must be a finite number >= 0 or None (no budget), got {budget_ms!r}")
    return box
