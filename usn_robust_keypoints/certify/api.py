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
import torch

from ..model.keypoint_model import KeypointModel
from ..perturbation import PerturbationBox
from . import native
from .native import MAX_DEPTH, FrameContext, KeypointResult, WarmStart, frame_context, search
from .results import FrameCertificate, KeypointCertificate, Status

BACKENDS = ("native", "auto_lirpa")
STATUS = {"proven": Status.CERTIFIED, "refuted": Status.REFUTED, "open": Status.OPEN, "unknown": Status.UNKNOWN,
          "exhausted": Status.NOT_CERTIFIED}  # exhausted: bound-only verdict of the auto_lirpa backend
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
            backward: bool = True, warm_start: WarmStart | None = None) -> FrameCertificate:
    """Certify every keypoint of ``image`` (uint8 gray/BGR, any size) against
    ``clip(c*x + b, 0, 1)``, ``c in [1-alpha, 1+alpha]``, ``b in [-beta, beta]`` at ``radius``
    frame pixels. ``budget_ms`` bounds the time (undecided keypoints become ``UNKNOWN``);
    ``margins=False`` skips the beta*/alpha* bisection. ``method`` selects the auto_LiRPA
    method (IBP, CROWN, alpha-CROWN) for ``backend="auto_lirpa"``; ``max_depth`` caps the native
    branch and bound (splits per sub-box, 0 = one bound pass over the whole box; default
    :data:`.native.MAX_DEPTH`); ``backward=False`` disables the backward bounds (forward bounds +
    branch and bound only). ``warm_start`` (a :class:`.native.WarmStart`, one per stream) starts
    from the previous frame's partition of the box and is updated with this frame's."""
    validate_request(image, alpha, beta, radius, backend, budget_ms)
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
        found = search(ctx, (1 - alpha, 1 + alpha, -beta, beta), radius, deadline,
                       MAX_DEPTH if max_depth is None else max_depth, backward, warm=warm_start)
        results = [found[k] for k in range(len(names))]
        beta_star = alpha_star = [math.nan] * len(names)
        if margins:
            proven = [r.state == "proven" for r in results]
            beta_star = _bisect(ctx, radius, deadline, [beta if p else 0.0 for p in proven], "beta")
            alpha_star = _bisect(ctx, radius, deadline, [alpha if p else 0.0 for p in proven], "alpha")
    hm_scores = _scores(ctx)
    xy = geo.input_to_frame(np.stack([(ctx.cells[:, 1] + 0.5) * ctx.plan.stride - 0.5,
                                      (ctx.cells[:, 0] + 0.5) * ctx.plan.stride - 0.5], axis=1))
    kps = [KeypointCertificate(index=k, name=names[k], x=float(xy[k, 0]), y=float(xy[k, 1]),
                               score=float(hm_scores[k]), status=STATUS[r.state], radius=float(radius),
                               certified_radius=r.rstar, beta_star=beta_star[k], alpha_star=alpha_star[k],
                               time_ms=1000.0 * (r.decided_at - start), counterexample=r.counterexample)
           for k, r in enumerate(results)]
    return FrameCertificate(alpha=alpha, beta=beta, radius=float(radius), backend=backend, keypoints=kps,
                            time_ms=1000.0 * (time.perf_counter() - t0), frame_width=geo.frame_width,
                            frame_height=geo.frame_height)


def _scores(ctx: FrameContext) -> np.ndarray:
    with torch.no_grad():
        hm = ctx.detector(ctx.x0)[0].flatten(1)
    return hm.max(dim=1).values.cpu().numpy()


def _bisect(ctx: FrameContext, radius: float, deadline: float, lo: list[float], which: str) -> list[float]:
    """Largest proven 1-D margin per keypoint (``which`` = "beta" or "alpha"), bisecting between
    the proven ``lo`` and :data:`MARGIN_CAP` (geometric steps); nan if nothing could be tried."""
    lo = list(lo)
    hi = [MARGIN_CAP] * len(lo)
    tried = [False] * len(lo)
    for _ in range(MARGIN_STEPS):
        mids = [math.sqrt(max(l, 1e-3) * h) if l < h else h for l, h in zip(lo, hi)]
        boxes = [(1.0, 1.0, -m, m) if which == "beta" else (1.0 - m, 1.0 + m, 0.0, 0.0) for m in mids]
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
