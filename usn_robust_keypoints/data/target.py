"""The planar fiducial target: an OpenCV-style chessboard with 9 x 6 inner corners (10 x 7 squares).

Named keypoints are the four extreme inner corners. Geometrically the corner grid is symmetric
under a 180-degree turn (declared in :attr:`ChessboardTarget.symmetries`, used by evaluation), but
its appearance is not: square (a, b) is black when a + b is even, so the corner squares on the
``a = 0`` short side are black and those on the ``a = 9`` side are white (on the real opencv-doc
board the outer squares are cut by the paper edge, but the ``a = 0`` side is still darker). Labels are put in a
canonical order by that colour (:func:`ChessboardTarget.canonical_order`), which makes every
keypoint name identifiable from the image at any in-plane rotation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChessboardTarget:
    """Chessboard with ``cols x rows`` inner corners."""

    cols: int = 9
    rows: int = 6

    @property
    def keypoint_grid(self) -> list[tuple[int, int]]:
        """Grid indices (i along cols, j along rows) of the named keypoints."""
        c, r = self.cols - 1, self.rows - 1
        return [(0, 0), (c, 0), (c, r), (0, r)]

    @property
    def keypoint_names(self) -> list[str]:
        return [f"corner_{i}_{j}" for i, j in self.keypoint_grid]

    @property
    def keypoint_indices(self) -> list[int]:
        """Indices of the named keypoints in the row-major list of all inner corners."""
        return [j * self.cols + i for i, j in self.keypoint_grid]

    @property
    def symmetries(self) -> list[list[int]]:
        """Keypoint permutations that map the corner geometry onto itself (identity first)."""
        return [[0, 1, 2, 3], [2, 3, 0, 1]]

    def render(self, square_px: int, margin_px: int) -> tuple[np.ndarray, np.ndarray]:
        """Board image (uint8, white margin) and its inner corners (rows*cols, 2) in its pixels."""
        nx, ny = self.cols + 1, self.rows + 1
        h, w = ny * square_px + 2 * margin_px, nx * square_px + 2 * margin_px
        img = np.full((h, w), 255, np.uint8)
        for b in range(ny):
            for a in range(nx):
                if (a + b) % 2 == 0:
                    y0, x0 = margin_px + b * square_px, margin_px + a * square_px
                    img[y0 : y0 + square_px, x0 : x0 + square_px] = 0
        jj, ii = np.mgrid[0 : self.rows, 0 : self.cols]
        corners = np.stack([margin_px + (ii + 1) * square_px - 0.5, margin_px + (jj + 1) * square_px - 0.5], -1)
        return img, corners.reshape(-1, 2).astype(np.float64)

    def canonical_order(self, corners: np.ndarray, image: np.ndarray) -> np.ndarray:
        """Reorder all inner corners (rows*cols, 2), row-major, so that the short side of
        corners (0, 0) and (0, rows-1) is the one with the dark outer squares. ``image`` is the gray photo the corners were found in."""
        corners = np.asarray(corners, np.float64).reshape(self.rows * self.cols, 2)
        g = corners.reshape(self.rows, self.cols, 2)

        def short_side_value(grid: np.ndarray) -> float:
            # mean gray of the two outer squares beyond corners (0, 0) and (0, rows-1)
            vals = []
            for corner, inner in ((grid[0, 0], grid[1, 1]), (grid[-1, 0], grid[-2, 1])):
                p = corner + 0.35 * (corner - inner)
                x = int(np.clip(round(p[0]), 2, image.shape[1] - 3))
                y = int(np.clip(round(p[1]), 2, image.shape[0] - 3))
                vals.append(float(image[y - 2 : y + 3, x - 2 : x + 3].mean()))
            return sum(vals)

        turned = g[::-1, ::-1]
        if short_side_value(turned) < short_side_value(g):
            g = turned
        return np.ascontiguousarray(g.reshape(-1, 2))

    def keypoints_from_corners(self, corners: np.ndarray) -> np.ndarray:
        """The named keypoints (K, 2) from all inner corners in canonical order."""
        return np.asarray(corners)[self.keypoint_indices]


CHESSBOARD_9X6 = ChessboardTarget()
