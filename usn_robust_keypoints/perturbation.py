"""The semantic perturbation: contrast c and brightness b applied to the network input.

One convention, used identically by sampling, training augmentation, prediction and bounds::

    x(theta) = clip(c * x0 + b, 0, 1),   theta = (c, b),
    c in [1 - alpha, 1 + alpha],  b in [-beta, beta],

where ``x0`` is the pre-processed network input (gray, values in [0, 1]). Brightness-only is
``alpha = 0``; contrast-only is ``beta = 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PerturbationBox:
    """Box of perturbation parameters: c in [1-alpha, 1+alpha], b in [-beta, beta]."""

    alpha: float = 0.02
    beta: float = 0.02

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.alpha >= 1:
            raise ValueError(f"alpha must be < 1 (contrast stays positive), got {self.alpha}")

    @property
    def lower(self) -> tuple[float, float]:
        """(c_min, b_min)."""
        return (1.0 - self.alpha, -self.beta)

    @property
    def upper(self) -> tuple[float, float]:
        """(c_max, b_max)."""
        return (1.0 + self.alpha, self.beta)

    @property
    def limits(self) -> tuple[float, float, float, float]:
        """``(c_lo, c_hi, b_lo, b_hi)``: the row layout of the certifier's sub-box tensors."""
        return (1.0 - self.alpha, 1.0 + self.alpha, 0.0 - self.beta, self.beta)

    def tensor(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> torch.Tensor:
        """The box as a ``(4,)`` tensor ``(c_lo, c_hi, b_lo, b_hi)`` (the one way the engine gets it)."""
        return torch.tensor(self.limits, dtype=dtype, device=device)

    def corners(self) -> torch.Tensor:
        """The 4 corners of the box as a (4, 2) tensor of (c, b)."""
        (cl, bl), (cu, bu) = self.lower, self.upper
        return torch.tensor([[cl, bl], [cl, bu], [cu, bl], [cu, bu]], dtype=torch.float64)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n >= 4`` parameter vectors (n, 2): the 4 corners, a quarter of the rest on the box
        edges, the others uniform inside."""
        if n < 4:
            raise ValueError("sample at least the 4 corners")
        lo = torch.tensor(self.lower, dtype=torch.float64)
        hi = torch.tensor(self.upper, dtype=torch.float64)
        pts = lo + (hi - lo) * torch.rand(n, 2, generator=generator, dtype=torch.float64)
        pts[:4] = self.corners()
        n_edge = (n - 4) // 4
        edge = pts[4 : 4 + n_edge]  # a view: pin one coordinate of each to a box side
        side = torch.randint(0, 4, (n_edge,), generator=generator)
        dim, end = side % 2, side // 2
        edge[torch.arange(n_edge), dim] = torch.where(end == 0, lo[dim], hi[dim])
        return pts


def apply_perturbation(x: torch.Tensor, c: float | torch.Tensor, b: float | torch.Tensor) -> torch.Tensor:
    """``clip(c * x + b, 0, 1)``; ``c`` and ``b`` are scalars or per-sample tensors of shape (N,)."""
    if isinstance(c, torch.Tensor) and c.dim() == 1:
        c = c.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    if isinstance(b, torch.Tensor) and b.dim() == 1:
        b = b.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    return torch.clamp(c * x + b, 0.0, 1.0)


class SemanticPerturbation(nn.Module):
    """``theta (N, 2) -> x(theta) (N, 1, H, W)`` for a fixed image ``x0`` as an ``nn.Module``.

    Written with ``nn.Linear`` over theta (weight columns ``[x0.flatten(), 1]``) and the clip as
    ``1 - relu(1 - relu(z))`` so that graph-based bound tools (auto_LiRPA) parse it exactly.
    """

    def __init__(self, x0: torch.Tensor) -> None:
        super().__init__()
        if x0.dim() != 3:
            raise ValueError("x0 must have shape (1, H, W)")
        self.shape = tuple(x0.shape)
        flat = x0.reshape(-1, 1)
        self.linear = nn.Linear(2, flat.shape[0], bias=False)
        self.linear.weight.data = torch.cat([flat, torch.ones_like(flat)], dim=1)
        self.linear.weight.requires_grad_(False)

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        z = self.linear(theta)
        z = 1.0 - torch.relu(1.0 - torch.relu(z))
        return z.view(theta.shape[0], *self.shape)
