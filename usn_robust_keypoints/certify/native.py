"""Native certifier: forward-mode affine bounds over θ sub-boxes and a best-first branch and bound.

Per frame and box, :func:`search` keeps a set of *leaves*: sub-boxes of the θ box, each with the
keypoints still open on it. Every leaf has a *tile* (the part of the box it is responsible for;
the tiles of a keypoint's leaves always cover the whole box) and a *search box* inside its tile
(the part its bounds have not proven yet). One round:

1. picks up to :data:`MAX_BATCH` leaves (fewer when only fewer fit in the time left): the open
   keypoint closest to a proof first (highest worst margin over its leaves), its leaves worst margin
   first;
2. bounds them in one batched forward pass (:func:`.bounds.propagate`): every spec row
   ``H_q - H_s`` (``s`` outside the disk, ``q`` a candidate inside) gets an affine lower bound in
   the leaf's normalised parameters; rows proven stay proven in the children (requirements are
   inherited, :mod:`.spec`); a leaf with few open rows gets the tighter backward bounds for them
   (:mod:`.backward`, at most :data:`MAX_ROWS` rows per leaf and keypoint);
3. shrinks the search box to the bounding box of the part that no linear lower bound proves (in
   2-D each bound ``l(e) > tol`` is a half-plane; closed form, cf. Clip-and-Verify): a θ is only
   dropped when every open row of every open keypoint is proven there;
4. tries the real network at the search boxes' centres (and the box's corners and edge midpoints
   in the first round; a few projected sign-gradient steps for keypoints that keep many leaves):
   an argmax outside the disk refutes the keypoint, with that θ;
5. splits each leaf in two along ``c`` or ``b``, the side whose bound coefficients (times the
   side's length) weigh most over the open rows (cf. α,β-CROWN's ``sb`` input split).

A keypoint is proven when none of its leaves is left. The search stops a keypoint as ``open`` at
:data:`MAX_DEPTH` splits or when the open leaves exceed :data:`MAX_LEAVES` (the keypoint with the
most leaves is stopped first: a hard memory cap), and the deadline ends it as ``unknown``; the
sequence of rounds does not depend on the deadline, so a smaller budget proves a subset of what a
larger one proves. Tensors live on the frame's device (CPU or CUDA, the same code).

Float rounding: bounds are computed in the model's dtype (float32); a margin counts as proven only
when it exceeds ``SAFETY * (1 + max |heatmap|)``, orders of magnitude above the float32 rounding of
these shallow networks, and the shrinking keeps every θ whose bound is below twice that.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..model.preprocess import FrameGeometry, decode_heatmaps
from ..perturbation import PerturbationBox, apply_perturbation
from .backward import backward_forms
from .bounds import FoldedConv, bound_layers, input_clamp, net_input_clamp, propagate, theta_maps
from .spec import candidate_cells, cell_distances, requirements_from_margins

SAFETY = 1e-4
# The clock of budgets and deadlines (wall time). A benchmark on a shared machine may set it to
# ``time.thread_time`` (the certifying thread's CPU time, one torch thread) to measure budgets free
# of other processes' load; deadlines passed to :func:`search` are on this clock.
clock = time.perf_counter
MAX_BATCH = 4  # leaves bounded per round (one batched pass)
MAX_LEAVES = 1024  # open leaves per frame at most (memory cap; ~50 KB each for 4 keypoints)
MAX_DEPTH = 24  # splits per leaf at most (each halves one side)
MAX_ROWS = 8  # open spec rows per leaf and keypoint sent to the backward pass
PGD_AFTER = 16  # gradient counter-example search once a keypoint has this many open leaves
PGD_STEPS = 8
WARM_TILES = 64  # largest partition per keypoint kept for a warm start
TIME_MARGIN = 1.5  # a round is started only if its estimated cost times this fits before the deadline


@dataclass
class NetPlan:
    """A folded detector ready for bounding: its layers and output stride."""

    layers: list[nn.Module]
    stride: int


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
    plan = NetPlan(layers, down // up)
    _PLANS[key] = (fp, plan)
    return plan


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
    scores: np.ndarray | None = None  # (K,) the nominal heatmap's score at each argmax (as predict)
    q_cache: dict = field(default_factory=dict)
    box_seconds: float = 0.0  # measured time of one search round per leaf (budget planning)

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
    rows, cols, scores = decode_heatmaps(hm)
    cells = np.stack([rows.cpu().numpy(), cols.cpu().numpy()], axis=1)
    dist = np.stack([cell_distances(geometry, plan.stride, (h, w), tuple(c)) for c in cells])
    tol = SAFETY * (1.0 + float(hm.abs().max()))
    return FrameContext(plan, detector, x0, cells, torch.as_tensor(dist, dtype=x0.dtype, device=x0.device),
                        (h, w), tol, scores=scores.cpu().numpy())


@dataclass
class KeypointResult:
    """Outcome of :func:`search` for one keypoint: ``state`` proven / refuted / open (the search
    stopped: depth or memory cap) / unknown (deadline); ``rstar`` the radius proven (``inf``
    unless proven); ``counterexample`` the θ = (c, b) of a refutation; ``tiles`` the final
    partition of the box (for a warm start; empty when refuted)."""

    state: str = "search"
    rstar: float = math.inf
    counterexample: tuple[float, float] | None = None
    decided_at: float = math.nan  # clock() when the state became final
    leaves: int = 0  # sub-boxes bounded for this keypoint
    peak_leaves: int = 0  # most open leaves of the frame's search at any moment
    tiles: list = field(default_factory=list)
    rho: float = 0.0  # largest requirement of the leaves that closed it
    inexact: bool = False  # part of the box was proven by shrinking (then r* >= radius)


class WarmStart:
    """Per-stream state for :func:`search`: the final partition of the box of every keypoint in
    the previous frame, per (box, radius). The next frame starts from it (the proof is still
    recomputed on every tile); a refuted keypoint starts from the whole box."""

    def __init__(self) -> None:
        self.partitions: dict[tuple, dict[int, torch.Tensor]] = {}

    def get(self, key: tuple, k: int) -> torch.Tensor | None:
        return self.partitions.get(key, {}).get(k)

    def put(self, key: tuple, k: int, tiles: torch.Tensor | None) -> None:
        part = self.partitions.setdefault(key, {})
        if tiles is None or len(tiles) == 0 or len(tiles) > WARM_TILES:
            part.pop(k, None)
        else:
            part[k] = tiles


@dataclass
class _Leaves:
    """The open leaves (N of them): tile and search box (c_lo, c_hi, b_lo, b_hi) in float64, open
    keypoints (N, K), inherited requirements (N, K, S), worst margin per keypoint (N, K), depth."""

    tile: torch.Tensor
    box: torch.Tensor
    open: torch.Tensor
    req: torch.Tensor
    lb: torch.Tensor
    depth: torch.Tensor

    def __len__(self) -> int:
        return self.tile.shape[0]

    def take(self, idx: torch.Tensor) -> "_Leaves":
        return _Leaves(*(t[idx] for t in (self.tile, self.box, self.open, self.req, self.lb, self.depth)))

    @staticmethod
    def cat(parts: list["_Leaves"]) -> "_Leaves":
        return _Leaves(*(torch.cat([getattr(p, n) for p in parts]) for n in
                         ("tile", "box", "open", "req", "lb", "depth")))


def _halfplane_range(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Range ``[lo, hi]`` of ``x in [-1, 1]`` such that ``c + a x + b y <= t`` for some ``y in
    [-1, 1]`` (elementwise; ``lo > hi`` when there is none): the projection on ``x`` of the
    half-plane's part of the square."""
    r = t - c + b.abs()
    ratio = r / torch.where(a == 0, torch.ones_like(a), a)
    one = torch.ones_like(a)
    lo = torch.where(a < 0, ratio.clamp_min(-1.0), -one)
    hi = torch.where(a > 0, ratio.clamp_max(1.0), one)
    none = (a == 0) & (r < 0)
    return torch.where(none, one, lo), torch.where(none, -one, hi)


class _Coords:
    """Search coordinates ``p`` of the θ box ``R = [c_lo, c_hi] x [b_lo, b_hi]`` (leaves are boxes in
    ``p``). ``kink=False``: ``p = (c, b)``. ``kink=True``: ``p = (w, b)`` with ``w = c + b - 1``,
    where the clip's kinks of saturated pixels are axis-parallel (``x0 = 1``: ``c x0 + b = 1`` is
    ``w = 0``; ``x0 = 0``: ``b = 0``) and the root's midlines; a box in ``p`` is a parallelogram
    in θ, and the root box in ``p`` covers ``R`` (every leaf is clipped to its part over ``R``)."""

    def __init__(self, box: tuple[float, float, float, float], kink: bool, device,
                 cuts: tuple[bool, bool] = (True, True)) -> None:
        self.r = torch.tensor(box, dtype=torch.float64, device=device)
        self.kink = kink
        self.cuts = cuts  # cut the root at w = 0, at b = 0 (where saturated pixels have their kink)
        c0, c1, b0, b1 = box
        self.root = torch.tensor([c0 + b0 - 1, c1 + b1 - 1, b0, b1] if kink else box, dtype=torch.float64, device=device)

    def initial(self) -> torch.Tensor:
        """The first tiles: the root, cut at the kink lines ``w = 0`` and ``b = 0`` where they cross it
        and a pixel has its kink there (``cuts``; a cut with no such pixel only doubles the work)."""
        if not self.kink:
            return self.root.view(1, 4)
        w0, w1, b0, b1 = self.root.tolist()
        ws = [(w0, 0.0), (0.0, w1)] if self.cuts[0] and w0 < 0 < w1 else [(w0, w1)]
        bs = [(b0, 0.0), (0.0, b1)] if self.cuts[1] and b0 < 0 < b1 else [(b0, b1)]
        return torch.tensor([[*w, *b] for w in ws for b in bs], dtype=torch.float64, device=self.root.device)

    def maps(self, p: torch.Tensor) -> torch.Tensor:
        """Affine maps ``(N, 2, 3)`` from ``e`` to θ of the leaves ``p (N, 4)`` (:func:`.bounds.theta_maps`)."""
        m = theta_maps(p)
        if not self.kink:
            return m
        c = m[:, 0] - m[:, 1]
        c[:, 0] += 1.0
        return torch.stack([c, m[:, 1]], 1)

    def clip(self, p: torch.Tensor) -> torch.Tensor:
        """The bounding box of each leaf's part over ``R`` (rows with ``lo > hi`` are empty)."""
        c0, c1, b0, b1 = self.r.tolist()
        if not self.kink:
            return torch.stack([p[:, 0].clamp_min(c0), p[:, 1].clamp_max(c1), p[:, 2].clamp_min(b0),
                                p[:, 3].clamp_max(b1)], 1)
        w_lo, w_hi, b_lo, b_hi = p[:, 0], p[:, 1], p[:, 2].clamp_min(b0), p[:, 3].clamp_max(b1)
        d0, d1 = c0 - 1, c1 - 1  # w - b = c - 1
        for _ in range(2):
            w_lo, w_hi = torch.maximum(w_lo, b_lo + d0), torch.minimum(w_hi, b_hi + d1)
            b_lo, b_hi = torch.maximum(b_lo, w_lo - d1), torch.minimum(b_hi, w_hi - d0)
        return torch.stack([w_lo, w_hi, b_lo, b_hi], 1)

    def theta(self, pts: torch.Tensor) -> torch.Tensor:
        """θ (M, 2) of points ``pts`` (M, 2) in ``p``, clamped into ``R``."""
        th = torch.stack([pts[:, 0] + 1 - pts[:, 1], pts[:, 1]], 1) if self.kink else pts
        return torch.minimum(torch.maximum(th, self.r[[0, 2]]), self.r[[1, 3]])


def search(ctx: FrameContext, box: PerturbationBox | tuple[float, float, float, float], radius: float, deadline: float = math.inf,
           max_depth: int = MAX_DEPTH, backward: bool = True, keypoints: list[int] | None = None,
           warm: WarmStart | None = None, max_leaves: int = MAX_LEAVES) -> dict[int, KeypointResult]:
    """Certify ``keypoints`` (default all) of the frame over ``box = (c_lo, c_hi, b_lo, b_hi)`` at
    ``radius`` frame pixels (module doc): the branch and bound from the box itself, or, for a 2-D
    box that a pixel's clip kink crosses, in the clip-kink coordinates from the box cut at the
    kinks of saturated pixels (:meth:`_Coords.initial`). ``warm`` (read and updated) starts it
    from the previous frame's partitions. ``max_depth=0``: the first round only."""
    dev = ctx.x0.device
    if isinstance(box, PerturbationBox):
        box = box.limits
    ks = list(range(ctx.dist.shape[0])) if keypoints is None else list(keypoints)
    two_d = box[1] > box[0] and box[3] > box[2]
    coords = _search_coords(ctx.x0, input_clamp(ctx.plan.layers)[0], box)
    wkey = (tuple(round(v, 12) for v in box), float(radius), tuple(ctx.dist.shape), coords.kink)
    starts = {k: warm.get(wkey, k) for k in ks} if warm is not None and two_d else None
    res = _run(ctx, coords, radius, deadline, max_depth, backward, ks, starts, max_leaves)
    if warm is not None:
        for k, r in res.items():
            warm.put(wkey, k, torch.cat(r.tiles) if (r.tiles and r.state != "refuted" and two_d and r.leaves > 1) else None)
    return res


def _kink_cuts(x0: torch.Tensor, tau: float, box: tuple[float, float, float, float]) -> tuple[bool, tuple[bool, bool]]:
    """``(crossed, cuts)``: whether the clip's kink of some pixel crosses the box (``c x0 + b``
    reaches ``1 - tau`` or ``tau`` on it; the kink lines of bright and dark pixels run nearly along
    w and b), and whether a pixel has its kink exactly on ``w = 0`` (x0 = 1) and on ``b = 0``
    (x0 = 0), where the first tiles are cut (with an input clamp, tau > 0, no kink lies there)."""
    hi, lo = float(x0.max()), float(x0.min())
    crossed = box[1] * hi + box[3] >= 1 - tau or box[0] * lo + box[2] <= tau  # x0 >= 0, c > 0
    return crossed, (tau == 0 and hi >= 1, tau == 0 and lo <= 0)


def _search_coords(x0: torch.Tensor, tau: float, box: tuple[float, float, float, float]) -> _Coords:
    """The coordinates :func:`search` runs in for the input ``x0`` (a network with input clamp ``tau``):
    the clip-kink coordinates, cut where saturated pixels have their kink, for a 2-D box that a kink
    crosses; else (c, b)."""
    crossed, cuts = _kink_cuts(x0, tau, box)
    two_d = box[1] > box[0] and box[3] > box[2]
    return _Coords(box, two_d and crossed, x0.device, cuts)


def first_tiles(x0: torch.Tensor, tau: float, box: tuple[float, float, float, float]) -> torch.Tensor:
    """The tiles the search's first round bounds for the input ``x0`` (a network with input clamp
    ``tau``) over ``box``, as θ maps ``(T, 2, 3)`` (:func:`.bounds.theta_maps`; for certifiability
    training on what the certifier bounds first)."""
    coords = _search_coords(x0, tau, box)
    return coords.maps(coords.clip(coords.initial()))


def _run(ctx: FrameContext, coords: _Coords, radius: float, deadline: float, max_depth: int, backward: bool,
         ks: list[int], starts: dict | None, max_leaves: int) -> dict[int, KeypointResult]:
    """The branch and bound of :func:`search` in ``coords`` for keypoints ``ks`` from ``starts``
    (tiles per keypoint; default :meth:`_Coords.initial`). The first round's bounds run whatever the
    deadline; the first round also tries the box's corners, edge midpoints and centre. A round whose
    bounds end past the deadline keeps its proofs and ends the search (no counter-examples, no splits)."""
    n_k, n_s = ctx.dist.shape
    res = {k: KeypointResult() for k in ks}
    dev, dt = ctx.x0.device, ctx.x0.dtype
    root = coords.root
    starts = {k: (starts.get(k) if starts else None) for k in ks}
    starts = {k: (t if t is not None else coords.initial()) for k, t in starts.items()}
    uniq, inv = torch.unique(torch.cat(list(starts.values())), dim=0, return_inverse=True)
    opened = torch.zeros(len(uniq), n_k, dtype=torch.bool, device=dev)
    at = 0
    for k, t in starts.items():
        opened[inv[at:at + len(t)], k] = True
        at += len(t)
    n = len(uniq)
    leaves = _Leaves(uniq, coords.clip(uniq), opened, ctx.dist.unsqueeze(0).expand(n, -1, -1).clone(),
                     torch.full((n, n_k), -math.inf, dtype=dt, device=dev), torch.zeros(n, dtype=torch.long, device=dev))
    width = root[[1, 3]] - root[[0, 2]]
    first = True
    pgd_done: set[int] = set()
    out_of_time = False
    while True:
        _close_finished(leaves, res)
        if not any(r.state == "search" for r in res.values()):
            break
        n_batch = min(MAX_BATCH, len(leaves))
        now = clock()
        if not first and math.isfinite(deadline) and ctx.box_seconds > 0:
            # Near the deadline a round bounds only the leaves that still fit (the best-ranked ones:
            # a prefix of the full round, so a smaller budget still proves a subset).
            n_batch = min(n_batch, max(0, int((deadline - now) / (TIME_MARGIN * ctx.box_seconds))))
        if out_of_time or not first and (now > deadline or n_batch == 0):
            for r in res.values():
                if r.state == "search":
                    r.state = "unknown"
            break
        t0 = now
        idx = _select(leaves, res, n_batch)
        rest_mask = torch.ones(len(leaves), dtype=torch.bool, device=dev)
        rest_mask[idx] = False
        batch, rest = leaves.take(idx), leaves.take(torch.nonzero(rest_mask).flatten())
        counts = batch.open.sum(dim=0)
        new_box, split_dim = _bound(ctx, coords, batch, radius, backward, res, width)
        batch.box = new_box
        once = 0.0  # the root points: a once-per-search cost, kept out of the per-leaf estimate
        if clock() > deadline:
            # Past the deadline (a first round longer than the budget): this round's proofs stand, its
            # counter-examples and splits are skipped, and the search ends (the rest UNKNOWN).
            out_of_time = True
            leaves = _Leaves.cat([rest, batch.take(torch.nonzero(batch.open.any(dim=1)).flatten())])
        else:
            # Counter-examples: the new search boxes' centres (and, first, the box's corners and edges).
            live = batch.open.any(dim=1)
            centres = torch.stack([(new_box[live, 0] + new_box[live, 1]) / 2, (new_box[live, 2] + new_box[live, 3]) / 2], 1)
            _refute(ctx, coords.theta(centres), radius, res, [batch, rest])
            if first:
                t1 = clock()
                _refute(ctx, _root_points(coords.r), radius, res, [batch, rest])
                once = clock() - t1
            for k in ks:
                if res[k].state == "search" and k not in pgd_done and \
                        int(batch.open[:, k].sum() + rest.open[:, k].sum()) >= PGD_AFTER:
                    if clock() + PGD_STEPS * 2 * ctx.box_seconds > deadline:
                        out_of_time = True  # does not fit: the search ends after this round (a prefix of a longer one)
                        break
                    pgd_done.add(k)
                    _refute(ctx, _pgd(ctx, coords, k, radius, [batch, rest]), radius, res, [batch, rest])
            # Split, or stop keypoints at the depth cap.
            live = batch.open.any(dim=1)
            capped = live & (batch.depth >= max_depth)
            for k in torch.nonzero(batch.open[capped].any(dim=0)).flatten().tolist():
                _stop(res, k, [batch, rest])
            live = batch.open.any(dim=1)
            kids = _split(batch.take(torch.nonzero(live).flatten()), split_dim[live])
            kids.box = coords.clip(kids.box)
            kids = kids.take(torch.nonzero((kids.box[:, 0] <= kids.box[:, 1]) & (kids.box[:, 2] <= kids.box[:, 3])).flatten())
            leaves = _Leaves.cat([rest, kids])
            while len(leaves) > max_leaves:  # memory cap: stop the keypoint with the most leaves
                per_k = leaves.open.sum(dim=0)
                _stop(res, int(per_k.argmax()), [leaves])
                leaves = leaves.take(torch.nonzero(leaves.open.any(dim=1)).flatten())
        for r in res.values():
            r.peak_leaves = max(r.peak_leaves, len(leaves))
        _close_finished(leaves, res)  # proven in this round: stamped with its end, like refuted and open ones
        now = clock()
        for r in res.values():
            if r.state != "search" and math.isnan(r.decided_at):
                r.decided_at = now
        per_leaf = (now - t0 - once) / len(batch)  # the round (bounds, backward, counter-examples) per leaf
        # A cautious estimate for the deadline: never below the latest round's cost per leaf.
        ctx.box_seconds = max(per_leaf, 0.7 * ctx.box_seconds + 0.3 * per_leaf)
        for k in ks:
            res[k].leaves += int(counts[k])
        first = False
    now = clock()
    for k, r in res.items():
        if math.isnan(r.decided_at):
            r.decided_at = now
        if r.state == "proven":
            r.rstar = max(r.rho, radius) if r.inexact else r.rho
        if r.state in ("open", "unknown"):
            r.tiles.append(leaves.tile[leaves.open[:, k]])
    return res


def _close_finished(leaves: _Leaves, res: dict[int, KeypointResult]) -> None:
    for k, r in res.items():
        if r.state == "search" and not bool(leaves.open[:, k].any()):
            r.state = "proven"


def _select(leaves: _Leaves, res: dict[int, KeypointResult], n: int) -> torch.Tensor:
    """Indices of the ``n`` leaves to bound next: keypoints ranked by their worst margin over
    their leaves (highest first; fewer leaves first on ties), each leaf by its best-ranked open
    keypoint, then by that keypoint's margin on the leaf (lowest first)."""
    n_k = leaves.open.shape[1]
    inf = torch.tensor(math.inf, dtype=leaves.lb.dtype, device=leaves.lb.device)
    g = torch.where(leaves.open, leaves.lb, inf).amin(dim=0)  # (K,)
    count = leaves.open.sum(dim=0)
    order = torch.argsort(count, stable=True)
    order = order[torch.argsort(-g[order], stable=True)]
    rank = torch.empty(n_k, dtype=torch.long, device=g.device)
    rank[order] = torch.arange(n_k, device=g.device)
    leaf_rank = torch.where(leaves.open, rank.view(1, -1), torch.full_like(leaves.open, n_k, dtype=torch.long))
    best = leaf_rank.argmin(dim=1)
    lr = leaf_rank.gather(1, best.view(-1, 1)).flatten()
    llb = leaves.lb.gather(1, best.view(-1, 1)).flatten()
    o = torch.argsort(llb, stable=True)
    o = o[torch.argsort(lr[o], stable=True)]
    return o[:n]


def _bound(ctx: FrameContext, coords: _Coords, batch: _Leaves, radius: float, backward: bool,
           res: dict[int, KeypointResult], width: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bound the leaves of ``batch`` (in place: requirements, margins, open keypoints; records the
    tiles of keypoints that close) and return their shrunk search boxes (n, 4) and split sides (n,)."""
    n = len(batch)
    layers, x0, tol = ctx.plan.layers, ctx.x0, ctx.tol
    boxes = coords.maps(batch.box).to(x0.dtype)
    trace = [] if backward else None
    with torch.no_grad():
        f = propagate(layers, x0, boxes, trace)
    lower, upper = f.lower.flatten(3), f.upper.flatten(3)  # (n, 3, K, S)
    dev = x0.device
    e_lo = torch.full((n, 2), math.inf, dtype=x0.dtype, device=dev)
    e_hi = torch.full((n, 2), -math.inf, dtype=x0.dtype, device=dev)
    score = torch.zeros(n, 2, dtype=x0.dtype, device=dev)
    for k, r in res.items():
        sel = torch.nonzero(batch.open[:, k]).flatten()
        if sel.numel() == 0:
            continue
        q = ctx.candidates(k, radius)
        dq = ctx.dist[k, q]
        inside = dq <= radius
        d = lower[sel][:, :, k][:, :, q].unsqueeze(-1) - upper[sel][:, :, k].unsqueeze(-2)  # (m, 3, Q, S)
        marg = d[:, 0] - d[:, 1].abs() - d[:, 2].abs()  # (m, Q, S)
        req = torch.minimum(batch.req[sel, k], requirements_from_margins(marg, dq, ctx.dist[k], tol))
        open_rows = req > radius  # (m, S)
        # Affine lower bounds of the rows against the candidates inside the disk.
        di = d[:, :, inside]  # (m, 3, Qi, S)
        mi = marg[:, inside]
        qbest = mi.argmax(dim=1)  # (m, S)
        forms = di.gather(2, qbest.view(len(sel), 1, 1, -1).expand(-1, 3, 1, -1)).squeeze(2)  # (m, 3, S)
        best = mi.amax(dim=1)  # (m, S)
        if backward:
            best = _backward(ctx, boxes, sel, k, q[inside], qbest, open_rows, req, forms, best, dq[inside], trace)
        # Region proof: the unproven part of a row lies in the intersection of its half-planes' boxes.
        thr = 2 * tol
        lo1, hi1 = _halfplane_range(di[:, 1], di[:, 2], di[:, 0], thr)
        lo2, hi2 = _halfplane_range(di[:, 2], di[:, 1], di[:, 0], thr)
        lo1, hi1, lo2, hi2 = lo1.amax(1), hi1.amin(1), lo2.amax(1), hi2.amin(1)  # (m, S)
        bl1, bh1 = _halfplane_range(forms[:, 1], forms[:, 2], forms[:, 0], thr)  # the backward forms too
        bl2, bh2 = _halfplane_range(forms[:, 2], forms[:, 1], forms[:, 0], thr)
        lo1, hi1, lo2, hi2 = torch.maximum(lo1, bl1), torch.minimum(hi1, bh1), torch.maximum(lo2, bl2), torch.minimum(hi2, bh2)
        empty = open_rows & ((lo1 > hi1) | (lo2 > hi2))
        if bool(empty.any()):
            req = torch.where(empty, req.clamp_max(float(dq[inside].max())), req)
            open_rows = open_rows & ~empty
            r.inexact = True
        inf = torch.full_like(lo1, math.inf)
        e_lo[sel, 0] = torch.minimum(e_lo[sel, 0], torch.where(open_rows, lo1, inf).amin(1))
        e_hi[sel, 0] = torch.maximum(e_hi[sel, 0], torch.where(open_rows, hi1, -inf).amax(1))
        e_lo[sel, 1] = torch.minimum(e_lo[sel, 1], torch.where(open_rows, lo2, inf).amin(1))
        e_hi[sel, 1] = torch.maximum(e_hi[sel, 1], torch.where(open_rows, hi2, -inf).amax(1))
        w = open_rows.to(x0.dtype)
        score[sel] += torch.stack([(forms[:, 1].abs() * w).sum(1), (forms[:, 2].abs() * w).sum(1)], 1)
        batch.req[sel, k] = req
        batch.lb[sel, k] = torch.where(open_rows, best, inf).amin(1)
        closed = ~open_rows.any(dim=1)
        if bool(closed.any()):
            c = sel[closed]
            batch.open[c, k] = False
            r.tiles.append(batch.tile[c])
            r.rho = max(r.rho, float(req[closed].amax()))
    # New search boxes (padded outwards against rounding, inside the old ones).
    live = batch.open.any(dim=1)
    e_lo = torch.where(live.view(-1, 1), (e_lo - 1e-6).clamp(-1.0, 1.0), -torch.ones_like(e_lo)).double()
    e_hi = torch.where(live.view(-1, 1), (e_hi + 1e-6).clamp(-1.0, 1.0), torch.ones_like(e_hi)).double()
    e_hi = torch.maximum(e_hi, e_lo)
    b = batch.box
    mid = torch.stack([(b[:, 0] + b[:, 1]) / 2, (b[:, 2] + b[:, 3]) / 2], 1)
    rad = torch.stack([(b[:, 1] - b[:, 0]) / 2, (b[:, 3] - b[:, 2]) / 2], 1)
    lo, hi = (mid + rad * e_lo), (mid + rad * e_hi)
    lo = torch.maximum(lo, b[:, [0, 2]])
    hi = torch.minimum(hi, b[:, [1, 3]])
    shrunk = (lo > b[:, [0, 2]]) | (hi < b[:, [1, 3]])
    for k, r in res.items():
        if bool((shrunk.any(dim=1) & batch.open[:, k]).any()):
            r.inexact = True
    new_box = torch.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], 1)
    # Split side: bound coefficients times the kept fraction of the side (never a side of zero width).
    frac = (e_hi - e_lo) / 2
    s = score.double() * frac
    rel = (hi - lo) / width.clamp_min(1e-300)
    s = torch.where(s.sum(1, keepdim=True) > 0, s, rel)
    s = torch.where(width.view(1, 2) > 0, s, torch.full_like(s, -1.0))
    return new_box, s.argmax(dim=1)


def _backward(ctx: FrameContext, boxes: torch.Tensor, sel: torch.Tensor, k: int, q_in: torch.Tensor,
              qbest: torch.Tensor, open_rows: torch.Tensor, req: torch.Tensor, forms: torch.Tensor, best: torch.Tensor,
              d_in: torch.Tensor, trace: list) -> torch.Tensor:
    """Backward bounds (in place on ``open_rows``, ``req``, ``forms``) for the open rows of the
    leaves with at most :data:`MAX_ROWS` of them, against the row's best candidate; returns the
    improved best margins."""
    count = open_rows.sum(dim=1)
    few = open_rows & ((count > 0) & (count <= MAX_ROWS)).view(-1, 1)
    idx = torch.nonzero(few)
    if idx.shape[0] == 0:
        return best
    i, s = idx[:, 0], idx[:, 1]
    qi = qbest[i, s]
    rows = torch.stack([sel[i], torch.full_like(i, k), q_in[qi], s], 1)
    with torch.no_grad():
        fb = backward_forms(ctx.plan.layers, ctx.x0, boxes, trace, rows)  # (B, 3)
    mb = fb[:, 0] - fb[:, 1].abs() - fb[:, 2].abs()
    better = mb > best[i, s]
    forms[i[better], :, s[better]] = fb[better]
    best = best.clone()
    best[i, s] = torch.maximum(best[i, s], mb)
    ok = mb > ctx.tol
    req[i[ok], s[ok]] = torch.minimum(req[i[ok], s[ok]], d_in[qi[ok]])
    open_rows[i[ok], s[ok]] = False
    return best


def _split(leaves: _Leaves, side: torch.Tensor) -> _Leaves:
    """Two children per leaf: the search box halved on ``side`` (0 = c, 1 = b), the tile cut at the
    same value (so the children's tiles cover the parent's)."""
    lo_col, hi_col = side * 2, side * 2 + 1
    ar = torch.arange(len(leaves), device=side.device)
    cut = (leaves.box[ar, lo_col] + leaves.box[ar, hi_col]) / 2
    a, b = leaves.take(ar), leaves.take(ar)
    for t in (a.tile, a.box):
        t[ar, hi_col] = cut
    for t in (b.tile, b.box):
        t[ar, lo_col] = cut
    kids = _Leaves.cat([a, b])
    kids.depth = kids.depth + 1
    return kids


def _stop(res: dict[int, KeypointResult], k: int, parts: list[_Leaves]) -> None:
    """End keypoint ``k``'s search as ``open`` (its open tiles kept for a warm start)."""
    if res[k].state != "search":
        return
    res[k].state = "open"
    for p in parts:
        res[k].tiles.append(p.tile[p.open[:, k]])
        p.open[:, k] = False


def _root_points(box: torch.Tensor) -> torch.Tensor:
    """The corners, edge midpoints and centre of ``box`` (9, 2)."""
    c = torch.stack([box[0], (box[0] + box[1]) / 2, box[1]])
    b = torch.stack([box[2], (box[2] + box[3]) / 2, box[3]])
    return torch.stack(torch.meshgrid(c, b, indexing="ij"), -1).reshape(-1, 2)


def _refute(ctx: FrameContext, thetas: torch.Tensor, radius: float, res: dict[int, KeypointResult],
            parts: list[_Leaves]) -> None:
    """Evaluate the real detector at ``thetas`` (M, 2); a keypoint still searched whose argmax
    lands farther than ``radius`` is refuted with the first such θ."""
    todo = [k for k, r in res.items() if r.state == "search"]
    if not todo or thetas.shape[0] == 0:
        return
    t = thetas.to(ctx.x0.dtype)
    with torch.no_grad():
        hm = torch.cat([ctx.detector(apply_perturbation(ctx.x0.expand(len(c), -1, -1, -1), c[:, 0], c[:, 1]))
                        for c in t.split(64)])
    rows, cols, _ = decode_heatmaps(hm)  # the decoding of predict
    cells = rows * hm.shape[-1] + cols  # (M, K) flat indices
    for k in todo:
        bad = torch.nonzero(ctx.dist[k][cells[:, k]] > radius).flatten()
        if bad.numel():
            res[k].state = "refuted"
            res[k].counterexample = tuple(float(v) for v in t[int(bad[0])].tolist())
            res[k].tiles = []
            for p in parts:
                p.open[:, k] = False


def _pgd(ctx: FrameContext, coords: _Coords, k: int, radius: float, parts: list[_Leaves]) -> torch.Tensor:
    """Counter-example candidates for keypoint ``k``: :data:`PGD_STEPS` projected sign-gradient
    steps on ``max_outside H - max_inside H`` from the centres of its worst leaves and the box's
    corners; returns every iterate (M, 2)."""
    box = coords.r
    starts = [_root_points(box)[[0, 2, 6, 8]]]
    for p in parts:
        if bool(p.open[:, k].any()):
            o = torch.nonzero(p.open[:, k]).flatten()
            w = o[torch.argsort(p.lb[o, k])[:4]]
            starts.append(coords.theta(torch.stack([(p.box[w, 0] + p.box[w, 1]) / 2, (p.box[w, 2] + p.box[w, 3]) / 2], 1)))
    theta = torch.cat(starts).to(ctx.x0.dtype)
    lo = box[[0, 2]].to(theta.dtype)
    hi = box[[1, 3]].to(theta.dtype)
    step = (hi - lo) / 4
    outside = (ctx.dist[k] > radius).view(1, -1)
    seen = [theta]
    for _ in range(PGD_STEPS):
        th = theta.clone().requires_grad_(True)
        with torch.enable_grad():
            hm = ctx.detector(apply_perturbation(ctx.x0.expand(len(th), -1, -1, -1), th[:, 0], th[:, 1]))[:, k].flatten(1)
            neg = torch.full_like(hm, -math.inf)
            gap = torch.where(outside, hm, neg).amax(1) - torch.where(~outside, hm, neg).amax(1)
            (grad,) = torch.autograd.grad(gap.sum(), th)
        theta = torch.minimum(torch.maximum(theta + step * grad.sign(), lo), hi).detach()
        seen.append(theta)
        step = step * 0.7
    return torch.cat(seen)
