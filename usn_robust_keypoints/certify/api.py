"""``certify``: per-keypoint brightness/contrast certificates of one frame (the public entry point).

Semantics (all distances in pixels of the frame the caller passed):

- status at ``(alpha, beta, radius)``: ``CERTIFIED`` iff for every ``theta = (c, b)`` with
  ``c in [1-alpha, 1+alpha]``, ``b in [-beta, beta]`` the argmax cell of the keypoint's heatmap on
  ``clip(c * x0 + b, 0, 1)`` has its centre within ``radius`` of the nominal argmax cell's centre
  (``x0`` = the pre-processed frame, exactly as :meth:`KeypointModel.predict`). ``NOT_CERTIFIED``:
  a counter-example was found or the bounds could not prove it; ``UNKNOWN``: the budget ran out.
- ``certified_radius`` r*: the smallest radius proven over the whole box (the distance of the
  farthest heatmap cell the argmax can still reach according to the bounds).
- ``beta_star``: largest brightness-only margin (``c = 1``, ``b in [-beta*, beta*]``) proven at
  ``radius``; ``alpha_star``: largest contrast-only margin (``b = 0``). Both by bisection, only
  values that were proven; 0.0 when none was, ``nan`` when the budget ran out before.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..model.keypoint_model import KeypointModel
from ..model.preprocess import cell_centers, decode_heatmaps, validate_frame
from ..perturbation import PerturbationBox
from .native import FrameContext, frame_context, new_job, solve
from .request import BACKENDS, CertifyOptions, validate_request
from .results import FrameCertificate, KeypointCertificate, Status

__all__ = ["BACKENDS", "CertifyOptions", "MAX_DEPTH", "certify", "validate_request"]

MAX_DEPTH = 5  # at most 4**5 sub-boxes per keypoint for a 2-D box
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
            backward: bool | None = None, thorough: bool | None = None) -> FrameCertificate:
    """Certify every keypoint of ``image`` (uint8 gray/BGR, any size) against
    ``clip(c*x + b, 0, 1)`` over ``box`` (``c in [1-alpha, 1+alpha]``, ``b in [-beta, beta]``; default
    ``PerturbationBox()``, alpha = beta = 0.02) at ``radius`` frame pixels. ``budget_ms`` bounds the
    time (undecided keypoints become ``UNKNOWN``). The request rules are :func:`.request.validate_request`.

    ``options`` (:class:`.request.CertifyOptions`) holds the engine settings experiments change
    (``margins``, ``method``, ``max_depth``, ``backward``, ``thorough``). The keyword form
    ``certify(model, image, alpha, beta, radius, margins=False, ...)`` is the same call."""
    box, options = _resolve(alpha, beta, box, options, dict(margins=margins, method=method, max_depth=max_depth,
                                                            backward=backward, thorough=thorough))
    _validate_image(image)
    box = validate_request(box, radius, backend, budget_ms)
    alpha, beta = box.alpha, box.beta
    margins, method, max_depth, backward, thorough = (getattr(options, k) for k in _OPTION_NAMES)
    t0 = time.perf_counter()
    deadline = math.inf if budget_ms is None else t0 + budget_ms / 1000.0
    x0, geo = model.preprocess(image)
    ctx = frame_context(model.detector, x0, geo)
    names = model.keypoint_names
    if backend == "auto_lirpa":
        from .lirpa import certify_lirpa

        rstar, states, times = certify_lirpa(ctx, alpha, beta, radius, method)
        beta_star = alpha_star = [math.nan] * len(names)
    else:
        rstar, states, times = _certify_box(ctx, box, radius, deadline,
                                           MAX_DEPTH if max_depth is None else max_depth, backward, thorough)
        beta_star = alpha_star = [math.nan] * len(names)
        if margins:
            proven = [s == "proven" for s in states]
            beta_star = _bisect(ctx, radius, deadline, [beta if p else 0.0 for p in proven], "beta")
            alpha_star = _bisect(ctx, radius, deadline, [alpha if p else 0.0 for p in proven], "alpha")
    hm_scores = _scores(ctx)
    xy = geo.input_to_frame(cell_centers(ctx.cells[:, 0], ctx.cells[:, 1], ctx.plan.stride))
    kps = [KeypointCertificate(index=k, name=names[k], x=float(xy[k, 0]), y=float(xy[k, 1]),
                               score=float(hm_scores[k]), status=_status(states[k]), radius=float(radius),
                               certified_radius=rstar[k], beta_star=beta_star[k], alpha_star=alpha_star[k],
                               time_ms=1000.0 * times[k])
           for k in range(len(names))]
    return FrameCertificate(alpha=alpha, beta=beta, radius=float(radius), backend=backend, keypoints=kps,
                            time_ms=1000.0 * (time.perf_counter() - t0), frame_width=geo.frame_width,
                            frame_height=geo.frame_height)


def _scores(ctx: FrameContext) -> np.ndarray:
    with torch.no_grad():
        hm = ctx.detector(ctx.x0)[0]
    return decode_heatmaps(hm)[2].cpu().numpy()


def _status(state: str) -> Status:
    return {"proven": Status.CERTIFIED, "unknown": Status.UNKNOWN}.get(state, Status.NOT_CERTIFIED)


def _certify_box(ctx: FrameContext, box: PerturbationBox, radius: float, deadline: float,
                 max_depth: int, backward: bool = True,
                 thorough: bool = False) -> tuple[list[float], list[str], list[float]]:
    """r*, state and seconds per keypoint for one box at one radius."""
    jobs = [new_job(k, box.limits, radius, ctx.x0.device, ctx.x0.dtype) for k in range(ctx.dist.shape[0])]
    solve(ctx, jobs, deadline, max_depth, backward, thorough)
    return [j.certified_radius for j in jobs], [j.state for j in jobs], [j.time_s for j in jobs]


def _bisect(ctx: FrameContext, radius: float, deadline: float, lo: list[float], which: str) -> list[float]:
    """Largest proven 1-D margin per keypoint (``which`` = "beta" or "alpha"), bisecting between
    the proven ``lo`` and :data:`MARGIN_CAP` (geometric steps); nan if nothing could be tried."""
    lo = list(lo)
    hi = [MARGIN_CAP] * len(lo)
    tried = [False] * len(lo)
    for _ in range(MARGIN_STEPS):
        mids = [math.sqrt(max(l, 1e-3) * h) if l < h else h for l, h in zip(lo, hi)]
        boxes = [PerturbationBox(0.0, m) if which == "beta" else PerturbationBox(m, 0.0) for m in mids]
        if time.perf_counter() + ctx.box_seconds * len(set(boxes)) > deadline:
            break  # out of budget, or the first bound pass of this step would overrun it
        jobs = [new_job(k, boxes[k].limits, radius, ctx.x0.device, ctx.x0.dtype) for k in range(len(lo)) if lo[k] < hi[k]]
        if not jobs:
            break
        solve(ctx, jobs, deadline, MARGIN_DEPTH)
        for j in jobs:
            if j.state == "unknown":
                continue
            tried[j.k] = True
            if j.state == "proven":
                lo[j.k] = mids[j.k]
            else:
                hi[j.k] = mids[j.k]
    return [l if (t or l > 0) else math.nan for l, t in zip(lo, tried)]
