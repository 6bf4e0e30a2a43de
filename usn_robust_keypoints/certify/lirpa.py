"""``auto_lirpa`` backend: the same perturbation module + folded detector in
``auto_LiRPA.BoundedModule`` (IBP, CROWN-IBP, CROWN, alpha-CROWN), the same disk spec with the
nominal cell as the dominating cell (difference rows ``H_q - H_s`` through the C matrix).

auto_LiRPA's ``Resize`` operator does not bound ``nn.Upsample(scale_factor=2, mode="nearest")``
(it asserts while parsing the graph), so :func:`lirpa_network` expresses each such upsampling as
an identity ``ConvTranspose2d`` (kernel 2x2, stride 2; auto_LiRPA only bounds ``groups=1``, so
the kernel is a dense ``C x C`` identity): the same function, value for value. Everything the
rewrite cannot express is refused by :func:`lirpa_network` with a ``ValueError`` before
auto_LiRPA is called, and any failure inside auto_LiRPA becomes one :class:`LirpaError` (a
``ValueError``: the CLI prints it as one line) naming the model's layers and the method.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from ..model.detector import fold_batchnorm
from ..perturbation import SemanticPerturbation
from .bounds import net_input_clamp
from .native import FrameContext
from .request import LIRPA_METHODS

INSTALL_HINT = ('the auto_lirpa backend needs auto_LiRPA, which is only distributed as source: '
                'pip install "auto_LiRPA @ git+https://github.com/Verified-Intelligence/auto_LiRPA"')
# Our method name -> auto_LiRPA's. "CROWN": backward (CROWN) bounds of the spec rows on forward-mode
# intermediate bounds (cheap for a 2-D input); "full-CROWN" / "alpha-CROWN" also bound every
# intermediate layer backward, which needs memory quadratic in the layer size (see _FULL_BACKWARD).
METHODS = dict(zip(LIRPA_METHODS, ("IBP", "IBP+backward", "forward+backward", "CROWN", "CROWN-Optimized")))
_FULL_BACKWARD = ("full-CROWN", "alpha-CROWN")
FULL_BACKWARD_MAX_GB = 4.0  # refuse full backward intermediate bounds above this estimate
ROWS_PER_CALL = 512  # spec rows per compute_bounds call (memory of the final backward pass)


class LirpaError(ValueError):
    """auto_LiRPA failed on a model the rewrite accepted (its own error in the message)."""


def import_lirpa():
    """The auto_LiRPA module, or ``ImportError`` saying how to install it."""
    try:
        import auto_LiRPA
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from e
    return auto_LiRPA


def upsample_as_conv_transpose(up: nn.Upsample, channels: int) -> nn.ConvTranspose2d:
    """``nn.Upsample(scale_factor=s, mode="nearest")`` (integer ``s``) as an identity
    ``ConvTranspose2d(channels, channels, s, stride=s)`` (dense kernel, ``groups=1``): every
    output pixel is ``1 *`` its source pixel plus exact zeros, so the values are identical."""
    factors = up.scale_factor if isinstance(up.scale_factor, tuple) else (up.scale_factor,) * 2
    if up.mode != "nearest" or up.size is not None or len(set(float(f) for f in factors)) != 1 \
            or float(factors[0]) != int(factors[0]) or int(factors[0]) < 1:
        raise ValueError(f"the auto_lirpa backend supports nn.Upsample only with mode='nearest' and one integer "
                         f"scale_factor, got mode={up.mode!r} scale_factor={up.scale_factor!r} size={up.size!r}")
    s = int(factors[0])
    conv = nn.ConvTranspose2d(channels, channels, s, stride=s, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        idx = torch.arange(channels)
        conv.weight[idx, idx] = 1.0
    conv.weight.requires_grad_(False)
    return conv


class _Clamp(nn.Module):
    """``clip(x, tau, 1 - tau)`` for ``x`` in [0, 1] written with ReLUs (auto_LiRPA bounds it exactly
    where the input stays on one piece): ``(1 - tau) - relu((1 - 2 tau) - relu(x - tau))``."""

    def __init__(self, tau: float) -> None:
        super().__init__()
        self.tau = float(tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.tau) - torch.relu((1.0 - 2.0 * self.tau) - torch.relu(x - self.tau))


def lirpa_network(detector: nn.Module, x0: torch.Tensor) -> nn.Sequential:
    """``theta (N, 2) -> heatmaps flattened (N, K*h*w)`` as plain modules auto_LiRPA parses:
    the perturbation, the detector's input clamp, its BN-folded layers with every nearest
    upsampling as :func:`upsample_as_conv_transpose`. ``ValueError`` names anything unsupported."""
    det = getattr(detector, "net", detector)
    if not isinstance(det, nn.Sequential):
        raise ValueError(f"the auto_lirpa backend needs a HeatmapDetector or nn.Sequential, got {type(detector).__name__}")
    layers: list[nn.Module] = [SemanticPerturbation(x0[0].detach())]
    tau = net_input_clamp(detector)
    if tau > 0:
        layers.append(_Clamp(tau))
    channels = 1
    for m in fold_batchnorm(det):
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros":
                raise ValueError(f"the auto_lirpa backend supports only zero-padded convolutions, this model has "
                                 f"padding_mode={m.padding_mode!r}; use backend='native'")
            channels = m.out_channels
            layers.append(m)
        elif isinstance(m, nn.Upsample):
            layers.append(upsample_as_conv_transpose(m, channels))
        elif isinstance(m, (nn.ReLU, nn.Identity, nn.Dropout)):
            layers.append(m)
        else:
            raise ValueError(f"the auto_lirpa backend does not support layer {type(m).__name__}; use backend='native'")
    return nn.Sequential(*layers, nn.Flatten()).eval()


def full_backward_gb(net: nn.Sequential, x0: torch.Tensor) -> float:
    """Rough memory (GB) of backward intermediate bounds: two float32 ``n x n`` coefficient
    matrices for the largest layer (``n`` neurons), the dominant term of auto_LiRPA's CROWN."""
    theta = torch.tensor([[1.0, 0.0]], dtype=x0.dtype, device=x0.device)
    sizes = []
    with torch.no_grad():
        x = theta
        for m in net:
            x = m(x)
            sizes.append(x[0].numel())
    return 2 * 4 * max(sizes) ** 2 / 1e9


def certify_lirpa(ctx: FrameContext, alpha: float, beta: float, radius: float,
                  method: str = "CROWN") -> tuple[list[float], list[str], list[float]]:
    """r*, state (proven / exhausted) and seconds per keypoint from auto_LiRPA bounds of
    ``H_q - H_s`` (q = nominal cell, every other cell s) over the whole box."""
    if method not in METHODS:
        raise ValueError(f"unknown auto_LiRPA method {method!r}; choose one of {', '.join(METHODS)}")
    lirpa = import_lirpa()
    net = lirpa_network(ctx.detector, ctx.x0).to(ctx.x0.device)
    if method in _FULL_BACKWARD:
        gb = full_backward_gb(net, ctx.x0)
        if gb > FULL_BACKWARD_MAX_GB:
            raise ValueError(f"auto_LiRPA {method} bounds every intermediate layer backward, about {gb:.0f} GB for "
                             f"this model (more than {FULL_BACKWARD_MAX_GB:g} GB); use method='CROWN' (backward "
                             f"bounds on forward-mode intermediate bounds) or 'IBP'")
    dtype, device = ctx.x0.dtype, ctx.x0.device
    theta0 = torch.tensor([[1.0, 0.0]], dtype=dtype, device=device)
    try:
        bounded = lirpa.BoundedModule(net, theta0, device=device, verbose=0)
        ptb = lirpa.PerturbationLpNorm(norm=np.inf, x_L=torch.tensor([[1.0 - alpha, -beta]], dtype=dtype, device=device),
                                       x_U=torch.tensor([[1.0 + alpha, beta]], dtype=dtype, device=device))
        theta = lirpa.BoundedTensor(theta0, ptb)
    except Exception as e:  # auto_LiRPA parses the graph here: report it as one clear error
        raise LirpaError(f"auto_LiRPA could not build bounds for this model "
                           f"({' -> '.join(type(m).__name__ for m in net)}): {type(e).__name__}: {e}") from e
    n_k, hw = ctx.dist.shape
    h, w = ctx.heatmap_size
    dist = ctx.dist.cpu()
    rstar, times = [], []
    for k in range(n_k):
        t0 = time.perf_counter()
        q = int(ctx.cells[k, 0]) * w + int(ctx.cells[k, 1])
        others = torch.tensor([s for s in range(hw) if s != q])
        lbs = []
        for i in range(0, len(others), ROWS_PER_CALL):
            ss = others[i:i + ROWS_PER_CALL]
            C = torch.zeros(1, len(ss), n_k * hw, dtype=dtype, device=device)
            C[0, torch.arange(len(ss)), k * hw + q] = 1.0
            C[0, torch.arange(len(ss)), k * hw + ss.to(device)] = -1.0
            try:
                with torch.no_grad() if method == "IBP" else torch.enable_grad():
                    lb, _ = bounded.compute_bounds(x=(theta,), C=C, method=METHODS[method], bound_upper=False)
            except Exception as e:
                raise LirpaError(f"auto_LiRPA failed computing {method} bounds: {type(e).__name__}: {e}") from e
            lbs.append(lb.detach()[0].cpu())
        lb = torch.cat(lbs)
        failing = others[lb <= ctx.tol]
        rstar.append(float(dist[k, failing].max()) if failing.numel() else 0.0)
        times.append(time.perf_counter() - t0)
    return rstar, ["proven" if r <= radius else "exhausted" for r in rstar], times
