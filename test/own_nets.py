"""Small random heatmap networks of every supported op, as a user would write them (shared by the
own-model tests; BatchNorm statistics randomised so that folding is exercised)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from usn_robust_keypoints.model.graph import ModelSpec


def cbr(cin: int, cout: int, stride: int = 1, **kw) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, kw.pop("padding", 1), bias=False, **kw),
                         nn.BatchNorm2d(cout), nn.ReLU())


class ResidualBlock(nn.Module):
    """conv-bn-relu-conv-bn plus the input (or a 1x1 conv-bn projection when the width changes), relu."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(cbr(cin, cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = nn.Identity() if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False),
                                                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


class DownBlock(nn.Module):
    """A ResNet downsampling block: stride-2 3x3 conv branch + stride-2 1x1 projection shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(cbr(cin, cout, 2), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


class ResNetLike(nn.Module):
    """Stride-4 stem of plain strided convs, residual blocks at constant resolution, 1x1 head."""

    def __init__(self, k: int = 2, w: int = 6, blocks: int = 2, cin: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(cbr(cin, w, 2), cbr(w, w, 2))
        self.blocks = nn.Sequential(*[ResidualBlock(w if i else w, w + 2 * (i == blocks - 1)) for i in range(blocks)])
        self.head = nn.Conv2d(w + 2, k, 1)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


class UNetLike(nn.Module):
    """Two-level encoder (max pool), upsampling decoder with a concat skip, output stride 2."""

    def __init__(self, k: int = 2, w: int = 4, cin: int = 1, scale_up: bool = True) -> None:
        super().__init__()
        self.scale_up = scale_up  # False: F.interpolate to the skip's size (x.shape), bilinear
        self.enc1 = cbr(cin, w, 2)
        self.enc2 = cbr(w, 2 * w)
        self.pool = nn.MaxPool2d(2)
        self.mid = cbr(2 * w, 2 * w)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec = cbr(4 * w, w)
        self.head = nn.Conv2d(w, k, 1)

    def forward(self, x):
        s = self.enc2(self.enc1(x))
        y = self.mid(self.pool(s))
        y = self.up(y) if self.scale_up else F.interpolate(y, size=s.shape[-2:], mode="bilinear")
        return self.head(self.dec(torch.cat([y, s], dim=1)))


class Functional(nn.Module):
    """Functional calls: leaky_relu, max/avg pool, interpolate, scalar affine, in-place add."""

    def __init__(self, k: int = 2) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, 2, 1)
        self.c2 = nn.Conv2d(4, 4, 3, 1, 1)
        self.c3 = nn.Conv2d(4, k, 1)

    def forward(self, x):
        x = (x - 0.5) * 2.0
        y = F.leaky_relu(self.c1(x), 0.2)
        y = F.max_pool2d(y, 3, 2, 1)
        z = F.avg_pool2d(F.relu(self.c2(y)), 3, 1, 1)
        z = F.interpolate(z + y, scale_factor=2, mode="bilinear", align_corners=False)
        return self.c3(z)


def zoo(seed: int) -> dict[str, tuple[nn.Module, ModelSpec]]:
    """Every supported op in some net: name -> (eval-mode module with random weights, spec)."""
    torch.manual_seed(seed)
    g = ModelSpec(32, 32)
    nets = {
        "conv_padding_modes": (nn.Sequential(
            nn.Conv2d(1, 4, 3, 2, 1, padding_mode="reflect"), nn.BatchNorm2d(4), nn.ReLU(),
            nn.Conv2d(4, 4, 3, 1, 2, dilation=2, groups=2), nn.ReLU(),
            nn.Conv2d(4, 4, 3, padding="same", padding_mode="replicate"), nn.BatchNorm2d(4), nn.Dropout(0.1), nn.ReLU(),
            nn.Conv2d(4, 2, 1)), g),
        "conv_circular": (nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1, padding_mode="circular"), nn.ReLU(),
                                        nn.Conv2d(4, 2, 3, 1, 1, padding_mode="circular")), g),
        "leaky_pools": (nn.Sequential(
            nn.Conv2d(1, 4, 3, 1, 1), nn.LeakyReLU(0.1), nn.MaxPool2d(3, 2, 1), nn.Conv2d(4, 4, 3, 1, 1), nn.ReLU(),
            nn.AvgPool2d(2), nn.Conv2d(4, 4, 3, 1, 1), nn.BatchNorm2d(4), nn.LeakyReLU(0.3), nn.Conv2d(4, 2, 1)), g),
        "upsampling": (nn.Sequential(
            nn.Conv2d(1, 4, 3, 4, 1), nn.ReLU(), nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(4, 4, 3, 1, 1),
            nn.ReLU(), nn.Conv2d(4, 4, 3, 2, 1), nn.ReLU(), nn.UpsamplingBilinear2d(scale_factor=2),
            nn.Conv2d(4, 4, 3, 1, 1), nn.ReLU(), nn.Upsample(scale_factor=2), nn.Conv2d(4, 2, 3, 1, 1)), g),
        "conv_transpose": (nn.Sequential(
            nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(6, 4, 4, 2, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
            nn.ConvTranspose2d(4, 4, 3, 2, 1, output_padding=1), nn.ReLU(), nn.ConvTranspose2d(4, 2, 1)), g),
        "resnet_like": (ResNetLike(), g),
        "unet_like": (UNetLike(), g),
        "functional": (Functional(), g),
        "unet_sized_interpolate": (UNetLike(scale_up=False), g),
        "resnet_downsampling": (nn.Sequential(cbr(1, 4, 2), DownBlock(4, 6), ResidualBlock(6, 6), nn.Conv2d(6, 2, 1)), g),
        "color_normalised": (ResNetLike(cin=3, blocks=1),
                             ModelSpec(32, 32, color="rgb", mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3])),
    }
    for m, _ in nets.values():
        for b in m.modules():
            if isinstance(b, nn.BatchNorm2d):
                b.running_mean.uniform_(-0.2, 0.2)
                b.running_var.uniform_(0.5, 2.0)
                b.weight.data.uniform_(0.5, 1.5)
                b.bias.data.uniform_(-0.2, 0.2)
        m.eval()
    return nets
