"""``certify``: per-keypoint brightness/contrast certificates of one frame (the public entry point).

Semantics (all distances in pixels of the frame the caller passed):

- status at ``(alpha, beta, radius)``: ``CERTIFIED`` iff for every ``theta = (c, b)`` with
  ``c in [1-alpha, 1+alpha]``, ``b in [-beta, beta]`` the argmax cell of the keypoint's heatmap on
  ``clip(c * x0 + b, 0, 1)`` has its centre within ``radius`` of the nominal argmax cell's centre
  (``x0`` = the pre-processed frame, exactly as :meth:`KeypointModel.predict`). Otherwise
  ``REFUTED`` (a θ was found that moves the argmax farther: ``counterexample``), ``OPEN`` (the
  search stopped undecided: depth or memory cap), ``UNKNOWN`` (the budget ran out);
  ``NOT_CERTIFIED`` only from the ``auto_lirpa`` backend (bounds alone, no search).
- ``certified_radius`` r*: the radius proven over the whole box when certified (at most
  ``radius``: the distance of the farthest heatmap cell the argmax can still reach according to
  the bounds), ``inf`` otherwise.
- ``beta_star``: largest brightness-only margin (``c = 1``, ``b in [-beta*, beta*]``) proven at
  ``radius``; ``alpha_star``: largest contrast-only margin (``b = 0``). Both by bisection, only
  values that were proven; 0.0 when none was, ``nan`` when the budget ran out before.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..model.keypoint_model import KeypointModel
from ..model.preprocess import cell_centers, validate_frame
from ..perturbation import PerturbationBox
from . import native
from .native import MAX_DEPTH, FrameContext, KeypointResult, WarmStart, frame_context, search
from .request import BACKENDS, CertifyOptions, validate_request
from .results import FrameCertificate, KeypointCertificate, Status

__all__ = ["BACKENDS", "CertifyOptions", "MAX_DEPTH", "certify", "validate_request"]

STATUS = {"proven": Status.CERTIFIED, "refuted": Status.REFUTED, "open": Status.OPEN, "unknown": Status.UNKNOWN,
          "exhausted": Status.NOT_CERTIFIED}  # exhausted: bound-only verdict of the auto_lirpa backend
MARGIN_DEPTH = 3  # at most 2**3 sub-boxes per bisection step of a 1-D margin
MARGIN_STEPS = 4
MARGIN_CAP = 0.5  # largest beta* / alpha* searched
_OPTION_NAMES = tuple(CertifyOptions.__dataclass_fields__)


def _validate_image(image: np.ndarray) -> None:
    """Raise ``ValueError`` for an image :func:`certify` cannot take (NaN named first, then :func:`validate_frame`)."""
    if isinstance(image, np.ndarray) and image.dtype.kind == "f" and np.isnan(image).any():
        raise ValueError("image contains NaN (and must be uint8 anyway)")
    validate_frame(image)


def _resolve(alpha: float | None, beta: float | None, box: PerturbationBox | None, options: CertifyOptions | None,
             knobs: dict) -> tuple[PerturbationBox, CertifyOptions]:
    """The box and options of a call in either form (``box=``/``options=`` or the keywords)."""
    if box is not None and (alpha is not None or beta is not None):
        raise ValueError("give the box either as box=PerturbationBox(...) or as alpha=/beta=, not both")
    if box is None:
        d = PerturbationBox()
        box = (d.alpha if alpha is None else alpha, d.beta if beta is None else beta)
    given = {k: v for k, v in knobs.items() if v is not None}
    if options is not None and given:
        raise ValueError(f"give the engine settings either as options=CertifyOptions(...) or as keywords "
                         f"({', '.join(given)}), not both")
    return box, options if options is not None else CertifyOptions(**given)


def certify(model: KeypointModel, image: np.ndarray, alpha: float | None = None, beta: float | None = None,
            radius: float = 4.0, backend: str = "native", budget_ms: float | None = None, *,
            box: PerturbationBox | None = None, options: CertifyOptions | None = None,
            margins: bool | None = None, method: str | None = None, max_depth: int | None = None,
            backward: bool | None = None, warm_start: WarmStart | None = None) -> FrameCertificate:
    """Certify every keypoint of ``image`` (uint8 gray/BGR, any size) against
    ``clip(c*x + b, 0, 1)`` over ``box`` (``c in [1-alpha, 1+alpha]``, ``b in [-beta, beta]``; default
    ``PerturbationBox()``, alpha = beta = 0.02) at ``radius`` frame pixels. ``budget_ms`` bounds the
    time (undecided keypoints become ``UNKNOWN``). The request rules are :func:`.request.validate_request`.

    ``options`` (:class:`.request.CertifyOptions`) holds the engine settings experiments change
    (``margins``, ``method``, ``max_depth``, ``backward``). The keyword form
    ``certify(model, image, alpha, beta, radius, margins=False, ...)`` is the same call.
    ``warm_start`` (a :class:`.native.WarmStart`, one per stream) starts the native search from the
    previous frame's partition of the box and is updated with this frame's (the proof is still made
    on this frame)."""
    box, options = _resolve(alpha, beta, box, options, dict(margins=margins, method=method, max_depth=max_depth,
                                                            backward=backward))
    _validate_image(image)
    box = validate_request(box, radius, backend, budget_ms)
    alpha, beta = box.alpha, box.beta
    margins, method, max_depth, backward = (getattr(options, k) for k in _OPTION_NAMES)
    t0, start = time.perf_counter(), native.clock()
    deadline = math.inf if budget_ms is None else start + budget_ms / 1000.0
    x0, geo = model.preprocess(image)
    ctx = frame_context(model.detector, x0, geo)
    names = model.keypoint_names
    if backend == "auto_lirpa":
        from .lirpa import certify_lirpa

        rstar, states, _ = certify_lirpa(ctx, alpha, beta, radius, method)
        results = [KeypointResult(state=st, rstar=r if st == "proven" else math.inf, decided_at=native.clock())
                   for r, st in zip(rstar, states)]
        beta_star = alpha_star = [math.nan] * len(names)
    else:
        found = search(ctx, box, radius, deadline, MAX_DEPTH if max_depth is None else max_depth, backward,
                       warm=warm_start)
        results = [found[k] for k in range(len(names))]
        beta_star = alpha_star = [math.nan] * len(names)
        if margins:
            proven = [r.state == "proven" for r in results]
            beta_star = _bisect(ctx, radius, deadline, [beta if p else 0.0 for p in proven], "beta")
            alpha_star = _bisect(ctx, radius, deadline, [alpha if p else 0.0 for p in proven], "alpha")
    hm_scores = ctx.scores
    xy = geo.input_to_frame(cell_centers(ctx.cells[:, 0], ctx.cells[:, 1], ctx.plan.stride))
    kps = [KeypointCertificate(index=k, name=names[k], x=float(xy[k, 0]), y=float(xy[k, 1]),
                               score=float(hm_scores[k]), status=STATUS[r.state], radius=float(radius),
                               certified_radius=r.rstar, beta_star=beta_star[k], alpha_star=alpha_star[k],
                               time_ms=1000.0 * (r.decided_at - start), counterexample=r.counterexample)
           for k, r in enumerate(results)]
    return FrameCertificate(alpha=alpha, beta=beta, radius=float(radius), backend=backend, keypoints=kps,
                            time_ms=1000.0 * (time.perf_counter() - t0), frame_width=geo.frame_width,
                            frame_height=geo.frame_height)


def _bisect(ctx: FrameContext, radius: float, deadline: float, lo: list[float], which: str) -> list[float]:
    """Largest proven 1-D margin per keypoint (``which`` = "beta" or "alpha"), bisecting between
    the proven ``lo`` and :data:`MARGIN_CAP` (geometric steps); nan if nothing could be tried."""
    lo = list(lo)
    hi = [MARGIN_CAP] * len(lo)
    tried = [False] * len(lo)
    for _ in range(MARGIN_STEPS):
        mids = [math.sqrt(max(l, 1e-3) * h) if l < h else h for l, h in zip(lo, hi)]
        boxes = [PerturbationBox(0.0, m) if which == "beta" else PerturbationBox(m, 0.0) for m in mids]
        if native.clock() + ctx.box_seconds * len(set(boxes)) > deadline:
            break  # out of budget, or the first bound pass of this step would overrun it
        todo = [k for k in range(len(lo)) if lo[k] < hi[k]]
        if not todo:
            break
        for box in dict.fromkeys(boxes[k] for k in todo):  # keypoints with the same box share the search
            if native.clock() + ctx.box_seconds > deadline:
                break
            found = search(ctx, box, radius, deadline, MARGIN_DEPTH, keypoints=[k for k in todo if boxes[k] == box])
            for k, r in found.items():
                if r.state == "unknown":
                    continue
                tried[k] = True
                if r.state == "proven":
                    lo[k] = mids[k]
                else:
                    hi[k] = mids[k]
    return [l if (t or l > 0) else math.nan for l, t in zip(lo, tried)]
