"""The disk specification: which heatmap cells a keypoint may move to, and what the bounds prove.

For keypoint k with nominal argmax cell p and radius r (frame pixels), the claim is: for every
theta in the box, the argmax cell of heatmap k has its centre within r frame pixels of the centre
of p. It holds on a sub-box when every cell s farther than r is *strictly* dominated by some cell
q within r: ``min_theta [H_q(theta) - H_s(theta)] > tol`` (an outside cell dominated by any cell
cannot be an argmax, ties included). The dominating q may differ per s and per sub-box.

For a sub-box we compute, for every cell s, ``req(s) = min(d(s), min{d(q) : q dominates s})``:
the spec holds at radius r iff ``max_s req(s) <= r``. So one bound computation gives the smallest
provable radius ``rho = max_s req(s)`` of the sub-box, and ``r* = max over sub-boxes of rho`` is
the distance of a cell (monotone: proven at r* => proven at every larger radius).
"""

from __future__ import annotations

import numpy as np
import torch

from ..model.preprocess import FrameGeometry, cell_centers


def cell_distances(geometry: FrameGeometry, stride: int, heatmap_size: tuple[int, int],
                   cell: tuple[int, int]) -> np.ndarray:
    """Frame-pixel distance (h*w,) from the centre of ``cell = (row, col)`` to every cell centre
    (anisotropic frame scale allowed)."""
    h, w = heatmap_size
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    xy = geometry.input_to_frame(cell_centers(rows.ravel(), cols.ravel(), stride))
    p = geometry.input_to_frame(cell_centers(np.array([cell[0]]), np.array([cell[1]]), stride))[0]
    return np.hypot(xy[:, 0] - p[0], xy[:, 1] - p[1])


def candidate_cells(dist: np.ndarray, radius: float, max_cells: int = 25) -> np.ndarray:
    """Flat indices of the dominating-cell candidates q: the cells within ``radius`` (at least the
    nominal cell and its 8 neighbours), nearest first, at most ``max_cells``."""
    order = np.argsort(dist, kind="stable")
    n_in = int(np.sum(dist <= radius + 1e-9))
    return order[: min(max(n_in, 9), max_cells)]


def pair_margins(lower_q: torch.Tensor, upper_s: torch.Tensor) -> torch.Tensor:
    """Exact ``min over the sub-box of [lower_q - upper_s]`` (N, Q, S) from the lower forms of the
    candidate cells ``lower_q (N, 3, Q)`` and the upper forms of the other cells ``upper_s (N, 3, S)``."""
    diff = lower_q.unsqueeze(-1) - upper_s.unsqueeze(-2)  # (N, 3, Q, S)
    return diff[:, 0] - diff[:, 1].abs() - diff[:, 2].abs()


def requirements_from_margins(margin: torch.Tensor, dist_q: torch.Tensor, dist_s: torch.Tensor,
                              tol: float | torch.Tensor) -> torch.Tensor:
    """``req(s)`` (N, S) from proven lower bounds ``margin (N, Q, S)`` of ``H_q - H_s`` and the
    distances ``dist_q (Q,)``, ``dist_s (S,)`` (see the module doc)."""
    inf = torch.full((), float("inf"), dtype=dist_q.dtype, device=dist_q.device)
    need = torch.where(margin > tol, dist_q.view(1, -1, 1), inf).amin(dim=1)  # (N, S)
    return torch.minimum(need, dist_s.view(1, -1))


def requirements(lower_q: torch.Tensor, upper_s: torch.Tensor, dist_q: torch.Tensor,
                 dist_s: torch.Tensor, tol: float | torch.Tensor) -> torch.Tensor:
    """``req(s)`` (N, S) for N sub-boxes from the lower forms of the candidate cells
    ``lower_q (N, 3, Q)``, the upper forms of the other cells ``upper_s (N, 3, S)`` and their
    distances ``dist_q (Q,)``, ``dist_s (S,)`` (see the module doc)."""
    return requirements_from_margins(pair_margins(lower_q, upper_s), dist_q, dist_s, tol)
