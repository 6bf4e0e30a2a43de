"""Heatmap keypoint detector family built only from bound-friendly layers.

The network is a plain ``nn.Sequential`` of Conv2d / BatchNorm2d / ReLU blocks, an optional
nearest-neighbour ``Upsample`` (output stride 2) and a final 1x1 ``Conv2d`` that produces one
heatmap per keypoint. No softmax or sigmoid inside: the argmax is taken outside the network, so a
linear bound propagator sees only Conv, BN (foldable into Conv), ReLU and Upsample.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch
from torch import nn


class HeatmapConfig:
    """What :class:`DetectorConfig` and the graph import's ``ModelSpec`` share: the heatmap size of
    their input geometry and a checked dict round trip (``KIND`` names the class in errors)."""

    KIND = "config"

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """(height, width) of the output heatmaps."""
        return self.input_height // self.output_stride, self.input_width // self.output_stride

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown {cls.KIND} keys: {sorted(unknown)}")
        return cls(**d)


@dataclass
class DetectorConfig(HeatmapConfig):
    """Architecture and input geometry of a :class:`HeatmapDetector`.

    ``input_width`` x ``input_height`` is the network input (gray, values in [0, 1]);
    ``output_stride`` (2 or 4) is input pixels per heatmap cell.
    """

    num_keypoints: int = 4
    keypoint_names: list[str] = field(default_factory=list)
    input_width: int = 128
    input_height: int = 96
    output_stride: int = 2
    stem_width: int = 12
    width: int = 24
    depth: int = 3
    head_width: int = 12
    target: str = "chessboard_9x6"
    # Channel counts of every conv layer after pruning (None = derived from the widths above).
    channels: list[int] | None = None
    # Dilation of each of the ``depth`` stride-4 blocks (None = all 1). Dilation widens the
    # receptive field at no cost in parameters; a linear bound propagator handles it like any conv.
    dilations: list[int] | None = None
    # Keep every kernel of the first conv at zero sum (projected after each optimiser step): a
    # brightness shift b then cancels exactly in the first layer wherever no pixel of the kernel's
    # window is clipped or zero-padded, so the bounds see almost no brightness at all.
    zero_mean_stem: bool = False
    # Padding of the first conv: "zeros" or "replicate". With "replicate" every kernel tap reads a
    # (perturbed) image pixel, so with ``zero_mean_stem`` brightness cancels at the border too.
    stem_padding: str = "zeros"
    # The network first clamps its input to [input_clamp, 1 - input_clamp] (0 = off). A pixel that
    # the perturbation's clip holds at 0 or 1 (pure black / white) then reaches the stem as the
    # same constant for every (c, b) of a box with beta <= input_clamp: exact, instead of a clip
    # kink the bounds must relax. Pixels strictly inside the range are unchanged.
    input_clamp: float = 0.0
    KIND = "detector config"

    def __post_init__(self) -> None:
        if self.output_stride not in (2, 4):
            raise ValueError(f"output_stride must be 2 or 4, got {self.output_stride}")
        if self.input_width % 4 or self.input_height % 4:
            raise ValueError("input_width and input_height must be multiples of 4")
        if self.num_keypoints < 1 or self.depth < 0:
            raise ValueError("num_keypoints must be >= 1 and depth >= 0")
        if self.keypoint_names and len(self.keypoint_names) != self.num_keypoints:
            raise ValueError("keypoint_names must have num_keypoints entries")
        if not 0.0 <= self.input_clamp < 0.5:
            raise ValueError(f"input_clamp must be in [0, 0.5), got {self.input_clamp}")
        if self.stem_padding not in ("zeros", "replicate"):
            raise ValueError(f"stem_padding must be 'zeros' or 'replicate', got {self.stem_padding!r}")
        if self.dilations is not None and (len(self.dilations) != self.depth or min(self.dilations, default=1) < 1):
            raise ValueError(f"dilations must be {self.depth} integers >= 1, got {self.dilations}")

    def conv_channels(self) -> list[int]:
        """Output channels of every hidden conv layer, in order (the head excluded)."""
        if self.channels is not None:
            return list(self.channels)
        chans = [self.stem_width, self.width] + [self.width] * self.depth
        if self.output_stride == 2:
            chans.append(self.head_width)
        return chans


def _block(cin: int, cout: int, stride: int, dilation: int = 1, padding_mode: str = "zeros") -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False,
                      padding_mode=padding_mode),
            nn.BatchNorm2d(cout), nn.ReLU()]


class HeatmapDetector(nn.Module):
    """Conv-BN-ReLU encoder at stride 4 (optionally dilated), optional x2 nearest upsampling, 1x1 heatmap head.

    ``forward(x)`` maps a (N, 1, H, W) tensor in [0, 1] to (N, K, H/s, W/s) heatmaps.
    """

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        chans = config.conv_channels()
        expected = 2 + config.depth + (1 if config.output_stride == 2 else 0)
        if len(chans) != expected:
            raise ValueError(f"config.channels has {len(chans)} entries, expected {expected}")
        dilations = [1, 1] + list(config.dilations or [1] * config.depth)
        layers: list[nn.Module] = []
        cin = 1
        for i, cout in enumerate(chans[: 2 + config.depth]):
            layers += _block(cin, cout, 2 if i < 2 else 1, dilations[i], config.stem_padding if i == 0 else "zeros")
            cin = cout
        if config.output_stride == 2:
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            layers += _block(cin, chans[-1], 1)
            cin = chans[-1]
        layers.append(nn.Conv2d(cin, config.num_keypoints, 1))
        self.net = nn.Sequential(*layers)
        self.apply_constraints()

    def apply_constraints(self) -> None:
        """Project the weights onto the architecture's constraints (``zero_mean_stem``); the
        training loops call it after every optimiser step."""
        if self.config.zero_mean_stem:
            with torch.no_grad():
                w = self.net[0].weight
                w.sub_(w.mean(dim=(1, 2, 3), keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.input_clamp > 0:
            x = x.clamp(self.config.input_clamp, 1.0 - self.config.input_clamp)
        return self.net(x)

    def sync_config(self) -> None:
        """Record the current conv widths in ``config.channels`` (after channel pruning)."""
        convs = [m for m in self.net if isinstance(m, nn.Conv2d)]
        self.config.channels = [c.out_channels for c in convs[:-1]]


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight and bias of ``conv`` followed by ``bn`` in eval form (running statistics) as one conv;
    ``bn=None``: the conv's own. Keeps the autograd graph to the parameters (detach for a copy)."""
    w, b = conv.weight, conv.bias
    if bn is None:
        return w, b
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b = ((b if b is not None else torch.zeros_like(bn.running_mean)) - bn.running_mean) * scale + bn.bias
    return w * scale.view(-1, 1, 1, 1), b


def fold_batchnorm(model: nn.Sequential) -> nn.Sequential:
    """Return an eval-mode copy of ``model`` with every BatchNorm2d folded into the Conv2d before it
    (:func:`fold_conv_bn`)."""
    out: list[nn.Module] = []
    mods = list(model)
    i = 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.Conv2d) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d):
            w, b = fold_conv_bn(m, mods[i + 1])
            conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                             m.dilation, m.groups, bias=True, padding_mode=m.padding_mode)
            conv.weight.data = w.detach().clone()
            conv.bias.data = b.detach().clone()
            out.append(conv)
            i += 2
        else:
            if isinstance(m, nn.BatchNorm2d):
                raise ValueError("BatchNorm2d not preceded by Conv2d cannot be folded")
            out.append(copy.deepcopy(m))
            i += 1
    return nn.Sequential(*out).eval()
