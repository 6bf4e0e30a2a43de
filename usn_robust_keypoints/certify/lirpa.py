"""``auto_lirpa`` backend: the same perturbation module + folded detector in
``auto_LiRPA.BoundedModule`` (IBP, CROWN, alpha-CROWN), the same disk spec with the nominal cell
as the dominating cell (difference rows ``H_q - H_s`` through the C matrix)."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from ..model.detector import fold_batchnorm
from ..perturbation import SemanticPerturbation
from .bounds import net_input_clamp
from .native import FrameContext

INSTALL_HINT = ('the auto_lirpa backend needs auto_LiRPA, which is only distributed as source: '
                'pip install "auto_LiRPA @ git+https://github.com/Verified-Intelligence/auto_LiRPA"')
METHODS = {"IBP": "IBP", "CROWN": "CROWN", "alpha-CROWN": "CROWN-Optimized"}


def import_lirpa():
    """The auto_LiRPA module, or ``ImportError`` saying how to install it."""
    try:
        import auto_LiRPA
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from e
    return auto_LiRPA


def certify_lirpa(ctx: FrameContext, alpha: float, beta: float, radius: float,
                  method: str = "CROWN") -> tuple[list[float], list[str], list[float]]:
    """r*, state (proven / exhausted) and seconds per keypoint from auto_LiRPA bounds of
    ``H_q - H_s`` (q = nominal cell, every other cell s) over the whole box."""
    if method not in METHODS:
        raise ValueError(f"unknown auto_LiRPA method {method!r}; choose one of {', '.join(METHODS)}")
    lirpa = import_lirpa()
    t0 = time.perf_counter()
    if net_input_clamp(ctx.detector) > 0:
        raise ValueError("the auto_lirpa backend does not model the detector's input_clamp; use backend='native'")
    det = getattr(ctx.detector, "net", ctx.detector)
    net = nn.Sequential(SemanticPerturbation(ctx.x0[0].detach()), *fold_batchnorm(det), nn.Flatten())
    net = net.to(ctx.x0.device).eval()
    theta0 = torch.tensor([[1.0, 0.0]], dtype=ctx.x0.dtype, device=ctx.x0.device)
    bounded = lirpa.BoundedModule(net, theta0, device=ctx.x0.device, verbose=0)
    lo = torch.tensor([[1.0 - alpha, -beta]], dtype=ctx.x0.dtype, device=ctx.x0.device)
    hi = torch.tensor([[1.0 + alpha, beta]], dtype=ctx.x0.dtype, device=ctx.x0.device)
    ptb = lirpa.PerturbationLpNorm(norm=np.inf, x_L=lo, x_U=hi)
    theta = lirpa.BoundedTensor(theta0, ptb)
    n_k, hw = ctx.dist.shape
    h, w = ctx.heatmap_size
    rows, meta = [], []
    for k in range(n_k):
        q = int(ctx.cells[k, 0]) * w + int(ctx.cells[k, 1])
        for s in range(hw):
            if s != q:
                rows.append((k * hw + q, k * hw + s))
                meta.append((k, s))
    C = torch.zeros(1, len(rows), n_k * hw, dtype=ctx.x0.dtype, device=ctx.x0.device)
    idx = torch.arange(len(rows))
    C[0, idx, torch.tensor([r[0] for r in rows])] = 1.0
    C[0, idx, torch.tensor([r[1] for r in rows])] = -1.0
    with torch.no_grad() if method == "IBP" else torch.enable_grad():
        lb, _ = bounded.compute_bounds(x=(theta,), C=C, method=METHODS[method], bound_upper=False)
    lb = lb.detach()[0].cpu()
    ks = torch.tensor([m[0] for m in meta])
    ss = torch.tensor([m[1] for m in meta])
    dist = ctx.dist.cpu()
    failing = lb <= ctx.tol
    rstar = []
    for k in range(n_k):
        sel = failing & (ks == k)
        rstar.append(float(dist[k, ss[sel]].max()) if bool(sel.any()) else 0.0)
    dt = (time.perf_counter() - t0) / n_k
    return rstar, ["proven" if r <= radius else "exhausted" for r in rstar], [dt] * n_k
