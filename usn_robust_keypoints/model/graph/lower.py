"""Lowering a :class:`.GraphDetector` to the certifier's layer list (:mod:`...certify.bounds`).

- a conv (or conv-transpose) whose only consumer is a batch norm is folded with it into one
  :class:`FoldedConv`; a batch norm or an ``affine`` node (normalisation, scalar scale/shift) on its
  own becomes a depthwise 1x1 :class:`FoldedConv` (exact);
- a conv-transpose with output ``stride x`` its input becomes the equivalent stride-1 conv with
  ``stride**2`` times the output channels followed by ``PixelShuffle(stride)`` (exact, and the
  bounds are tighter: taps that read the same input pixel are summed before ``|W|`` is taken);
- an average pool is a depthwise conv; a max pool is a stride-1 :class:`MaxPool` followed by a
  strided identity 1x1 conv (so every stride is a conv stride, as the certifier counts them);
- ReLU, LeakyReLU and nearest / bilinear upsampling map to the layers of the same name; identity
  and dropout vanish; ``clamp(x, tau, 1 - tau)`` on the input is the
  :class:`InputClamp`;
- the graph is cut where a single value is alive (the trunk): a run of nodes between two cuts that
  branches (residual add, channel concat) becomes one :class:`GraphLayer`, which keeps the
  resolution of its input (the output stride stays the product of the top-level strides). A block
  whose every branch starts with a stride-``f`` conv (a ResNet downsampling block) is preceded by a
  space-to-depth conv (stride ``f``, one-hot weights) and its first convs become the equivalent
  stride-1 convs on the ``f * f`` phases (exact);
- if the graph does not end with a conv, an identity 1x1 conv is appended (the backward pass reads
  the head's shape), and :func:`fuse_upsample` is applied to the top level.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from ...certify.bounds import FoldedConv, GraphLayer, GraphStep, InputClamp, MaxPool, fuse_upsample
from ..detector import fold_conv_bn
from .net import GraphDetector, Node
from .refusal import refusal


def node_shapes(det: GraphDetector) -> dict[str, tuple[int, ...]]:
    """``(C, H, W)`` of every node's output for one zero image of the spec's size."""
    c = det.config
    p = next(iter(det.parameters()), None)
    x = torch.zeros(1, c.in_channels, c.input_height, c.input_width,
                    device=p.device if p is not None else "cpu")
    env: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for n in det.nodes:
            env[n.name] = x if n.op == "input" else det.run_node(n, [env[i] for i in n.inputs])
    return {k: tuple(v.shape[1:]) for k, v in env.items()}


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) of a batch norm in eval form (:func:`fold_conv_bn` on an identity)."""
    c = bn.num_features
    w, b = fold_conv_bn(SimpleNamespace(weight=torch.ones(c, 1, 1, 1, device=bn.weight.device), bias=None), bn)
    return w.reshape(c), b


def _conv_layer(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, differentiable: bool) -> FoldedConv:
    w, b = fold_conv_bn(conv, bn)
    if not differentiable:
        w, b = w.detach(), (b.detach() if b is not None else None)
    return FoldedConv(w, b, tuple(conv.stride), tuple(conv.padding), tuple(conv.dilation), conv.groups,
                      conv.padding_mode)


def _taps(k: int, s: int, p: int, d: int) -> list[tuple[int, int, int]]:
    """(output phase a, kernel tap, input offset q) of a 1-D conv-transpose: output ``s*j + a``
    reads input ``j + q`` through the tap."""
    out = []
    for a in range(s):
        for kk in range(k):
            r = kk * d - p - a
            if r % s == 0:
                out.append((a, kk, -(r // s)))
    return out


def _conv_transpose_layers(ct: nn.ConvTranspose2d, bn: nn.BatchNorm2d | None, in_shape, out_shape,
                           differentiable: bool, where: str) -> list:
    """A conv-transpose (+ batch norm) as an equivalent conv followed by ``PixelShuffle(stride)``."""
    sh, sw = ct.stride
    if sh != sw or ct.groups != 1 or out_shape[1] != sh * in_shape[1] or out_shape[2] != sw * in_shape[2]:
        raise refusal(where, "ConvTranspose2d", f"only equal strides, groups=1 and an output of exactly stride x "
                      f"its input are supported (got stride {tuple(ct.stride)}, groups {ct.groups}, "
                      f"{tuple(in_shape[1:])} -> {tuple(out_shape[1:])})", "choose kernel_size, padding and "
                      "output_padding with (k - 1) * dilation - 2 * padding + output_padding + 1 = stride")
    s = sh
    th = _taps(ct.kernel_size[0], s, ct.padding[0], ct.dilation[0])
    tw = _taps(ct.kernel_size[1], s, ct.padding[1], ct.dilation[1])
    m = max(abs(q) for _, _, q in th + tw)
    cin, cout = ct.in_channels, ct.out_channels
    w_ct, b = fold_conv_bn(SimpleNamespace(weight=ct.weight.transpose(0, 1), bias=ct.bias), bn)
    w_ct = w_ct.transpose(0, 1)  # (in, out, kh, kw) again
    w = torch.zeros(cout, s, s, cin, 2 * m + 1, 2 * m + 1, dtype=w_ct.dtype, device=w_ct.device)
    for ah, kh, qh in th:
        for aw, kw, qw in tw:
            w[:, ah, aw, :, qh + m, qw + m] = w[:, ah, aw, :, qh + m, qw + m] + w_ct[:, :, kh, kw].t()
    w = w.reshape(cout * s * s, cin, 2 * m + 1, 2 * m + 1)
    b = b.repeat_interleave(s * s) if b is not None else None
    if not differentiable:
        w, b = w.detach(), (b.detach() if b is not None else None)
    conv = FoldedConv(w, b, (1, 1), (m, m), (1, 1), 1)
    return [conv, nn.PixelShuffle(s)] if s > 1 else [conv]


def _depthwise(scale: torch.Tensor, shift: torch.Tensor, differentiable: bool) -> FoldedConv:
    if not differentiable:
        scale, shift = scale.detach(), shift.detach()
    c = scale.numel()
    return FoldedConv(scale.reshape(c, 1, 1, 1), shift.reshape(c), (1, 1), (0, 0), (1, 1), c)


def _pair(v) -> tuple[int, int]:
    return tuple(int(x) for x in v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _pool_layers(n: Node, shapes: dict) -> list:
    """Average pool: a depthwise conv with weights ``1 / k**2`` (zero padding counted). Max pool: a
    stride-1 :class:`MaxPool` followed by a stride-``s`` identity 1x1 conv (subsampling)."""
    a, where = n.attrs, n.source or n.name
    k, p = _pair(a["kernel_size"]), _pair(a["padding"])
    s = _pair(a["stride"] if a["stride"] is not None else a["kernel_size"])
    c, hi, wi = shapes[n.inputs[0]]
    if n.op == "avg_pool":
        if a["divisor_override"] is not None or (not a["count_include_pad"] and p != (0, 0)):
            raise refusal(where, "AvgPool2d", "divisor_override or count_include_pad=False with padding is not "
                          "a fixed linear map here", "use count_include_pad=True and no divisor_override")
        w = torch.full((c, 1, *k), 1.0 / (k[0] * k[1]))
        layers = [FoldedConv(w, None, s, p, (1, 1), c)]
    else:
        d = _pair(a["dilation"])
        layers = [MaxPool(k, p, d)]
        if s != (1, 1):
            layers.append(FoldedConv(torch.ones(c, 1, 1, 1), None, s, (0, 0), (1, 1), c))
    x = torch.zeros(1, c, hi, wi)
    for m in layers:
        x = m(x)
    if tuple(x.shape[1:]) != tuple(shapes[n.name]):
        raise refusal(where, n.op, f"ceil_mode gives a {tuple(shapes[n.name][1:])} output", "use ceil_mode=False "
                      "(or an input size for which it does not matter)")
    return layers


def _single_layers(det: GraphDetector, n: Node, shapes: dict, differentiable: bool, bn: nn.BatchNorm2d | None,
                   conv_node: Node | None) -> list:
    """The bound layers of a single-input node (``bn`` folded into ``conv_node`` when given)."""
    a, where = n.attrs, n.source or n.name
    if conv_node is not None:
        mod = det.mods[conv_node.name]
        if conv_node.op == "conv":
            return [_conv_layer(mod, bn, differentiable)]
        return _conv_transpose_layers(mod, bn, shapes[conv_node.inputs[0]], shapes[conv_node.name], differentiable,
                                      conv_node.source or conv_node.name)
    if n.op == "conv":
        return [_conv_layer(det.mods[n.name], None, differentiable)]
    if n.op == "conv_transpose":
        return _conv_transpose_layers(det.mods[n.name], None, shapes[n.inputs[0]], shapes[n.name], differentiable, where)
    if n.op == "batchnorm":
        return [_depthwise(*_bn_affine(det.mods[n.name]), differentiable)]
    if n.op == "affine":
        c = shapes[n.name][0]
        scale = torch.as_tensor(a["scale"], dtype=torch.float32).expand(c).clone()
        shift = torch.as_tensor(a["shift"], dtype=torch.float32).expand(c).clone()
        return [_depthwise(scale, shift, False)]
    if n.op == "relu":
        return [nn.ReLU()]
    if n.op == "leaky_relu":
        if not 0.0 <= a["negative_slope"] <= 1.0:
            raise refusal(n.source or n.name, "LeakyReLU", f"negative_slope {a['negative_slope']} is outside [0, 1] "
                          f"(the relaxation needs a convex activation)", "use a slope in [0, 1]")
        return [nn.LeakyReLU(a["negative_slope"])]
    if n.op in ("avg_pool", "max_pool"):
        return _pool_layers(n, shapes)
    if n.op == "upsample":
        return [nn.Upsample(scale_factor=a["scale_factor"], mode=a["mode"], align_corners=a.get("align_corners"))]
    if n.op == "identity":
        return []
    raise refusal(where, n.op, "this op has no bound layer")


def lower_graph(det: GraphDetector, differentiable: bool = False) -> list:
    """The certifier's layer list of ``det`` (see the module docstring)."""
    shapes = node_shapes(det)
    byname = {n.name: n for n in det.nodes}
    cons = det.consumers()
    # Fold conv -> batchnorm pairs; every "vnode" is (name, kind, inputs, layers).
    absorbed: set[str] = set()
    vnodes: list[tuple[str, str, list[str], list]] = []
    tau = 0.0
    input_name = next(n.name for n in det.nodes if n.op == "input")
    for n in det.nodes:
        if n.op == "input" or n.name in absorbed:
            continue
        if n.op in ("add", "cat"):
            vnodes.append((n.name, n.op, list(n.inputs), []))
            continue
        if n.op == "clamp":
            t = float(n.attrs["min"])
            if (n.inputs[0] != input_name or len(cons[input_name]) != 1 or not 0 <= t < 0.5
                    or abs(float(n.attrs["max"]) - (1 - t)) > 1e-6):
                raise refusal(n.source or n.name, "clamp", f"clamp({n.attrs['min']}, {n.attrs['max']}) inside the "
                              f"network is not supported (only clamp(x, tau, 1 - tau) on the input, 0 <= tau < 0.5)",
                              "remove it or move it to the input")
            tau = t
            vnodes.append((n.name, "layers", list(n.inputs), []))
            continue
        conv_node, bn = None, None
        if n.op == "batchnorm":
            src = byname[n.inputs[0]]
            if src.op in ("conv", "conv_transpose") and len(cons[src.name]) == 1 and src.name != det.output:
                conv_node, bn = src, det.mods[n.name]
                vnodes = [v for v in vnodes if v[0] != src.name]
                absorbed.add(src.name)
        inputs = list(conv_node.inputs) if conv_node is not None else list(n.inputs)
        vnodes.append((n.name, "layers", inputs, _single_layers(det, n, shapes, differentiable, bn, conv_node)))
    # Keep what the output needs.
    need, order = {det.output}, []
    for v in reversed(vnodes):
        if v[0] in need:
            order.append(v)
            need.update(v[2])
    vnodes = order[::-1]
    # Cut where one value is alive; branching runs become graph layers.
    pos = {input_name: 0}
    for i, v in enumerate(vnodes):
        pos[v[0]] = i + 1
    last_use = {name: 0 for name in pos}
    for i, v in enumerate(vnodes):
        for u in v[2]:
            last_use[u] = max(last_use[u], i + 1)
    last_use[det.output] = len(vnodes) + 1
    top: list = [InputClamp(tau)] if tau > 0 else []
    seg_start, alive = 0, 0  # seg_start: position of the segment's input value
    names = [input_name] + [v[0] for v in vnodes]
    for i in range(1, len(vnodes) + 1):
        alive = max(alive, max((last_use[names[j]] for j in range(seg_start, i)), default=0))
        if alive <= i:  # only the value of position i is alive after it: a cut
            top += _segment(vnodes[seg_start:i], names[seg_start], shapes, byname)
            seg_start, alive = i, 0
    top = fuse_upsample(top)
    if not top or not isinstance(top[-1], FoldedConv):
        k = shapes[det.output][0]
        eye = torch.eye(k).reshape(k, k, 1, 1)
        top.append(FoldedConv(eye, None, (1, 1), (0, 0), (1, 1), 1))
    p = next(iter(det.parameters()), None)
    return _to(top, p.device if p is not None else torch.device("cpu"))


def _to(layers: list, device: torch.device) -> list:
    """The constant weights made here (pools, normalisation, space-to-depth, identity head) on the
    network's device (CUDA when the model runs there)."""
    for m in layers:
        if isinstance(m, FoldedConv):
            m.weight = m.weight.to(device)
            m.bias = m.bias.to(device) if m.bias is not None else None
        elif isinstance(m, GraphLayer):
            for st in m.steps:
                if st.layers:
                    _to(st.layers, device)
    return layers


def _segment(vnodes: list, input_name: str, shapes: dict, byname: dict) -> list:
    """The layers of the run ``vnodes`` between two cuts (whose input is ``input_name``)."""
    if len(vnodes) == 1 and vnodes[0][1] == "layers":
        return vnodes[0][3]
    index = {input_name: 0}
    steps = []
    for i, (name, kind, inputs, layers) in enumerate(vnodes):
        steps.append(GraphStep(kind, tuple(index[u] for u in inputs), layers if kind == "layers" else None))
        index[name] = i + 1
    s_in, s_out = shapes[input_name], shapes[vnodes[-1][0]]
    if s_in[1:] == s_out[1:]:
        return [GraphLayer(steps)]
    f = s_in[1] // s_out[1]
    firsts = [st.layers[0] if st.kind == "layers" and st.layers else None for st in steps if 0 in st.inputs]
    ok = (f > 1 and s_out[1] * f == s_in[1] and s_out[2] * f == s_in[2] and all(
        isinstance(c, FoldedConv) and tuple(c.stride) == (f, f) and c.padding_mode == "zeros" and c.groups == 1
        for c in firsts) and all(0 not in st.inputs or st.kind == "layers" for st in steps))
    if not ok:
        n = byname[vnodes[-1][0]]
        raise refusal(n.source or n.name, n.op, f"a residual/concat block that changes the resolution "
                      f"({tuple(s_in[1:])} -> {tuple(s_out[1:])}) other than by strided convs on every branch "
                      f"is not supported", "downsample every branch with a conv of the same stride (or with a "
                      "plain layer before the block)")
    # Every branch downsamples with a stride-f conv: space-to-depth on the trunk (a stride-f conv
    # with one-hot weights: counted as a conv stride, exact), then stride-1 convs inside the block.
    for st in steps:
        if 0 in st.inputs:
            st.layers = [_space_to_depth_conv(st.layers[0], f)] + st.layers[1:]
    c = s_in[0]
    onehot = torch.zeros(c, f, f, c, f, f)
    for i in range(c):
        for a in range(f):
            for b in range(f):
                onehot[i, a, b, i, a, b] = 1.0
    s2d = FoldedConv(onehot.reshape(c * f * f, c, f, f), None, (f, f), (0, 0), (1, 1), 1)
    return [s2d, GraphLayer(steps)]


def _space_to_depth_conv(conv: FoldedConv, f: int) -> FoldedConv:
    """The stride-1 conv on ``pixel_unshuffle(x, f)`` equal to the stride-``f`` ``conv`` on ``x``."""
    w = conv.weight
    o, c, kh, kw = w.shape
    taps = []
    for dim, k in ((0, kh), (1, kw)):
        t = []
        for kk in range(k):
            off = conv.dilation[dim] * kk - conv.padding[dim]
            q = off // f
            t.append((kk, q, off - f * q))
        taps.append(t)
    m = max(abs(q) for t in taps for _, q, _ in t)
    w2 = torch.zeros(o, c, f, f, 2 * m + 1, 2 * m + 1, dtype=w.dtype, device=w.device)
    for kh_, qh, ah in taps[0]:
        for kw_, qw, aw in taps[1]:
            w2[:, :, ah, aw, qh + m, qw + m] = w2[:, :, ah, aw, qh + m, qw + m] + w[:, :, kh_, kw_]
    return FoldedConv(w2.reshape(o, c * f * f, 2 * m + 1, 2 * m + 1), conv.bias, (1, 1), (m, m), (1, 1), 1)
