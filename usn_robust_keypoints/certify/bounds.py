"""Forward-mode affine bounds of a folded detector over boxes of the 2 perturbation parameters.

Every activation of the network carries a *lower* and an *upper* affine form of the normalised
parameters ``e = (e1, e2) in [-1, 1]^2`` of its sub-box, where ``c = c_mid + c_rad * e1`` and
``b = b_mid + b_rad * e2``. A form is a tensor ``(N, 3, C, H, W)``: index 0 the constant, 1 the
coefficient of ``e1``, 2 the coefficient of ``e2``. For every ``e`` in the box,
``lower(e) <= activation(e) <= upper(e)`` (sound, up to float rounding, which
:data:`SAFETY` covers in the certificate).

Everything here is pure torch (no ``.item()``), so bounds are differentiable w.r.t. the network
weights and can be used as a training loss.

Layer handlers live in :data:`HANDLERS` (type -> function); unsupported layers raise a clear
``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..model.detector import fold_conv_bn


@dataclass
class FoldedConv:
    """A Conv2d with BatchNorm folded in; ``weight``/``bias`` keep the autograd graph of the
    original parameters when folded with ``differentiable=True``."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    padding_mode: str = "zeros"

    @property
    def kernel_size(self) -> tuple[int, int]:
        return tuple(self.weight.shape[-2:])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x, padding = self.pad(x)
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)

    def pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``x`` padded explicitly for ``padding_mode='replicate'`` (copies of edge pixels: exact
        on forms too) and the padding left to the convolution (zeros)."""
        if self.padding_mode == "zeros":
            return x, self.padding
        ph, pw = self.padding
        return F.pad(x, (pw, pw, ph, ph), mode=self.padding_mode), (0, 0)


class InputClamp(nn.Module):
    """The detector's input clamp to ``[tau, 1 - tau]`` (``DetectorConfig.input_clamp``), first in
    :func:`bound_layers`. :func:`propagate` and the backward pass fold it into the perturbation's
    clip, ``clip(clip(z, 0, 1), tau, 1 - tau) = clip(z, tau, 1 - tau)``, so it costs no extra relaxation."""

    def __init__(self, tau: float) -> None:
        super().__init__()
        self.tau = float(tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(self.tau, 1.0 - self.tau)


@dataclass
class Forms:
    """Lower and upper affine forms ``(N, 3, C, H, W)`` of one activation over ``N`` sub-boxes."""

    lower: torch.Tensor
    upper: torch.Tensor

    @property
    def n(self) -> int:
        return self.lower.shape[0]


def concrete_min(form: torch.Tensor) -> torch.Tensor:
    """Minimum of an affine form over ``e in [-1, 1]^2``: ``a0 - |a1| - |a2|`` (exact)."""
    return form[:, 0] - form[:, 1].abs() - form[:, 2].abs()


def concrete_max(form: torch.Tensor) -> torch.Tensor:
    """Maximum of an affine form over ``e in [-1, 1]^2``: ``a0 + |a1| + |a2|`` (exact)."""
    return form[:, 0] + form[:, 1].abs() + form[:, 2].abs()


def theta_maps(boxes: torch.Tensor) -> torch.Tensor:
    """Affine maps ``(N, 2, 3)`` from the normalised parameters ``e in [-1, 1]^2`` to ``theta``:
    ``theta_i = m[i, 0] + m[i, 1] e1 + m[i, 2] e2`` (row 0: c, row 1: b). Sub-boxes ``(N, 4) =
    (c_lo, c_hi, b_lo, b_hi)`` become diagonal maps; ``(N, 2, 3)`` maps (parallelograms) pass through."""
    if boxes.dim() == 3:
        return boxes
    cm, cr = (boxes[:, 0] + boxes[:, 1]) / 2, (boxes[:, 1] - boxes[:, 0]) / 2
    bm, br = (boxes[:, 2] + boxes[:, 3]) / 2, (boxes[:, 3] - boxes[:, 2]) / 2
    zero = torch.zeros_like(cm)
    return torch.stack([torch.stack([cm, cr, zero], 1), torch.stack([bm, zero, br], 1)], 1)


def input_terms(x0: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``z = c * x0 + b = z0 + z1 e1 + z2 e2`` per pixel, each ``(N, 1, H, W)``, for sub-boxes or
    parallelograms ``boxes`` (:func:`theta_maps`); ``x0`` is ``(1, 1, H, W)`` or ``(N, 1, H, W)``."""
    m = theta_maps(boxes.to(x0.dtype)).view(-1, 2, 3, 1, 1, 1)
    x0 = x0.expand(m.shape[0], *x0.shape[1:])
    return tuple(m[:, 0, i] * x0 + m[:, 1, i] for i in range(3))


def input_forms(x0: torch.Tensor, boxes: torch.Tensor) -> Forms:
    """Exact forms of ``z = c * x0 + b`` (before the clip) for sub-boxes ``(N, 4) = (c_lo, c_hi,
    b_lo, b_hi)`` or parallelograms ``(N, 2, 3)`` (:func:`theta_maps`)."""
    z = torch.stack(input_terms(x0, boxes), dim=1)
    return Forms(z, z)


def relu_forms(f: Forms) -> Forms:
    """Sound forms of ``relu(z)``: exact where the form is provably >= 0 or <= 0 over the box;
    else the upper form is the chord of ``relu`` over the range ``[lo, hi]`` of the upper form and
    the lower form is ``lambda * lower`` with the adaptive slope ``lambda = [centre of lower > 0]``
    (``lambda`` is 1 when the lower form is >= 0 on the box, 0 when it is <= 0, and any
    ``lambda in [0, 1]`` is sound: ``relu(z) >= relu(L(e)) >= lambda * L(e)``)."""
    u0 = f.upper[:, 0]
    spread = f.upper[:, 1].abs() + f.upper[:, 2].abs()
    lo, hi = u0 - spread, u0 + spread
    # Upper: relu(z) <= relu(U(e)) <= slope * (U(e) - min(lo, 0)); the slope is 1 where lo >= 0,
    # 0 where hi <= 0 and the chord's hi / (hi - lo) in between.
    hi_pos, lo_neg = hi.clamp_min(0), lo.clamp_max(0)
    slope = hi_pos / (hi_pos - lo_neg).clamp_min(1e-30)
    upper = torch.cat([(slope * (u0 - lo_neg)).unsqueeze(1), f.upper[:, 1:] * slope.unsqueeze(1)], dim=1)
    lower = f.lower * (f.lower[:, 0] > 0).to(f.lower.dtype).unsqueeze(1)
    return Forms(lower, upper)


def clip01_forms(f: Forms) -> Forms:
    """Forms of ``clip(z, 0, 1) = 1 - relu(1 - relu(z))``: exact where ``z`` stays in [0, 1]."""
    f = relu_forms(f)
    neg = Forms(_affine_shift(-f.upper, 1.0), _affine_shift(-f.lower, 1.0))  # 1 - z
    g = relu_forms(neg)
    return Forms(_affine_shift(-g.upper, 1.0), _affine_shift(-g.lower, 1.0))


def clamp_forms(f: Forms, tau: float) -> Forms:
    """Forms of ``clip(z, tau, 1 - tau) = tau + s * clip((z - tau) / s, 0, 1)`` with ``s = 1 - 2 tau``
    (:func:`clip01_forms` between two exact affine maps; ``tau = 0`` is the plain clip)."""
    if tau == 0:
        return clip01_forms(f)
    s = 1.0 - 2.0 * tau
    g = clip01_forms(Forms(_affine_shift(f.lower, -tau) / s, _affine_shift(f.upper, -tau) / s))
    return Forms(_affine_shift(g.lower * s, tau), _affine_shift(g.upper * s, tau))


def net_input_clamp(net: nn.Module) -> float:
    """``tau`` of a detector's input clamp (``config.input_clamp``; 0 for a plain ``nn.Sequential``)."""
    return getattr(getattr(net, "config", None), "input_clamp", 0.0)


def input_clamp(layers: list) -> tuple[float, list]:
    """``(tau, the other layers)``: the input clamp of a :func:`bound_layers` list (0 without one)."""
    if layers and isinstance(layers[0], InputClamp):
        return layers[0].tau, layers[1:]
    return 0.0, layers


def _affine_shift(form: torch.Tensor, value: float) -> torch.Tensor:
    return torch.cat([form[:, :1] + value, form[:, 1:]], dim=1)


def _merge(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    n = t.shape[0]
    return t.reshape(n * 3, *t.shape[2:]), n


def _split(t: torch.Tensor, n: int) -> torch.Tensor:
    return t.reshape(n, 3, *t.shape[1:])


def conv_forms(f: Forms, conv: FoldedConv) -> Forms:
    """Forms through a Conv2d (centre/radius form: 2 convolutions of the stacked coefficients)."""
    mid, n = _merge((f.lower + f.upper) / 2)
    rad, _ = _merge((f.upper - f.lower) / 2)
    mid, padding = conv.pad(mid)
    rad, _ = conv.pad(rad)
    kw = dict(stride=conv.stride, padding=padding, dilation=conv.dilation, groups=conv.groups)
    m = _split(F.conv2d(mid, conv.weight, None, **kw), n)
    r = _split(F.conv2d(rad, conv.weight.abs(), None, **kw), n)
    if conv.bias is not None:
        m[:, 0] += conv.bias.view(1, -1, 1, 1)  # the constant term only (m is a fresh tensor)
    return Forms(m - r, m + r)


def upsample_forms(f: Forms, up: nn.Upsample) -> Forms:
    """Forms through nearest-neighbour (exact) or bilinear upsampling (a linear map with weights
    >= 0, applied to the lower and the upper form: as tight as any affine bound can be)."""
    if up.mode not in ("nearest", "bilinear"):
        raise ValueError(f"unsupported Upsample mode {up.mode!r} (only 'nearest' or 'bilinear')")

    def apply(t: torch.Tensor) -> torch.Tensor:
        m, n = _merge(t)
        return _split(F.interpolate(m, size=up.size, scale_factor=up.scale_factor, mode=up.mode,
                                    align_corners=up.align_corners), n)

    return Forms(apply(f.lower), apply(f.upper))


def pixel_shuffle_forms(f: Forms, ps: nn.PixelShuffle) -> Forms:
    """Forms through a pixel shuffle (a permutation: exact)."""

    def apply(t: torch.Tensor) -> torch.Tensor:
        m, n = _merge(t)
        return _split(F.pixel_shuffle(m, ps.upscale_factor), n)

    return Forms(apply(f.lower), apply(f.upper))


def identity_forms(f: Forms, _: nn.Module) -> Forms:
    return f


def leaky_relu_forms(f: Forms, m: nn.LeakyReLU) -> Forms:
    """Forms of ``leaky_relu(z) = a * z + (1 - a) * relu(z)`` for a slope ``0 <= a <= 1`` (both
    terms have weights >= 0, so the sum of their sound forms is sound)."""
    a = float(m.negative_slope)
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"LeakyReLU negative_slope must be in [0, 1], got {a}")
    r = relu_forms(f)
    return Forms(a * f.lower + (1 - a) * r.lower, a * f.upper + (1 - a) * r.upper)


_PAD_FLOOR = -1e30  # the value a max-pool's padding holds (never the max of a window)


@dataclass
class MaxPool:
    """A stride-1 max pool (the graph import follows a strided one with a stride-``s`` identity
    :class:`FoldedConv`, so the output stride stays the product of the conv strides)."""

    kernel_size: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, self.kernel_size, 1, self.padding, self.dilation)


def pool_windows(x: torch.Tensor, m: MaxPool, fill: float) -> torch.Tensor:
    """The max-pool windows of ``x (B, C, H, W)`` as ``(B, C, kh * kw, Ho * Wo)`` (padding holds ``fill``)."""
    (kh, kw), (ph, pw) = m.kernel_size, m.padding
    b, c = x.shape[:2]
    xp = F.pad(x, (pw, pw, ph, ph), value=fill)
    win = F.unfold(xp.reshape(b * c, 1, *xp.shape[-2:]), (kh, kw), dilation=m.dilation)
    return win.reshape(b, c, kh * kw, -1)


def max_pool_forms(f: Forms, m: MaxPool) -> Forms:
    """Sound forms of a max pool: lower = the lower form of the window element with the largest
    minimum (``max_j z_j >= z_i``); upper = the upper form ``U_i`` of the element with the largest
    maximum plus ``max_j max_e (U_j - U_i)`` (exact when one element dominates its window)."""
    n, _, c, h, w = f.lower.shape
    ho = h + 2 * m.padding[0] - m.dilation[0] * (m.kernel_size[0] - 1)
    wo = w + 2 * m.padding[1] - m.dilation[1] * (m.kernel_size[1] - 1)

    def windows(t: torch.Tensor) -> torch.Tensor:  # (N, 3, C, H, W) -> (N, 3, C, K, L)
        const = pool_windows(t[:, 0], m, _PAD_FLOOR)
        coef = pool_windows(t[:, 1:].reshape(n * 2, c, h, w), m, 0.0)
        return torch.cat([const.unsqueeze(1), coef.reshape(n, 2, *coef.shape[1:])], dim=1)

    lo, up = windows(f.lower), windows(f.upper)
    jl = (lo[:, 0] - lo[:, 1].abs() - lo[:, 2].abs()).argmax(dim=2, keepdim=True)  # (N, C, 1, L)
    lower = lo.gather(3, jl.unsqueeze(1).expand(-1, 3, -1, -1, -1)).squeeze(3)
    ju = (up[:, 0] + up[:, 1].abs() + up[:, 2].abs()).argmax(dim=2, keepdim=True)
    upper = up.gather(3, ju.unsqueeze(1).expand(-1, 3, -1, -1, -1)).squeeze(3)
    diff = up - upper.unsqueeze(3)
    offset = (diff[:, 0] + diff[:, 1].abs() + diff[:, 2].abs()).amax(dim=2).clamp_min(0)
    upper = torch.cat([(upper[:, 0] + offset).unsqueeze(1), upper[:, 1:]], dim=1)
    return Forms(lower.reshape(n, 3, c, ho, wo), upper.reshape(n, 3, c, ho, wo))


HANDLERS: dict[type, Callable[[Forms, nn.Module], Forms]] = {
    FoldedConv: conv_forms,
    nn.ReLU: lambda f, _: relu_forms(f),
    nn.Upsample: upsample_forms,
    nn.PixelShuffle: pixel_shuffle_forms,
    nn.Identity: identity_forms,
    nn.Dropout: identity_forms,
    nn.LeakyReLU: leaky_relu_forms,
    MaxPool: max_pool_forms,
}

# Layers whose trace entry (see :func:`propagate`) is the concrete range of their input.
RANGE_TRACED = (nn.ReLU, nn.LeakyReLU, MaxPool)


def bound_layers(net: nn.Module, differentiable: bool = False) -> list:
    """The layer list of a detector or ``nn.Sequential`` with every Conv2d (+ BatchNorm2d in eval
    form) folded into a :class:`FoldedConv`; raises ``ValueError`` naming an unsupported layer.
    ``differentiable=True`` keeps the autograd graph to the network's parameters. A network with
    its own ``bound_layers`` method (an imported graph, :mod:`..model.graph`) gives its own list."""
    own = getattr(net, "bound_layers", None)
    if callable(own):
        return own(differentiable)
    seq = getattr(net, "net", net)
    if not isinstance(seq, nn.Sequential):
        raise ValueError(f"expected a HeatmapDetector or nn.Sequential, got {type(net).__name__}")
    mods = list(seq)
    layers: list = []
    i = 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.Conv2d):
            if m.padding_mode not in ("zeros", "replicate") or isinstance(m.padding, str):
                raise ValueError(f"unsupported Conv2d padding {m.padding!r}/{m.padding_mode!r} "
                                 f"(zeros or replicate, int only)")
            bn = mods[i + 1] if i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d) else None
            w, b = fold_conv_bn(m, bn)
            i += bn is not None
            if not differentiable:
                w, b = w.detach(), (b.detach() if b is not None else None)
            layers.append(FoldedConv(w, b, m.stride, m.padding, m.dilation, m.groups, m.padding_mode))
        elif isinstance(m, nn.BatchNorm2d):
            raise ValueError("BatchNorm2d not preceded by Conv2d is not supported")
        elif type(m) in HANDLERS:
            layers.append(m)
        else:
            raise ValueError(f"layer {type(m).__name__} is not supported by the native certifier "
                             f"(supported: Conv2d, BatchNorm2d after Conv2d, "
                             f"{', '.join(t.__name__ for t in HANDLERS if t is not FoldedConv)})")
        i += 1
    if not layers or not isinstance(layers[-1], FoldedConv):
        raise ValueError("the network must end with a Conv2d heatmap head")
    tau = net_input_clamp(net)
    return ([InputClamp(tau)] if tau > 0 else []) + fuse_upsample(layers)


# Row (and column) maps of a 3x3 kernel applied after x2 nearest upsampling onto the low-resolution
# 3x3 kernel of output phase 0 / 1 (offsets -1, 0, +1): phase 0 reads rows (i-1, i, i), phase 1 (i, i, i+1).
_PHASE = torch.tensor([[[1., 0., 0.], [0., 1., 1.], [0., 0., 0.]],
                       [[0., 0., 0.], [1., 1., 0.], [0., 0., 1.]]])


def _fusable(up: nn.Module, conv) -> bool:
    """``up`` is a nearest x2 Upsample and ``conv`` a plain 3x3 conv (stride 1, padding 1)."""
    if not (isinstance(up, nn.Upsample) and up.mode == "nearest" and up.size is None):
        return False
    factors = up.scale_factor if isinstance(up.scale_factor, tuple) else (up.scale_factor,)
    return (all(float(f) == 2.0 for f in factors) and isinstance(conv, FoldedConv)
            and conv.padding_mode == "zeros" and conv.kernel_size == (3, 3) and tuple(conv.stride) == (1, 1)
            and tuple(conv.padding) == (1, 1) and tuple(conv.dilation) == (1, 1) and conv.groups == 1)


def fuse_upsample(layers: list) -> list:
    """Replace every ``Upsample(x2, nearest) -> 3x3 conv (stride 1, padding 1)`` by the equivalent
    low-resolution conv with 4x the output channels followed by ``PixelShuffle(2)``.

    The function is identical (exact re-parametrisation), but the bounds are tighter: the kernel
    taps that read the same low-resolution pixel are summed before ``|W|`` is taken (and the
    upsampled activations are never materialised, so it is also faster)."""
    out: list = []
    i = 0
    while i < len(layers):
        m = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if _fusable(m, nxt):
            ph = _PHASE.to(nxt.weight)
            w = torch.einsum("api,oeij,bqj->oabepq", ph, nxt.weight, ph)
            w = w.reshape(nxt.weight.shape[0] * 4, nxt.weight.shape[1], 3, 3)
            b = None if nxt.bias is None else nxt.bias.repeat_interleave(4)
            out += [FoldedConv(w, b, (1, 1), (1, 1), (1, 1), 1), nn.PixelShuffle(2)]
            i += 2
        else:
            out.append(m)
            i += 1
    return out


def propagate(layers: list[nn.Module], x0: torch.Tensor, boxes: torch.Tensor, trace: list | None = None) -> Forms:
    """Forms of the output heatmaps ``(N, 3, K, h, w)`` over the sub-boxes ``(N, 4) = (c_lo, c_hi,
    b_lo, b_hi)`` (or parallelograms ``(N, 2, 3)``, :func:`theta_maps`) for the input ``x(theta) = clip(c * x0 + b, 0, 1)`` (and the network's input
    clamp, if ``layers`` starts with one).

    With a ``trace`` list, one entry per layer after the input clamp is appended: for a ReLU the concrete bounds
    ``(lo, hi)`` ``(N, C, H, W)`` of its input (the min of the lower form, the max of the upper
    form), for any other layer its input shape ``(C, H, W)`` (used by :mod:`.backward`)."""
    tau, layers = input_clamp(layers)
    return propagate_forms(layers, clamp_forms(input_forms(x0, boxes), tau), trace)


def propagate_forms(layers: list, f: Forms, trace: list | None = None) -> Forms:
    """The forms ``f`` through ``layers`` (no input clamp), appending one trace entry per layer
    (see :func:`propagate`; a :class:`GraphLayer`'s entry is the list of its steps' entries)."""
    for m in layers:
        if isinstance(m, GraphLayer):
            sub = [] if trace is not None else None
            f = graph_forms(f, m, sub)
            if trace is not None:
                trace.append(sub)
            continue
        if trace is not None:
            trace.append((concrete_min(f.lower), concrete_max(f.upper)) if isinstance(m, RANGE_TRACED)
                         else tuple(f.lower.shape[2:]))
        f = HANDLERS[type(m)](f, m)
    return f


@dataclass
class GraphStep:
    """One step of a :class:`GraphLayer`: ``kind`` ``"layers"`` (a layer list applied to one
    input), ``"add"`` (the sum of its inputs) or ``"cat"`` (channel concatenation). ``inputs`` index
    the step values: 0 is the graph layer's input, ``i`` the output of step ``i - 1``."""

    kind: str
    inputs: tuple[int, ...]
    layers: list = None


@dataclass
class GraphLayer:
    """A small DAG of layer lists (residual adds, channel concats) that keeps the resolution of
    its input; its output is the last step's. Made by the graph import of a user's network."""

    steps: list[GraphStep]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        vals = [x]
        for step in self.steps:
            ins = [vals[i] for i in step.inputs]
            if step.kind == "add":
                out = sum(ins[1:], ins[0])
            elif step.kind == "cat":
                out = torch.cat(ins, dim=1)
            else:
                out = ins[0]
                for m in step.layers:
                    out = m(out)
            vals.append(out)
        return vals[-1]


def graph_forms(f: Forms, g: GraphLayer, trace: list | None = None) -> Forms:
    """Forms through a :class:`GraphLayer`: every step's layers through :func:`propagate_forms`;
    an add sums the lower and the upper forms (sound), a concat stacks them (exact). Trace
    entries: a layer step's list, a concat's input channel counts, ``None`` for an add."""
    vals = [f]
    for step in g.steps:
        ins = [vals[i] for i in step.inputs]
        if step.kind == "add":
            out, entry = Forms(sum(v.lower for v in ins), sum(v.upper for v in ins)), None
        elif step.kind == "cat":
            out = Forms(torch.cat([v.lower for v in ins], dim=2), torch.cat([v.upper for v in ins], dim=2))
            entry = [v.lower.shape[2] for v in ins]
        else:
            entry = [] if trace is not None else None
            out = propagate_forms(step.layers, ins[0], entry)
        if trace is not None:
            trace.append(entry)
        vals.append(out)
    return vals[-1]


HANDLERS[GraphLayer] = graph_forms
