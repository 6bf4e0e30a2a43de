"""Native certifier: forward-mode affine bounds + refinement of the theta box where the spec fails.

Per frame: one bound pass over the whole box on the whole image gives, for every keypoint, the
provable radius of the box (:mod:`.spec`). Keypoints not proven at the requested radius get their
sub-boxes split (2 or 4 children), and the children are bounded as one batch on a *crop* of the
input that covers only the receptive field of the still-undecided heatmap cells (forward-mode
bounds are local, so the crop's valid cells get exactly the full-image bounds). The network is
evaluated at the children's centres: an argmax outside the disk is a counter-example
(``NOT_CERTIFIED``). A deadline turns still-open keypoints into ``UNKNOWN``.

Float rounding: bounds are computed in the model's dtype (float32); a margin counts as proven only
when it exceeds ``SAFETY * (1 + max |heatmap|)``, which is orders of magnitude above the float32
rounding error of these shallow networks (~1e-6 relative), and the sampling tests check it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..model.preprocess import FrameGeometry, decode_heatmaps
from ..perturbation import apply_perturbation
from .bounds import FoldedConv, bound_layers, net_input_clamp, propagate
from .backward import backward_margins
from .spec import candidate_cells, cell_distances, pair_margins, requirements, requirements_from_margins

SAFETY = 1e-4
MAX_BATCH = 64
MAX_ROWS = 64  # undecided spec rows per sub-box sent to the backward pass
MAX_LEAVES = 64  # sub-boxes per keypoint before giving up (NOT_CERTIFIED)
FULL_CROP = 0.5  # crops larger than this fraction of the frame use the shared full-frame bounds
HOPELESS_DEPTH = 1  # give up after this many splits when every leaf fails or > MAX_ROWS rows stay open


@dataclass
class NetPlan:
    """A folded detector ready for bounding: its layers, output stride, crop alignment and the
    receptive-field margins (top, bottom, left, right) in input pixels around a cell's pixels."""

    layers: list[nn.Module]
    stride: int
    align: int
    rf: tuple[int, int, int, int]


_PLANS: dict[int, tuple[tuple, NetPlan]] = {}


def _fingerprint(net: nn.Module) -> tuple:
    return (tuple((t.data_ptr(), t._version) for t in list(net.parameters()) + list(net.buffers()))
            + tuple(m.padding_mode for m in net.modules() if isinstance(m, nn.Conv2d))
            + (net_input_clamp(net),))


def make_plan(net: nn.Module) -> NetPlan:
    """Fold and analyse ``net`` (a HeatmapDetector or nn.Sequential); cached until its weights change."""
    key, fp = id(net), _fingerprint(net)
    hit = _PLANS.get(key)
    if hit is not None and hit[0] == fp:
        return hit[1]
    layers = bound_layers(net)
    down, up = 1, 1
    for m in layers:
        if isinstance(m, FoldedConv):
            down *= m.stride[0]
            if m.stride[0] != m.stride[1]:
                raise ValueError("anisotropic conv strides are not supported")
        elif isinstance(m, nn.Upsample):
            up *= int(m.scale_factor if not isinstance(m.scale_factor, tuple) else m.scale_factor[0])
        elif isinstance(m, nn.PixelShuffle):
            up *= m.upscale_factor
    if down % up:
        raise ValueError("output stride must be an integer")
    plan = NetPlan(layers, down // up, down, _receptive_field(layers, down // up, down))
    _PLANS[key] = (fp, plan)
    return plan


def _receptive_field(layers: list[nn.Module], stride: int, align: int) -> tuple[int, int, int, int]:
    """Margins of the receptive field of one output cell around its own input pixels, from the
    gradient support of the network with all-ones kernels (no cancellation possible)."""
    size = 64 * align
    while True:
        x = torch.zeros(1, 1, size, size, dtype=torch.float64, requires_grad=True)
        y = x
        for m in layers:
            if isinstance(m, FoldedConv):
                k = torch.ones(1, 1, *m.kernel_size, dtype=torch.float64)
                y = F.conv2d(y, k, None, m.stride, m.padding, m.dilation)
            elif isinstance(m, nn.Upsample):
                y = F.interpolate(y, scale_factor=m.scale_factor, mode="nearest")
            elif isinstance(m, nn.PixelShuffle):  # support of any phase <= nearest upsampling of the union
                y = F.interpolate(y, scale_factor=m.upscale_factor, mode="nearest")
        c = y.shape[-1] // 2
        y[0, 0, c, c].backward()
        rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
        cols = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
        if rows.min() > 0 and cols.min() > 0 and rows.max() < size - 1 and cols.max() < size - 1:
            lo, hi = c * stride, c * stride + stride - 1
            return (int(lo - rows.min()), int(rows.max() - hi), int(lo - cols.min()), int(cols.max() - hi))
        size *= 2


@dataclass
class _Job:
    """One keypoint to certify over one box at one radius; its sub-boxes are the leaves."""

    k: int
    box: torch.Tensor  # (4,) c_lo, c_hi, b_lo, b_hi
    radius: float
    boxes: torch.Tensor = None  # (L, 4)
    req: torch.Tensor = None  # (L, h*w)
    depth: torch.Tensor = None  # (L,)
    state: str = "open"  # open | proven | refuted | exhausted | unknown
    backward_done: bool = False  # the root leaf has only forward bounds until the first round
    root_sampled: bool = False  # the root box's corners were tried as counter-examples
    time_s: float = 0.0

    @property
    def rho(self) -> torch.Tensor:
        return self.req.amax(dim=1)

    @property
    def certified_radius(self) -> float:
        return float(self.rho.max())


@dataclass
class FrameContext:
    """Everything about one frame that the bound passes share."""

    plan: NetPlan
    detector: nn.Module
    x0: torch.Tensor  # (1, 1, H, W)
    cells: np.ndarray  # (K, 2) nominal argmax (row, col)
    dist: torch.Tensor  # (K, h*w) frame-pixel distance of every cell to the nominal cell
    heatmap_size: tuple[int, int]
    tol: float
    max_candidates: int = 25
    q_cache: dict = field(default_factory=dict)
    form_cache: dict = field(default_factory=dict)  # box -> full-frame forms (+ trace), shared by keypoints
    sample_cache: dict = field(default_factory=dict)  # theta -> argmax cell (K,) of the real network
    box_seconds: float = 0.0  # measured time of one full-frame bound pass per sub-box (budget planning)

    @property
    def full_crop(self) -> tuple[int, int, int, int]:
        """The crop ``(y0, y1, x0, x1)`` covering the whole frame."""
        return 0, self.x0.shape[-2], 0, self.x0.shape[-1]

    def candidates(self, k: int, radius: float) -> torch.Tensor:
        key = (k, radius)
        if key not in self.q_cache:
            q = candidate_cells(self.dist[k].cpu().numpy(), radius, self.max_candidates)
            self.q_cache[key] = torch.as_tensor(q, device=self.dist.device)
        return self.q_cache[key]


def frame_context(detector: nn.Module, x0: torch.Tensor, geometry: FrameGeometry) -> FrameContext:
    """Nominal prediction, cell distances and tolerance for the pre-processed input ``x0``."""
    plan = make_plan(detector)
    with torch.no_grad():
        hm = detector(x0)[0]  # (K, h, w): the same network and decoding as predict
    k, h, w = hm.shape
    rows, cols, _ = decode_heatmaps(hm)
    cells = np.stack([rows.cpu().numpy(), cols.cpu().numpy()], axis=1)
    dist = np.stack([cell_distances(geometry, plan.stride, (h, w), tuple(c)) for c in cells])
    tol = SAFETY * (1.0 + float(hm.abs().max()))
    return FrameContext(plan, detector, x0, cells, torch.as_tensor(dist, dtype=x0.dtype, device=x0.device),
                        (h, w), tol)


def _crop_for(ctx: FrameContext, flat_cells: torch.Tensor) -> tuple[int, int, int, int]:
    """Input-pixel crop [y0, y1) x [x0, x1) whose valid output cells include ``flat_cells``."""
    H, W = ctx.x0.shape[-2:]
    h, w = ctx.heatmap_size
    s, a = ctx.plan.stride, ctx.plan.align
    if H % a or W % a:
        return 0, H, 0, W
    rows, cols = flat_cells // w, flat_cells % w
    top, bottom, left, right = ctx.plan.rf
    y0 = max(0, (int(rows.min()) * s - top) // a * a)
    x0 = max(0, (int(cols.min()) * s - left) // a * a)
    y1 = min(H, -(-((int(rows.max()) + 1) * s + bottom) // a) * a)
    x1 = min(W, -(-((int(cols.max()) + 1) * s + right) // a) * a)
    if (y1 - y0) * (x1 - x0) > FULL_CROP * H * W:
        return 0, H, 0, W  # the full frame's bounds are shared by every keypoint (see _full_forms)
    return y0, y1, x0, x1


def _valid_cells(ctx: FrameContext, crop: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Global and crop flat indices of the output cells a crop computes exactly."""
    H, W = ctx.x0.shape[-2:]
    h, w = ctx.heatmap_size
    s = ctx.plan.stride
    y0, y1, x0, x1 = crop
    top, bottom, left, right = ctx.plan.rf
    r = torch.arange(y0 // s, y1 // s, device=ctx.dist.device)
    c = torch.arange(x0 // s, x1 // s, device=ctx.dist.device)
    r = r[((r * s - top >= y0) | (y0 == 0)) & (((r + 1) * s - 1 + bottom < y1) | (y1 == H))]
    c = c[((c * s - left >= x0) | (x0 == 0)) & (((c + 1) * s - 1 + right < x1) | (x1 == W))]
    g = (r.view(-1, 1) * w + c.view(1, -1)).flatten()
    wc = (x1 - x0) // s
    local = ((r - y0 // s).view(-1, 1) * wc + (c - x0 // s).view(1, -1)).flatten()
    return g, local


def _full_forms(ctx: FrameContext, boxes: torch.Tensor, with_trace: bool) -> tuple[torch.Tensor, torch.Tensor, list | None]:
    """Full-frame forms ``(n, 3, K, h, w)`` of ``boxes`` (and their trace), computed once per frame
    and sub-box: every keypoint splits the same box into the same children, so they share them."""
    keys = [tuple(b) for b in boxes.tolist()]
    todo = list(dict.fromkeys(k for k in keys if k not in ctx.form_cache or
                              (with_trace and ctx.form_cache[k][2] is None)))
    for i in range(0, len(todo), MAX_BATCH):
        chunk = torch.tensor(todo[i:i + MAX_BATCH], dtype=boxes.dtype, device=boxes.device)
        trace = [] if with_trace else None
        t0 = time.perf_counter()
        f = propagate(ctx.plan.layers, ctx.x0, chunk, trace)
        ctx.box_seconds = max(ctx.box_seconds, (time.perf_counter() - t0) / len(chunk))
        for j, key in enumerate(todo[i:i + MAX_BATCH]):
            t = None if trace is None else [(e[0][j:j + 1], e[1][j:j + 1]) if isinstance(e[0], torch.Tensor) else e
                                            for e in trace]
            ctx.form_cache[key] = (f.lower[j:j + 1], f.upper[j:j + 1], t)
    hits = [ctx.form_cache[k] for k in keys]
    lower = torch.cat([h[0] for h in hits])
    upper = torch.cat([h[1] for h in hits])
    if not with_trace:
        return lower, upper, None
    trace = [(torch.cat([h[2][i][0] for h in hits]), torch.cat([h[2][i][1] for h in hits]))
             if isinstance(e[0], torch.Tensor) else e for i, e in enumerate(hits[0][2])]
    return lower, upper, trace


def _bound_requirements(ctx: FrameContext, job: _Job, boxes: torch.Tensor, crop, cells_g, cells_l,
                        backward: bool = True) -> torch.Tensor:
    """req (N, S) on the crop's valid cells for ``job``'s keypoint over ``boxes``: forward-mode
    difference bounds, then (``backward``) a backward pass for the rows they leave undecided."""
    y0, y1, x0, x1 = crop
    xc = ctx.x0[..., y0:y1, x0:x1]
    q = ctx.candidates(job.k, job.radius)
    pos = torch.full((ctx.dist.shape[1],), -1, dtype=torch.long, device=q.device)
    pos[cells_g] = cells_l
    q_local = pos[q]
    dq, ds = ctx.dist[job.k, q], ctx.dist[job.k, cells_g]
    full = crop == ctx.full_crop
    out = []
    for i in range(0, boxes.shape[0], MAX_BATCH):
        chunk = boxes[i:i + MAX_BATCH]
        if full:  # shared with the other keypoints of the frame
            lower, upper, trace = _full_forms(ctx, chunk, backward)
        else:
            trace = [] if backward else None
            f = propagate(ctx.plan.layers, xc, chunk, trace)
            lower, upper = f.lower, f.upper
        lo = lower[:, :, job.k].flatten(2)
        hi = upper[:, :, job.k].flatten(2)
        margin = pair_margins(lo[:, :, q_local], hi[:, :, cells_l])  # (n, Q, S)
        req = requirements_from_margins(margin, dq, ds, ctx.tol)
        if backward:
            _backward_refine(ctx, job, xc, chunk, trace, margin, req, q_local, cells_l, dq)
        out.append(req)
    return torch.cat(out)


def _backward_refine(ctx: FrameContext, job: _Job, xc: torch.Tensor, boxes: torch.Tensor, trace: list,
                     margin: torch.Tensor, req: torch.Tensor, q_local: torch.Tensor, cells_l: torch.Tensor,
                     dq: torch.Tensor) -> None:
    """Backward-bound the rows ``(q, s)`` the forward margins leave undecided (every outside cell
    s of a failing sub-box with at most :data:`MAX_ROWS` such cells, against the candidate q inside
    the disk with the best forward margin) and lower ``req`` (in place) where they prove dominance."""
    open_ = req > job.radius  # (n, S)
    count = open_.sum(dim=1)
    open_ &= ((count > 0) & (count <= MAX_ROWS)).view(-1, 1)
    idx = torch.nonzero(open_)
    if idx.shape[0] == 0:
        return
    inside = dq <= job.radius
    best_q = torch.where(inside.view(1, -1, 1), margin, torch.full_like(margin, -math.inf)).argmax(dim=1)  # (n, S)
    qi = best_q[idx[:, 0], idx[:, 1]]
    k = torch.full_like(qi, job.k)
    rows = torch.stack([idx[:, 0], k, q_local[qi], cells_l[idx[:, 1]]], dim=1)
    lb = torch.maximum(backward_margins(ctx.plan.layers, xc, boxes, trace, rows), margin[idx[:, 0], qi, idx[:, 1]])
    ok = lb > ctx.tol
    req[idx[ok, 0], idx[ok, 1]] = torch.minimum(req[idx[ok, 0], idx[ok, 1]], dq[qi[ok]])


def _split(boxes: torch.Tensor) -> torch.Tensor:
    """Children of sub-boxes: halve every dimension of non-zero width (2 or 4 children)."""
    cm, bm = (boxes[:, 0] + boxes[:, 1]) / 2, (boxes[:, 2] + boxes[:, 3]) / 2
    c_parts = [(boxes[:, 0], cm), (cm, boxes[:, 1])] if bool((boxes[:, 1] > boxes[:, 0]).any()) else [(boxes[:, 0], boxes[:, 1])]
    b_parts = [(boxes[:, 2], bm), (bm, boxes[:, 3])] if bool((boxes[:, 3] > boxes[:, 2]).any()) else [(boxes[:, 2], boxes[:, 3])]
    kids = [torch.stack([c0, c1, b0, b1], dim=1) for c0, c1 in c_parts for b0, b1 in b_parts]
    return torch.stack(kids, dim=1).reshape(-1, 4)


def _refuted(ctx: FrameContext, job: _Job, thetas: torch.Tensor, crop, cells_g, cells_l) -> bool:
    """True when the real network at one of ``thetas`` (M, 2) has its argmax outside the disk.

    Screened on the crop (an argmax outside the disk can only be an undecided cell, all of which
    the crop computes exactly), confirmed on the whole frame with the unfolded detector
    (:func:`_sample_argmax`, shared by the keypoints; a full-frame crop goes there directly)."""
    if crop != ctx.full_crop:
        y0, y1, x0, x1 = crop
        c, b = thetas[:, 0].to(ctx.x0.dtype), thetas[:, 1].to(ctx.x0.dtype)
        with torch.no_grad():
            x = apply_perturbation(ctx.x0[..., y0:y1, x0:x1].expand(len(c), -1, -1, -1), c, b)
            for m in ctx.plan.layers:
                x = m(x)
        best = cells_g[x[:, job.k].flatten(1)[:, cells_l].argmax(dim=1)]
        suspect = ctx.dist[job.k][best] > job.radius
        if not bool(suspect.any()):
            return False
        thetas = thetas[suspect]
    return bool((ctx.dist[job.k][_sample_argmax(ctx, thetas)[:, job.k]] > job.radius).any())


def _sample_argmax(ctx: FrameContext, thetas: torch.Tensor) -> torch.Tensor:
    """Argmax cells (M, K, flat indices) of the real detector on the full frame at ``thetas`` (M, 2); each theta
    is evaluated once per frame (the keypoints try the same sub-box corners)."""
    keys = [tuple(t) for t in thetas.tolist()]
    todo = list(dict.fromkeys(k for k in keys if k not in ctx.sample_cache))
    if todo:
        t = torch.tensor(todo, dtype=ctx.x0.dtype, device=ctx.x0.device)
        with torch.no_grad():
            hm = ctx.detector(apply_perturbation(ctx.x0.expand(len(todo), -1, -1, -1), t[:, 0], t[:, 1]))
        rows, cols, _ = decode_heatmaps(hm)  # the decoding of predict
        for key, cells in zip(todo, rows * hm.shape[-1] + cols):
            ctx.sample_cache[key] = cells
    return torch.stack([ctx.sample_cache[k] for k in keys])


def solve(ctx: FrameContext, jobs: list[_Job], deadline: float, max_depth: int, backward: bool = True,
          thorough: bool = False) -> None:
    """Decide every job (state proven/refuted/exhausted/unknown) within the deadline; ``backward``
    enables the backward refinement of undecided spec rows (else forward bounds + splitting only);
    ``thorough`` splits every failing sub-box down to ``max_depth`` (no hopeless stop, no leaf cap)."""
    g_all, l_all = _valid_cells(ctx, ctx.full_crop)
    t0 = time.perf_counter()
    uniq, inverse = torch.unique(torch.stack([j.box for j in jobs]), dim=0, return_inverse=True)
    lower, upper, _ = _full_forms(ctx, uniq, backward)
    for j, u in zip(jobs, inverse.tolist()):
        q = ctx.candidates(j.k, j.radius)
        lo = lower[u:u + 1, :, j.k].flatten(2)
        hi = upper[u:u + 1, :, j.k].flatten(2)
        j.boxes = j.box.view(1, 4)
        j.req = requirements(lo[:, :, q], hi[:, :, l_all], ctx.dist[j.k, q], ctx.dist[j.k, g_all], ctx.tol)
        j.depth = torch.zeros(1, dtype=torch.long)
    shared = (time.perf_counter() - t0) / len(jobs)
    for j in jobs:
        j.time_s += shared
        if float(j.rho.max()) <= j.radius:
            j.state = "proven"
    while True:
        open_jobs = [j for j in jobs if j.state == "open"]
        if not open_jobs:
            return
        for j in open_jobs:
            if time.perf_counter() > deadline or (
                    math.isfinite(deadline) and time.perf_counter() + _round_seconds(ctx, j, backward) > deadline):
                j.state = "unknown"  # out of budget, or the next round would overrun it
                continue
            t1 = time.perf_counter()
            _refine(ctx, j, max_depth, backward, thorough)
            j.time_s += time.perf_counter() - t1


def _round_seconds(ctx: FrameContext, job: _Job, backward: bool) -> float:
    """Estimated time of ``job``'s next refinement round: one full-frame bound pass per sub-box it
    needs that no keypoint has bounded yet (budget planning only; soundness does not depend on it)."""
    fail = job.rho > job.radius
    boxes = job.boxes[fail] if _backward_first(job, fail, backward) else _split(job.boxes[fail])
    return ctx.box_seconds * sum(tuple(b) not in ctx.form_cache for b in boxes.tolist())


def _open_rows(job: _Job, fail: torch.Tensor) -> int:
    """The most undecided spec rows (outside cells) of any failing sub-box of ``job``."""
    return int((job.req[fail] > job.radius).sum(dim=1).max())


def _backward_first(job: _Job, fail: torch.Tensor, backward: bool) -> bool:
    """Whether ``job``'s next round is the backward pass on its root sub-box (before any split):
    only once, and only when few enough rows are undecided for the backward pass."""
    return backward and not job.backward_done and _open_rows(job, fail) <= MAX_ROWS


def _refine(ctx: FrameContext, job: _Job, max_depth: int, backward: bool = True, thorough: bool = False) -> None:
    """One refinement round of ``job``: first the backward pass on the failing root sub-boxes, then
    split the failing sub-boxes and bound the children (forward + backward). Unless ``thorough``,
    a keypoint that looks hopeless or needs more than :data:`MAX_LEAVES` sub-boxes is given up."""
    fail = job.rho > job.radius
    parents = job.boxes[fail]
    first = _backward_first(job, fail, backward)  # else too many undecided rows: split right away
    job.backward_done = True
    if first:
        kids, n_kids = parents, 1
    else:
        # Splitting has not helped, or leaves too many rows undecided for the backward pass.
        hopeless = int(job.depth.min()) >= HOPELESS_DEPTH and (bool(fail.all()) or _open_rows(job, fail) > MAX_ROWS)
        too_many = int((~fail).sum()) + 4 * parents.shape[0] > MAX_LEAVES
        if bool((job.depth[fail] >= max_depth).any()) or (not thorough and (hopeless or too_many)):
            job.state = "exhausted"
            return
        kids = _split(parents)
        n_kids = kids.shape[0] // parents.shape[0]
    req = job.req[fail].repeat_interleave(n_kids, dim=0)
    undecided = torch.nonzero((req > job.radius).any(dim=0)).flatten()
    cells = torch.cat([undecided, ctx.candidates(job.k, job.radius)])
    crop = _crop_for(ctx, cells)
    g, l = _valid_cells(ctx, crop)
    thetas = _sample_points(kids if job.root_sampled else parents)
    job.root_sampled = True
    if _refuted(ctx, job, thetas, crop, g, l):
        job.state = "refuted"
        return
    req[:, g] = torch.minimum(req[:, g], _bound_requirements(ctx, job, kids, crop, g, l, backward))
    job.boxes = torch.cat([job.boxes[~fail], kids])
    job.req = torch.cat([job.req[~fail], req])
    job.depth = torch.cat([job.depth[~fail], job.depth[fail].repeat_interleave(n_kids) + (0 if first else 1)])
    if float(job.rho.max()) <= job.radius:
        job.state = "proven"


def _sample_points(boxes: torch.Tensor) -> torch.Tensor:
    """Counter-example candidates (M, 2): the centres and corners of ``boxes`` (and for a single
    box also its edge midpoints)."""
    c = [(boxes[:, 0] + boxes[:, 1]) / 2, boxes[:, 0], boxes[:, 1]]
    b = [(boxes[:, 2] + boxes[:, 3]) / 2, boxes[:, 2], boxes[:, 3]]
    pairs = [(0, 0), (1, 1), (1, 2), (2, 1), (2, 2)] + ([(0, 1), (0, 2), (1, 0), (2, 0)] if boxes.shape[0] == 1 else [])
    return torch.unique(torch.cat([torch.stack([c[i], b[j]], dim=1) for i, j in pairs]), dim=0)


def new_job(k: int, box: tuple[float, float, float, float], radius: float, device, dtype) -> _Job:
    return _Job(k, torch.tensor(box, dtype=dtype, device=device), float(radius))
