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
from ..perturbation import PerturbationBox
from .native import FrameContext, frame_context, new_job, solve
from .results import FrameCertificate, KeypointCertificate, Status

BACKENDS = ("native", "auto_lirpa")
MAX_DEPTH = 5  # at most 4**5 sub-boxes per keypoint for a 2-D box
MARGIN_DEPTH = 3  # at most 2**3 sub-boxes per bisection step of a 1-D margin
MARGIN_STEPS = 4
MARGIN_CAP = 0.5  # largest beta* / alpha* searched


def validate_request(image: np.ndarray, alpha: float, beta: float, radius: float, backend: str,
                     budget_ms: float | None) -> None:
    """Raise ``ValueError`` with a clear message for a bad certification request."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype.kind == "f" and np.isnan(image).any():
        raise ValueError("image contains NaN (and must be uint8 anyway)")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (gray or BGR), got dtype {image.dtype}")
    PerturbationBox(alpha, beta)  # alpha/beta finite, >= 0, alpha < 1
    if not isinstance(radius, (int, float)) or not math.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be a finite number >= 0 (frame pixels), got {radius!r}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if budget_ms is not None and not (budget_ms >= 0):
        raise ValueError(f"budget_ms must be >= 0 or None, got {budget_ms!r}")


def certify(model: KeypointModel, image: np.ndarray, alpha: float = 0.02, beta: float = 0.02,
            radius: float = 4.0, backend: str = "native", budget_ms: float | None = None,
            margins: bool = True, method: str = "CROWN", max_depth: int | None = None,
            backward: bool = True, thorough: bool = False) -> FrameCertificate:
    """Certify every keypoint of ``image`` (uint8 gray/BGR, any size) against
    ``clip(c*x + b, 0, 1)``, ``c in [1-alpha, 1+alpha]``, ``b in [-beta, beta]`` at ``radius``
    frame pixels. ``budget_ms`` bounds the time (undecided keypoints become ``UNKNOWN``);
    ``margins=False`` skips the beta*/alpha* bisection. ``method`` selects the auto_LiRPA
    method (IBP, CROWN, alpha-CROWN) for ``backend="auto_lirpa"``; ``max_depth`` caps the native
    box splitting (0 = one bound pass over the whole box; default :data:`MAX_DEPTH`); ``backward=False``
    disables the backward refinement of undecided spec rows (forward bounds + splitting only).
    ``thorough=True`` keeps splitting every failing sub-box down to ``max_depth`` instead of giving
    up on keypoints that look hopeless after one split or need more than ``native.MAX_LEAVES`` sub-boxes: for offline
    evaluation at large boxes (seconds per frame; use a small ``max_depth``)."""
    validate_request(image, alpha, beta, radius, backend, budget_ms)
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
        rstar, states, times = _certify_box(ctx, (1 - alpha, 1 + alpha, -beta, beta), radius, deadline,
                                           MAX_DEPTH if max_depth is None else max_depth, backward, thorough)
        beta_star = alpha_star = [math.nan] * len(names)
        if margins:
            proven = [s == "proven" for s in states]
            beta_star = _bisect(ctx, radius, deadline, [beta if p else 0.0 for p in proven], "beta")
            alpha_star = _bisect(ctx, radius, deadline, [alpha if p else 0.0 for p in proven], "alpha")
    hm_scores = _scores(ctx)
    xy = geo.input_to_frame(np.stack([(ctx.cells[:, 1] + 0.5) * ctx.plan.stride - 0.5,
                                      (ctx.cells[:, 0] + 0.5) * ctx.plan.stride - 0.5], axis=1))
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
        hm = ctx.detector(ctx.x0)[0].flatten(1)
    return hm.max(dim=1).values.cpu().numpy()


def _status(state: str) -> Status:
    return {"proven": Status.CERTIFIED, "unknown": Status.UNKNOWN}.get(state, Status.NOT_CERTIFIED)


def _certify_box(ctx: FrameContext, box: tuple[float, float, float, float], radius: float, deadline: float,
                 max_depth: int, backward: bool = True,
                 thorough: bool = False) -> tuple[list[float], list[str], list[float]]:
    """r*, state and seconds per keypoint for one box at one radius."""
    jobs = [new_job(k, box, radius, ctx.x0.device, ctx.x0.dtype) for k in range(ctx.dist.shape[0])]
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
        boxes = [(1.0, 1.0, -m, m) if which == "beta" else (1.0 - m, 1.0 + m, 0.0, 0.0) for m in mids]
        if time.perf_counter() + ctx.box_seconds * len(set(boxes)) > deadline:
            break  # out of budget, or the first bound pass of this step would overrun it
        jobs = [new_job(k, boxes[k], radius, ctx.x0.device, ctx.x0.dtype) for k in range(len(lo)) if lo[k] < hi[k]]
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
