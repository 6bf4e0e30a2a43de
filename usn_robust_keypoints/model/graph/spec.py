"""``ModelSpec``: what the package must know about a user's heatmap network besides its graph."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..detector import HeatmapConfig

COLORS = ("gray", "rgb", "bgr")


@dataclass
class ModelSpec(HeatmapConfig):
    """Input geometry, colour, normalisation and keypoints of an imported heatmap network.

    The network maps a ``(1, C, input_height, input_width)`` image in [0, 1] (``C`` = 1 for
    ``color="gray"``, 3 for ``"rgb"``/``"bgr"``, the channel order the network expects) to ``(1, K,
    H / output_stride, W / output_stride)`` heatmaps (logits: the keypoint is the argmax cell).
    ``mean``/``std`` (one value per channel) normalise the image *inside* the certified model, after
    the perturbation ``clip(c * x + b, 0, 1)``, exactly as the network was trained. ``output_stride``
    and ``num_keypoints`` are checked against the traced graph (None = taken from it).
    ``symmetries`` lists keypoint index permutations that describe the same object (evaluation).
    """

    input_width: int
    input_height: int
    color: str = "gray"
    mean: list[float] | None = None
    std: list[float] | None = None
    output_stride: int | None = None
    keypoint_names: list[str] = field(default_factory=list)
    num_keypoints: int | None = None
    symmetries: list[list[int]] | None = None
    input_clamp: float = 0.0  # set by the import when the graph starts with clamp(x, tau, 1 - tau)
    KIND = "model spec"

    def __post_init__(self) -> None:
        if self.color not in COLORS:
            raise ValueError(f"color must be one of {COLORS}, got {self.color!r}")
        if not (isinstance(self.input_width, int) and isinstance(self.input_height, int)
                and self.input_width >= 8 and self.input_height >= 8):
            raise ValueError(f"input size must be integers >= 8, got {self.input_width}x{self.input_height}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is not None:
                v = [float(x) for x in (v if isinstance(v, (list, tuple)) else [v])]
                if len(v) == 1:
                    v = v * self.in_channels
                if len(v) != self.in_channels:
                    raise ValueError(f"{name} needs {self.in_channels} values for color={self.color!r}, got {len(v)}")
                setattr(self, name, v)
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"std must be > 0, got {self.std}")
        if self.keypoint_names and self.num_keypoints is not None and len(self.keypoint_names) != self.num_keypoints:
            raise ValueError("keypoint_names must have num_keypoints entries")
        if self.output_stride is not None and self.output_stride < 1:
            raise ValueError(f"output_stride must be >= 1, got {self.output_stride}")

    @property
    def in_channels(self) -> int:
        """Image channels the network reads (1 gray, 3 colour)."""
        return 1 if self.color == "gray" else 3
