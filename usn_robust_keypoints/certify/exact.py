"""Exact verdicts: enumerate the linear regions of ``theta -> heatmap`` over the 2-D theta box.

The perturbed input ``z = c * x0 + b`` is affine in ``theta = (c, b)``; the clip, the BN-folded
convolutions, the ReLUs and the nearest upsampling (:func:`.bounds.bound_layers`) are piecewise
linear. So the box splits into convex polygons on each of which every neuron is an affine
function of theta (SyReNN, Sotoudeh & Thakur 2019). We keep a set of polygons, each with the
affine map ``a0 + a1 * (c - 1) + a2 * b`` of every neuron of the current layer (float64); at the
input clip and at each ReLU a polygon is cut along the zero lines of the pre-activations that
change sign on it (all cuts of one layer form a line arrangement inside the polygon), and every
piece gets its activation pattern from its centroid.

On a final polygon the heatmap of keypoint ``k`` is affine. The claim ("the argmax is within
``radius`` of the nominal cell") fails at theta iff some cell ``s`` outside the disk has
``H_s(theta) >= max_{q in disk} H_q(theta)``. ``max_q H_q`` is convex, not affine, so its minimum
over a polygon need not be at a vertex: the polygon is first cut into the pieces of the upper
envelope of the inside cells (where one ``q`` is the largest), on which ``H_q - H_s`` is affine and
its minimum over the piece is at a vertex. ``proven``: every such minimum exceeds the tolerance on
every polygon; ``refuted``: a point of a theta grid tried first, or a vertex with a negative
margin, at which the real (float32) detector's argmax leaves the disk; ``open``: the region or time cap was hit (or a violation smaller than the
tolerance that the real detector does not confirm).

Optionally (``hybrid=True``, the default) a polygon is first tried with the sound forward bounds
of :mod:`.bounds` from the current layer on (exact affine input forms over the polygon's bounding
box, margins minimised over the polygon's vertices): if those prove the claim, the polygon is
not split further. The verdicts are the same (sound bounds only ever prove true claims; every
unproven polygon is still enumerated exactly); only the number of polygons changes.

Memory: children are materialised in chunks of ``batch`` polygons (depth-first), so the memory
is a few chunks per layer, whatever the number of regions; ``max_regions`` and ``time_limit_s``
stop the search with ``open``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..model.preprocess import FrameGeometry
from ..perturbation import apply_perturbation
from .bounds import HANDLERS, FoldedConv, Forms, bound_layers, input_clamp
from .native import frame_context

GEPS = 1e-13  # a line "crosses" a polygon when vertices lie farther than this on both sides (theta units)
VEPS = 1e-9  # a neuron changes sign on a polygon when its values there exceed this on both sides
FULL_SPLIT = 3  # with a prune, polygons crossed by more kink lines are bisected first (see linear_regions)


@dataclass
class ExactResult:
    """Exact verdict for one keypoint: ``proven`` / ``refuted`` (with ``theta = (c, b)``) / ``open``."""

    keypoint: int
    verdict: str
    theta: tuple[float, float] | None
    regions: int  # polygons closed: exact linear regions plus those closed by the sound bounds
    bound_closed: int  # of those, polygons closed early by the sound bounds (hybrid)
    time_s: float
    min_margin: float  # smallest exact margin over the enumerated regions (<= tolerance when not proven)
    reason: str = ""

    def to_dict(self) -> dict:
        return {"keypoint": self.keypoint, "verdict": self.verdict,
                "theta": None if self.theta is None else list(self.theta), "regions": self.regions,
                "bound_closed": self.bound_closed, "time_s": self.time_s,
                "min_margin": self.min_margin, "reason": self.reason}


@dataclass
class _Clip:
    """Piecewise-linear unit ``clip(z, lo, hi)`` (a ReLU is ``lo = 0, hi = inf``)."""

    lo: float
    hi: float


def exact_layers(detector: nn.Module, keypoint: int) -> list:
    """The folded layer list of ``detector`` in float64 for exact enumeration: the input clip as a
    :class:`_Clip`, ReLUs as ``_Clip(0, inf)``, the head reduced to ``keypoint``'s channel."""
    tau, layers = input_clamp(bound_layers(detector))
    out: list = [_Clip(tau, 1.0 - tau)]
    for m in layers:
        if isinstance(m, FoldedConv):
            m = FoldedConv(m.weight.double(), None if m.bias is None else m.bias.double(), m.stride, m.padding,
                           m.dilation, m.groups, m.padding_mode)
        out.append(_Clip(0.0, math.inf) if isinstance(m, nn.ReLU) else m)
    head = out[-1]
    out[-1] = FoldedConv(head.weight[keypoint:keypoint + 1], None if head.bias is None else head.bias[keypoint:keypoint + 1],
                         head.stride, head.padding, head.dilation, head.groups, head.padding_mode)
    return out


def _affine(m, f: torch.Tensor) -> torch.Tensor:
    """Exact affine forms ``(N, 3, C, H, W)`` through an affine layer (bias on the constant only)."""
    n = f.shape[0]
    t = f.reshape(n * 3, *f.shape[2:])
    if isinstance(m, FoldedConv):
        x, padding = m.pad(t)
        t = F.conv2d(x, m.weight, None, m.stride, padding, m.dilation, m.groups)
    elif isinstance(m, nn.Upsample):
        t = F.interpolate(t, size=m.size, scale_factor=m.scale_factor, mode="nearest")
    elif isinstance(m, nn.PixelShuffle):
        t = F.pixel_shuffle(t, m.upscale_factor)
    elif not isinstance(m, (nn.Identity, nn.Dropout)):
        raise ValueError(f"layer {type(m).__name__} is not supported by the exact method")
    t = t.reshape(n, 3, *t.shape[1:])
    if isinstance(m, FoldedConv) and m.bias is not None:
        t[:, 0] += m.bias.view(1, -1, 1, 1)
    return t


def _values(f: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Values ``(N, V, D)`` of flat forms ``f (N, 3, D)`` at points ``pts (N, V, 2)``."""
    return f[:, None, 0] + pts[..., 0:1] * f[:, None, 1] + pts[..., 1:2] * f[:, None, 2]


def _padded(polys: list[np.ndarray], device) -> torch.Tensor:
    """Vertices ``(N, Vmax, 2)`` of polygons, short ones padded with their first vertex."""
    vmax = max(len(p) for p in polys)
    arr = np.stack([np.concatenate([p, np.repeat(p[:1], vmax - len(p), axis=0)]) for p in polys])
    return torch.as_tensor(arr, dtype=torch.float64, device=device)


def cut(poly: np.ndarray, d: np.ndarray) -> list[np.ndarray]:
    """The two parts of a convex polygon ``poly (V, 2)`` on either side of a line with signed
    values ``d (V,)`` at its vertices (the line must cross the polygon)."""
    d = np.where(np.abs(d) <= GEPS, 0.0, d)
    neg: list = []
    pos: list = []
    n = len(poly)
    for i in range(n):
        j = (i + 1) % n
        if d[i] <= 0:
            neg.append(poly[i])
        if d[i] >= 0:
            pos.append(poly[i])
        if d[i] * d[j] < 0:
            x = poly[i] + d[i] / (d[i] - d[j]) * (poly[j] - poly[i])
            neg.append(x)
            pos.append(x)
    return [np.array(neg), np.array(pos)]


def arrangement(poly: np.ndarray, lines: np.ndarray) -> list[np.ndarray]:
    """The cells of the arrangement of ``lines (L, 3)`` (``a0 + a1 u1 + a2 u2 = 0``, ``(a1, a2)``
    of unit norm) inside the convex polygon ``poly``."""
    pieces = [poly]
    for a in lines:
        verts = np.concatenate(pieces)
        d = a[0] + verts @ a[1:]
        starts = np.cumsum([0] + [len(p) for p in pieces[:-1]])
        crosses = (np.minimum.reduceat(d, starts) < -GEPS) & (np.maximum.reduceat(d, starts) > GEPS)
        if not crosses.any():
            continue
        out = []
        for p, s, c in zip(pieces, starts, crosses):
            out.extend(cut(p, d[s:s + len(p)]) if c else [p])
        pieces = out
    return pieces


def bisect(poly: np.ndarray, lines: np.ndarray) -> list[np.ndarray]:
    """The two halves of ``poly`` along the line of ``lines`` nearest its centroid."""
    d = lines[:, 0] + lines[:, 1:] @ poly.mean(axis=0)
    a = lines[int(np.argmin(np.abs(d)))]
    return cut(poly, a[0] + poly @ a[1:])


def _lines(coef: np.ndarray) -> np.ndarray:
    """Distinct normalised lines (L, 3) from affine coefficients ``(M, 3)`` (sign fixed, rounded)."""
    norm = np.hypot(coef[:, 1], coef[:, 2])
    coef = coef[norm > 1e-14] / norm[norm > 1e-14, None]
    flip = (coef[:, 1] < 0) | ((coef[:, 1] == 0) & (coef[:, 2] < 0))
    coef[flip] *= -1
    _, idx = np.unique(np.round(coef / 1e-12), axis=0, return_index=True)
    return coef[np.sort(idx)]


def _split_lines(f: torch.Tensor, polys: list[np.ndarray], clip: _Clip) -> list[np.ndarray]:
    """Per polygon, the distinct lines of the kinks (``z = lo``, ``z = hi``) that cross it."""
    flat = f.flatten(2)  # (N, 3, D)
    vals = _values(flat, _padded(polys, f.device))  # (N, V, D)
    mn, mx = vals.amin(dim=1), vals.amax(dim=1)
    out = []
    for n in range(len(polys)):
        parts = []
        for t in (clip.lo, clip.hi):
            if not math.isfinite(t):
                continue
            idx = torch.nonzero((mn[n] < t - VEPS) & (mx[n] > t + VEPS)).flatten()
            if idx.numel():
                c = flat[n][:, idx].T.clone()
                c[:, 0] -= t
                parts.append(c.cpu().numpy())
        out.append(_lines(np.concatenate(parts)) if parts else np.zeros((0, 3)))
    return out


def _apply_clip(f: torch.Tensor, polys: list[np.ndarray], clip: _Clip) -> torch.Tensor:
    """Forms after ``clip`` on polygons where no kink crosses (pattern from each centroid)."""
    centre = torch.as_tensor(np.stack([p.mean(axis=0) for p in polys]), dtype=f.dtype, device=f.device)
    v = f[:, 0] + centre[:, 0].view(-1, 1, 1, 1) * f[:, 1] + centre[:, 1].view(-1, 1, 1, 1) * f[:, 2]
    inside = ((v > clip.lo) & (v < clip.hi)).unsqueeze(1).to(f.dtype)
    out = f * inside
    out[:, 0] += torch.where(v <= clip.lo, clip.lo, 0.0) + (torch.where(v >= clip.hi, clip.hi, 0.0)
                                                           if math.isfinite(clip.hi) else 0.0)
    return out


class _Spec:
    """The disk claim of one keypoint on flat heatmap forms ``(N, 3, S)``."""

    def __init__(self, dist: np.ndarray, radius: float, tol: float) -> None:
        inside = dist <= radius + 1e-9
        self.inside = np.nonzero(inside)[0]
        self.outside = np.nonzero(~inside)[0]
        self.tol = tol

    def bounds_prove(self, lower: torch.Tensor, upper: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        """(N,) bool: sound bound forms ``(N, 3, S)`` (in the coordinates of ``pts (N, V, 2)``)
        prove the claim on the polygons: every outside cell is beaten by some inside cell at all
        vertices (``lower_q - upper_s`` is affine, so its minimum over a polygon is at a vertex)."""
        ok = torch.zeros(lower.shape[0], self.outside.size, dtype=torch.bool, device=lower.device)
        up = upper[:, :, self.outside]
        for q in self.inside:
            diff = lower[:, :, q:q + 1] - up  # (N, 3, S_out)
            ok |= _values(diff, pts).amin(dim=1) > self.tol
        return ok.all(dim=1)

    def check(self, poly: np.ndarray, h: np.ndarray) -> tuple[float, np.ndarray | None]:
        """(smallest margin, the vertex where it is reached) of the exact affine heatmap
        ``h (3, S)`` over ``poly``: the pieces of the inside cells' upper envelope, then
        ``H_q - H_s`` at each piece's vertices."""
        pieces = [(poly, self.inside[0])]
        for q in self.inside[1:]:
            new = []
            for p, cur in pieces:
                g = h[:, q] - h[:, cur]
                d = g[0] + p @ g[1:]
                if d.max() <= GEPS:
                    new.append((p, cur))
                elif d.min() >= -GEPS:
                    new.append((p, q))
                else:
                    lo, hi = cut(p, d)
                    new += [(lo, cur), (hi, q)]
            pieces = new
        best, where = math.inf, None
        ho = h[:, self.outside]
        for p, q in pieces:
            m = (h[0, q] - ho[0])[None] + p[:, :1] * (h[1, q] - ho[1])[None] + p[:, 1:] * (h[2, q] - ho[2])[None]
            i = np.unravel_index(np.argmin(m), m.shape)
            if m[i] < best:
                best, where = float(m[i]), p[i[0]]
        return best, where


def box_polygon(alpha: float, beta: float) -> np.ndarray:
    """The theta box in the coordinates ``u = (c - 1, b)`` as a counter-clockwise polygon (a
    segment or a point when a side has zero width)."""
    box = np.array([[-alpha, -beta], [alpha, -beta], [alpha, beta], [-alpha, beta]], dtype=np.float64)
    if alpha == 0 or beta == 0:
        box = box[np.sort(np.unique(box, axis=0, return_index=True)[1])]
    return box


Prune = Callable[[int, torch.Tensor, list], torch.Tensor]


def linear_regions(layers: list, x0: torch.Tensor, polygon: np.ndarray, prune: Prune | None = None,
                   batch: int = 16, stop: Callable[[], bool] | None = None) -> Iterator[tuple[list[np.ndarray], torch.Tensor]]:
    """Enumerate the linear regions of ``layers`` (:func:`exact_layers`) on the input
    ``clip(c * x0 + b)`` over ``polygon`` (``u = (c - 1, b)`` coordinates): yields batches
    ``(polygons, forms (N, 3, C, H, W))`` of the output's exact affine maps ``a0 + a1 u1 + a2 u2``.

    ``prune(i, forms, polygons)`` (optional) is asked before the polygons that would be split at
    layer ``i`` are split; it returns (N,) bool, True for polygons that need no further enumeration
    (they are dropped); with a ``prune``, a polygon crossed by more than :data:`FULL_SPLIT` kink
    lines is first bisected along the line nearest its centroid and the halves are asked again
    (the bounds often prove a half long before the full arrangement is reached). Depth-first, at most ``batch`` polygons materialised per layer at a time;
    the enumeration ends early as soon as ``stop()`` (optional) returns True."""
    x = x0.to(torch.float64)
    f0 = torch.stack([x, x, torch.ones_like(x)], dim=1)  # z = x0 + (c - 1) x0 + b
    # Stack items: ("forms", layer index, forms at its input (N, 3, C, H, W), polygons) or, for the
    # pieces of a split not materialised yet, ("pending" | "halves", layer index, parent forms,
    # [(parent, polygon)]): "pending" pieces are cells of the full arrangement (they go through the
    # kink layer), "halves" are bisected polygons that come back to the same layer (and the prune).
    stack: list = [("forms", 0, f0, [polygon])]
    while stack and not (stop is not None and stop()):
        kind, i, f, items = stack.pop()
        if kind != "forms":  # pieces of a split: materialise a batch (after the kink layer, or before it again)
            if len(items) > batch:
                stack.append((kind, i, f, items[batch:]))
            idx = torch.tensor([p for p, _ in items[:batch]], device=f.device)
            polys = [q for _, q in items[:batch]]
            if kind == "pending":
                stack.append(("forms", i + 1, _apply_clip(f[idx], polys, layers[i]), polys))
            else:
                stack.append(("forms", i, f[idx], polys))
            continue
        polys = items
        if i == len(layers):
            yield polys, f
            continue
        m = layers[i]
        if not isinstance(m, _Clip):
            stack.append(("forms", i + 1, _affine(m, f), polys))
            continue
        lines = _split_lines(f, polys, m)
        split = [n for n, ln in enumerate(lines) if len(ln)]
        if prune is not None and split:
            closed = prune(i, f[split], [polys[n] for n in split])
            drop = {split[j] for j in torch.nonzero(closed).flatten().tolist()}
            keep = [n for n in range(len(polys)) if n not in drop]
            if not keep:
                continue
            f, polys, lines = f[keep], [polys[n] for n in keep], [lines[n] for n in keep]
        pieces, halves = [], []
        for n, (p, ln) in enumerate(zip(polys, lines)):
            if prune is not None and len(ln) > FULL_SPLIT:  # bisect, let the bounds try the halves again
                halves += [(n, q) for q in bisect(p, ln)]
            else:
                pieces += [(n, q) for q in arrangement(p, ln)]
        if pieces:
            stack.append(("pending", i, f, pieces))
        if halves:
            stack.append(("halves", i, f, halves))


def exact_verdict(detector: nn.Module, x0: torch.Tensor, geometry: FrameGeometry, keypoint: int,
                  alpha: float, beta: float, radius: float, max_regions: int = 200_000,
                  time_limit_s: float = 60.0, hybrid: bool = True, batch: int = 16,
                  sample_first: int = 17) -> ExactResult:
    """Exact verdict for ``keypoint`` of the pre-processed input ``x0 (1, 1, H, W)``: is the argmax
    within ``radius`` frame pixels of the nominal cell for every ``c in [1-alpha, 1+alpha]``,
    ``b in [-beta, beta]``? ``open`` when ``max_regions`` or ``time_limit_s`` is reached.
    ``sample_first = n`` first tries an ``n x n`` grid of theta (corners and edges included) on the
    real detector as counter-examples (0: enumerate right away)."""
    t0 = time.perf_counter()
    ctx = frame_context(detector, x0, geometry)
    spec = _Spec(ctx.dist[keypoint].cpu().numpy(), radius, ctx.tol)
    layers = exact_layers(detector, keypoint)
    blayers = input_clamp(bound_layers(detector))[1]  # float32 forward bounds, aligned with layers[1:]
    box = box_polygon(alpha, beta)
    stats = {"regions": 0, "closed": 0, "margin": math.inf}

    def done(verdict: str, theta=None, reason: str = "") -> ExactResult:
        th = None if theta is None else (1.0 + float(theta[0]), float(theta[1]))
        return ExactResult(keypoint, verdict, th, stats["regions"], stats["closed"],
                           time.perf_counter() - t0, stats["margin"], reason)

    def violations(u: np.ndarray) -> torch.Tensor:
        """(M,) bool: the real detector's argmax at ``u (M, 2)`` leaves the disk."""
        t = torch.as_tensor(u, dtype=x0.dtype, device=x0.device).view(-1, 2)
        out = []
        for i in range(0, t.shape[0], 64):
            with torch.no_grad():
                hm = detector(apply_perturbation(x0.expand(len(t[i:i + 64]), -1, -1, -1), 1.0 + t[i:i + 64, 0],
                                                 t[i:i + 64, 1]))
            out.append(ctx.dist[keypoint][hm[:, keypoint].flatten(1).argmax(dim=1)] > radius)
        return torch.cat(out).cpu()

    def refutes(u: np.ndarray) -> bool:
        return bool(violations(u)[0])

    def prune(i: int, f: torch.Tensor, polys: list) -> torch.Tensor:
        if i == 0:  # the input clip: the bounds of the whole network never pay here
            return torch.zeros(len(polys), dtype=torch.bool)
        closed = _bounds_prove(blayers[i - 1:], keypoint, f, polys, spec)
        stats["closed"] += int(closed.sum())
        stats["regions"] += int(closed.sum())
        return closed

    if spec.outside.size == 0:
        return done("proven", reason="every cell is within the radius")
    if sample_first:
        g = np.stack(np.meshgrid(np.linspace(-alpha, alpha, sample_first), np.linspace(-beta, beta, sample_first),
                                 indexing="ij"), axis=-1).reshape(-1, 2)
        bad = torch.nonzero(violations(g)).flatten()
        if bad.numel():
            return done("refuted", g[int(bad[0])], f"{sample_first}x{sample_first} theta grid")
    def stop() -> bool:
        return time.perf_counter() - t0 > time_limit_s or stats["regions"] >= max_regions

    unconfirmed = None  # (margin, vertex) of the worst violation the real detector did not confirm
    for polys, f in linear_regions(layers, x0, box, prune if hybrid else None, batch, stop):
        for p, h in zip(polys, f[:, :, 0].flatten(2).cpu().numpy()):
            stats["regions"] += 1
            m, v = spec.check(p, h)
            stats["margin"] = min(stats["margin"], m)
            if m <= spec.tol:  # a violation (or a tie): confirm it on the real detector, else go on
                if m < -spec.tol:
                    for t in (0.0, 0.01, 0.1, 0.5):
                        u = v + t * (p.mean(axis=0) - v)
                        if refutes(u):
                            return done("refuted", u, "exact enumeration")
                if unconfirmed is None or m < unconfirmed[0]:
                    unconfirmed = (m, v)
    if unconfirmed is not None:
        m, v = unconfirmed
        return done("open", reason=f"exact margin {m:.3g} at theta ({1 + v[0]:.6f}, {v[1]:.6f}) within the "
                                   "tolerance or not confirmed by the float32 detector")
    if stats["regions"] >= max_regions:
        return done("open", reason=f"region cap {max_regions}")
    if time.perf_counter() - t0 > time_limit_s:
        return done("open", reason=f"time limit {time_limit_s:g} s")
    return done("proven")


def _bounds_prove(layers: list, keypoint: int, f: torch.Tensor, polys: list[np.ndarray], spec: _Spec) -> torch.Tensor:
    """(N,) bool: the forward bounds of :mod:`.bounds` (the float32 ``layers`` of
    :func:`.bounds.bound_layers` from the current ReLU on) prove the claim on each polygon,
    starting from its exact forms ``f`` expressed over the polygon's bounding box."""
    lo = torch.as_tensor(np.stack([p.min(axis=0) for p in polys]), dtype=f.dtype, device=f.device)
    hi = torch.as_tensor(np.stack([p.max(axis=0) for p in polys]), dtype=f.dtype, device=f.device)
    mid, rad = (lo + hi) / 2, ((hi - lo) / 2).clamp_min(1e-30)
    sh = (-1, 1, 1, 1)
    g = torch.stack([f[:, 0] + mid[:, 0].view(sh) * f[:, 1] + mid[:, 1].view(sh) * f[:, 2],
                     rad[:, 0].view(sh) * f[:, 1], rad[:, 1].view(sh) * f[:, 2]], dim=1)
    g = g.to(layers[-1].weight.dtype)
    forms = Forms(g, g)
    for m in layers:
        forms = HANDLERS[type(m)](forms, m)
    pts = ((_padded(polys, f.device) - mid[:, None]) / rad[:, None]).to(g.dtype)
    return spec.bounds_prove(forms.lower[:, :, keypoint].flatten(2), forms.upper[:, :, keypoint].flatten(2), pts)


def exact_frame(model, image: np.ndarray, alpha: float = 0.02, beta: float = 0.02, radius: float = 4.0,
                keypoints: list[int] | None = None, **kwargs) -> list[ExactResult]:
    """:func:`exact_verdict` for ``keypoints`` (default all) of one uint8 frame and a
    :class:`~usn_robust_keypoints.model.KeypointModel`."""
    x0, geo = model.preprocess(image)
    ks = range(model.config.num_keypoints) if keypoints is None else keypoints
    return [exact_verdict(model.detector, x0, geo, k, alpha, beta, radius, **kwargs) for k in ks]
