"""The one place that maps a camera frame to the network input tensor, and heatmap cells back.

A frame (H, W) uint8 gray or (H, W, 3) uint8 BGR of any size is converted to gray, resized
(``cv2.INTER_AREA``, aspect not preserved) to the model's ``input_width x input_height`` and
scaled to [0, 1]. Pixel coordinates follow OpenCV: the centre of pixel (0, 0) is (0.0, 0.0).
The same convention holds on every grid (frame pixels, input pixels, heatmap cells): a cell
``scale`` pixels wide has its centre at ``(v + 0.5) * scale - 0.5`` (:func:`grid_to_pixels`,
inverse :func:`pixels_to_grid`); every conversion in the package goes through these two.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class FrameGeometry:
    """Scale between the caller's frame and the network input."""

    frame_width: int
    frame_height: int
    input_width: int
    input_height: int

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): frame pixels per input pixel."""
        return self.frame_width / self.input_width, self.frame_height / self.input_height

    def input_to_frame(self, xy: np.ndarray) -> np.ndarray:
        """Map (..., 2) input-pixel coordinates to frame pixels."""
        return self._map(xy, grid_to_pixels)

    def frame_to_input(self, xy: np.ndarray) -> np.ndarray:
        """Map (..., 2) frame-pixel coordinates to input pixels."""
        return self._map(xy, pixels_to_grid)

    def _map(self, xy: np.ndarray, convert) -> np.ndarray:
        out = np.asarray(xy, dtype=np.float64).copy()
        for axis, scale in enumerate(self.scale):
            out[..., axis] = convert(out[..., axis], scale)
        return out


def grid_to_pixels(v, scale: float):
    """Pixel coordinate of grid coordinate ``v`` on a grid whose cells are ``scale`` pixels wide
    (cell centres map to cell centres); numpy arrays, tensors and floats alike."""
    return (v + 0.5) * scale - 0.5


def pixels_to_grid(v, scale: float):
    """Inverse of :func:`grid_to_pixels`: grid coordinate of pixel coordinate ``v``."""
    return (v + 0.5) / scale - 0.5


def validate_frame(image: np.ndarray) -> None:
    """Raise ``ValueError`` with a clear message unless ``image`` is a usable uint8 frame."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (gray or BGR), got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"image must have shape (H, W) or (H, W, 3), got {image.shape}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise ValueError(f"image is too small: {image.shape[1]}x{image.shape[0]} (need >= 8x8)")


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 gray from a gray, (H, W, 1) or BGR uint8 frame."""
    validate_frame(image)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image.reshape(image.shape[0], image.shape[1])


def preprocess(image: np.ndarray, input_width: int, input_height: int,
               color: str = "gray") -> tuple[torch.Tensor, FrameGeometry]:
    """Frame -> (1, C, input_height, input_width) float32 tensor in [0, 1] and its geometry
    (``color`` "gray": C = 1; "rgb" / "bgr": C = 3 in that order, a gray frame replicated)."""
    if color == "gray":
        img = to_gray(image)
    else:
        validate_frame(image)
        img = image.reshape(image.shape[0], image.shape[1], -1)
        img = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img
        img = img[:, :, ::-1] if color == "rgb" else img
    h, w = img.shape[:2]
    if (w, h) != (input_width, input_height):
        img = cv2.resize(np.ascontiguousarray(img), (input_width, input_height), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(np.ascontiguousarray(img)).float().div_(255.0)
    x = x[None, None] if x.dim() == 2 else x.permute(2, 0, 1)[None]
    return x, FrameGeometry(w, h, input_width, input_height)


def cell_centers(rows: np.ndarray, cols: np.ndarray, stride: int) -> np.ndarray:
    """Input-pixel (x, y) of the centre of heatmap cells (row, col) at output ``stride``."""
    rows = np.asarray(rows, dtype=np.float64)
    cols = np.asarray(cols, dtype=np.float64)
    return np.stack([grid_to_pixels(cols, stride), grid_to_pixels(rows, stride)], axis=-1)


def decode_heatmaps(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Argmax of every heatmap. (..., K, h, w) -> rows (..., K), cols (..., K), scores (..., K)."""
    flat = heatmaps.flatten(-2)
    scores, idx = flat.max(dim=-1)
    w = heatmaps.shape[-1]
    return idx // w, idx % w, scores
