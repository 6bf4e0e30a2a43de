"""Import a ``torch.nn.Module`` with ``torch.fx`` into a :class:`.GraphDetector`."""

from __future__ import annotations

import copy
import operator

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .build import finish_graph
from .net import GraphDetector, Node, safe_name
from .refusal import refusal
from .spec import ModelSpec

_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout2d)
_UPSAMPLE_FNS = (F.interpolate, getattr(F, "upsample", F.interpolate))


def import_module(module: nn.Module, spec: ModelSpec) -> GraphDetector:
    """Trace ``module`` (a copy, in eval mode) into a :class:`GraphDetector` for ``spec``; raises
    ``ValueError`` naming the first unsupported node (nothing else is computed before)."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"expected a torch.nn.Module, got {type(module).__name__}")
    module = copy.deepcopy(module).eval().cpu()
    try:
        gm = torch.fx.symbolic_trace(module)
    except torch.fx.proxy.TraceError as e:
        raise ValueError(f"cannot certify this network: its forward has data-dependent control flow ({e}); "
                         f"the network must be one fixed graph: take the decision outside the network or make "
                         f"it depend only on constructor arguments") from e
    except Exception as e:  # noqa: BLE001 - any tracing failure is the user's graph, reported plainly
        raise ValueError(f"cannot certify this network: torch.fx cannot trace its forward "
                         f"({type(e).__name__}: {e}); write forward as a fixed sequence of supported modules "
                         f"and functions") from e
    x = torch.rand(1, spec.in_channels, spec.input_height, spec.input_width)
    _check_graph(gm)
    try:
        torch.fx.passes.shape_prop.ShapeProp(gm).propagate(x)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"the network does not run on a {tuple(x.shape)} input (ModelSpec input size and "
                         f"color): {type(e).__name__}: {e}") from e
    nodes, mods, output = _convert(gm)
    det = finish_graph(nodes, mods, output, spec)
    with torch.no_grad():
        ref = gm(_normalised(x, spec))
        got = det(x)
    if ref.shape != got.shape or not torch.allclose(ref, got, rtol=1e-4, atol=1e-4 * (1 + float(ref.abs().max()))):
        raise ValueError("internal error: the imported graph does not reproduce the module's output")
    return det


def _normalised(x: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    if spec.mean is None and spec.std is None:
        return x
    mean = torch.tensor(spec.mean or [0.0] * spec.in_channels).view(1, -1, 1, 1)
    std = torch.tensor(spec.std or [1.0] * spec.in_channels).view(1, -1, 1, 1)
    return (x - mean) / std


def _op_name(node: torch.fx.Node, gm: torch.fx.GraphModule) -> str:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)).__name__
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return str(node.target)


def _check_graph(gm: torch.fx.GraphModule) -> None:
    """Refuse unsupported nodes before anything is run."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ValueError(f"cannot certify this network: forward takes {len(placeholders)} inputs "
                         f"({[n.name for n in placeholders]}); it must take exactly one image tensor")
    for n in gm.graph.nodes:
        if n.op == "output":
            if not isinstance(n.args[0], torch.fx.Node):
                raise refusal("output", "output", "the network returns several values",
                              "return the heatmap tensor (N, K, H, W) only")
        elif n.op == "get_attr":
            raise refusal(_where(n), f"get_attr {n.target}", "a tensor is used outside of a module",
                          "use nn.Conv2d / nn.BatchNorm2d modules instead of functional calls on parameters")
        elif n.op in ("call_module", "call_function", "call_method") and _kind(n, gm) is None:
            raise refusal(_where(n), _op_name(n, gm))
        if n.op != "output" and _kind(n, gm) not in ("shape", "upsample") and any(
                isinstance(a, torch.fx.Node) and _is_shape(a, gm) for a in list(n.args) + list(n.kwargs.values())):
            raise refusal(_where(n), _op_name(n, gm), "it computes with tensor sizes",
                          "use tensor sizes only as the size of an interpolation")


def _where(n: torch.fx.Node) -> str:
    """The node as the user knows it: the module path for a module call, else the fx node name."""
    return str(n.target) if n.op == "call_module" else n.name


def _scalar(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _kind(n: torch.fx.Node, gm: torch.fx.GraphModule) -> str | None:
    """The graph op of a supported fx node, else None."""
    t = n.target
    if n.op == "call_module":
        m = gm.get_submodule(t)
        if isinstance(m, nn.Conv2d):
            return "conv"
        if isinstance(m, nn.ConvTranspose2d):
            return "conv_transpose"
        if isinstance(m, nn.BatchNorm2d):
            return "batchnorm"
        if type(m) is nn.ReLU:
            return "relu"
        if type(m) is nn.LeakyReLU:
            return "leaky_relu"
        if type(m) is nn.AvgPool2d:
            return "avg_pool"
        if type(m) is nn.MaxPool2d:
            return "max_pool"
        if isinstance(m, nn.Upsample):
            return "upsample"
        if isinstance(m, _IDENTITY_MODULES):
            return "identity"
        return None
    if _is_shape(n, gm):
        return "shape"
    tensors = _tensor_args(n, gm)
    if n.op == "call_function":
        if t in (F.relu, torch.relu, torch.relu_):
            return "relu"
        if t is F.leaky_relu:
            return "leaky_relu"
        if t is F.max_pool2d:
            return "max_pool"
        if t is F.avg_pool2d:
            return "avg_pool"
        if t in _UPSAMPLE_FNS:
            return "upsample"
        if t in (torch.cat, torch.concat):
            return "cat"
        if t in (F.dropout, F.dropout2d):
            return "identity"
        if t in (torch.clamp, torch.clip):
            return "clamp"
        if t in (operator.add, torch.add, operator.iadd):
            return "add" if len(tensors) == 2 else "affine"
        if t in (operator.sub, torch.sub, operator.mul, torch.mul, operator.truediv, torch.div):
            return "affine" if len(tensors) == 1 else None
        return None
    if n.op == "call_method":
        if t in ("relu", "relu_"):
            return "relu"
        if t in ("clamp", "clamp_", "clip"):
            return "clamp"
        if t in ("contiguous",):
            return "identity"
        if t in ("add", "add_"):
            return "add" if len(tensors) == 2 else "affine"
        if t in ("sub", "mul", "div"):
            return "affine" if len(tensors) == 1 else None
    return None


def _is_shape(n: torch.fx.Node, gm: torch.fx.GraphModule) -> bool:
    """``x.shape``, ``x.size()`` or an index into one: static sizes (used as an interpolation size)."""
    if n.op == "call_function" and n.target is getattr and n.args[1] == "shape":
        return True
    if n.op == "call_method" and n.target == "size":
        return True
    return (n.op == "call_function" and n.target is operator.getitem and isinstance(n.args[0], torch.fx.Node)
            and _is_shape(n.args[0], gm))


def _tensor_args(n: torch.fx.Node, gm: torch.fx.GraphModule) -> list[torch.fx.Node]:
    """The tensor (not shape) inputs of ``n``."""
    return [a for a in list(n.args) + list(n.kwargs.values()) if isinstance(a, torch.fx.Node) and not _is_shape(a, gm)]


def _arg(n: torch.fx.Node, i: int, name: str, default=None):
    if len(n.args) > i:
        return n.args[i]
    return n.kwargs.get(name, default)


def _shape(n: torch.fx.Node) -> tuple[int, ...]:
    return tuple(n.meta["tensor_meta"].shape)


def _conv_padding(m: nn.Conv2d, where: str) -> nn.Conv2d:
    """``m`` with integer padding (``'same'``/``'valid'`` resolved) or a refusal."""
    if isinstance(m.padding, str):
        if m.padding == "valid":
            pad = (0, 0)
        else:
            eff = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
            if any(e % 2 for e in eff):
                raise refusal(where, "Conv2d", f"padding='same' with an even effective kernel "
                              f"{tuple(e + 1 for e in eff)} pads asymmetrically",
                              "use an odd kernel or explicit symmetric integer padding")
            pad = tuple(e // 2 for e in eff)
        m.padding = pad
    return m


def _convert(gm: torch.fx.GraphModule) -> tuple[list[Node], dict[str, nn.Module], str]:
    taken: set[str] = set()
    names: dict[torch.fx.Node, str] = {}
    nodes: list[Node] = []
    mods: dict[str, nn.Module] = {}
    output = None
    for n in gm.graph.nodes:
        if n.op == "output":
            output = names[n.args[0]]
            continue
        if n.op != "placeholder" and _kind(n, gm) == "shape":
            continue  # a static size, read from the traced shapes where it is used
        name = safe_name(n.name, taken)
        names[n] = name
        if n.op == "placeholder":
            nodes.append(Node(name, "input", [], {}, n.name))
            continue
        kind = _kind(n, gm)
        src = _where(n)
        tensor_in = _tensor_args(n, gm)
        if kind == "cat":
            seq = _arg(n, 0, "tensors")
            dim = _arg(n, 1, "dim", 0)
            if dim not in (1, -3):
                raise refusal(_where(n), "cat", f"concatenation along dim {dim}", "concatenate channels (dim=1) only")
            nodes.append(Node(name, "cat", [names[a] for a in seq], {}, src))
            continue
        inputs = [names[a] for a in tensor_in]
        attrs: dict = {}
        if n.op == "call_module":
            m = gm.get_submodule(n.target)
            if kind == "conv":
                mods[name] = _conv_padding(m, _where(n))
            elif kind == "conv_transpose":
                if len(n.args) > 1 or n.kwargs:
                    raise refusal(_where(n), "ConvTranspose2d", "an output_size argument", "set output_padding instead")
                mods[name] = m
            elif kind == "batchnorm":
                if not m.track_running_stats or m.running_mean is None:
                    raise refusal(_where(n), "BatchNorm2d", "it has no running statistics",
                                  "use track_running_stats=True (eval statistics fold into the conv)")
                mods[name] = m
            elif kind == "leaky_relu":
                attrs = {"negative_slope": float(m.negative_slope)}
            elif kind == "avg_pool":
                attrs = dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, ceil_mode=m.ceil_mode,
                             count_include_pad=m.count_include_pad, divisor_override=m.divisor_override)
            elif kind == "max_pool":
                if m.return_indices:
                    raise refusal(_where(n), "MaxPool2d", "return_indices=True", "use return_indices=False")
                attrs = dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation,
                             ceil_mode=m.ceil_mode)
            elif kind == "upsample":
                attrs = {"mode": m.mode, "align_corners": m.align_corners}
        elif kind == "leaky_relu":
            attrs = {"negative_slope": float(_arg(n, 1, "negative_slope", 0.01))}
        elif kind == "max_pool":
            if _arg(n, 6, "return_indices", False):
                raise refusal(_where(n), "max_pool2d", "return_indices=True", "use return_indices=False")
            k = _arg(n, 1, "kernel_size")
            attrs = dict(kernel_size=k, stride=_arg(n, 2, "stride", None) or k, padding=_arg(n, 3, "padding", 0),
                         dilation=_arg(n, 4, "dilation", 1), ceil_mode=bool(_arg(n, 5, "ceil_mode", False)))
        elif kind == "avg_pool":
            k = _arg(n, 1, "kernel_size")
            attrs = dict(kernel_size=k, stride=_arg(n, 2, "stride", None) or k, padding=_arg(n, 3, "padding", 0),
                         ceil_mode=bool(_arg(n, 4, "ceil_mode", False)),
                         count_include_pad=bool(_arg(n, 5, "count_include_pad", True)),
                         divisor_override=_arg(n, 6, "divisor_override", None))
        elif kind == "upsample":
            attrs = {"mode": _arg(n, 3, "mode", "nearest"), "align_corners": _arg(n, 4, "align_corners", None)}
        elif kind == "clamp":
            lo, hi = _arg(n, 1, "min"), _arg(n, 2, "max")
            if not (_scalar(lo) and _scalar(hi)):
                raise refusal(_where(n), "clamp", "clamp needs constant min and max",
                              "clamp the input to [tau, 1 - tau] with numbers, or remove it")
            attrs = {"min": float(lo), "max": float(hi)}
        elif kind == "affine":
            attrs = _affine_attrs(n)
        elif kind == "add":
            alpha = n.kwargs.get("alpha", 1)
            if alpha != 1:
                raise refusal(_where(n), "add", f"add with alpha={alpha}", "scale the branch with a conv instead")
        if kind == "upsample":
            attrs["scale_factor"] = _upsample_scale(n, attrs["mode"])
        nodes.append(Node(name, kind, inputs, attrs, src))
    return nodes, mods, output


def _affine_attrs(n: torch.fx.Node) -> dict:
    """``x * scale + shift`` of a scalar add / sub / mul / div (tensor first, or a scalar first for + and *)."""
    t = n.target
    name = t if isinstance(t, str) else t.__name__
    a, b = (list(n.args) + [None, None])[:2]
    tensor_first = isinstance(a, torch.fx.Node)
    c = b if tensor_first else a
    if not _scalar(c):
        raise refusal(_where(n), name, f"{name} with a non-constant operand", "use a number, or a conv for per-channel maps")
    c = float(c)
    name = name.rstrip("_")
    if name in ("add", "iadd"):
        return {"scale": [1.0], "shift": [c]}
    if name == "sub":
        return {"scale": [1.0], "shift": [-c]} if tensor_first else {"scale": [-1.0], "shift": [c]}
    if name == "mul":
        return {"scale": [c], "shift": [0.0]}
    if name in ("truediv", "div"):
        if not tensor_first:
            raise refusal(_where(n), name, "dividing a number by an activation is not linear", "divide by a number only")
        return {"scale": [1.0 / c], "shift": [0.0]}
    raise refusal(_where(n), name)


def _upsample_scale(n: torch.fx.Node, mode: str) -> float:
    """The integer upsampling factor of an upsample node (from its traced shapes)."""
    if mode not in ("nearest", "bilinear"):
        raise refusal(_where(n), f"upsample mode {mode!r}", f"mode {mode!r} is not supported",
                      "use mode='nearest' or 'bilinear'")
    src = n.args[0] if n.args else n.kwargs["input"]
    hi, wi = _shape(src)[-2:]
    ho, wo = _shape(n)[-2:]
    if ho % hi or wo % wi or ho // hi != wo // wi:
        raise refusal(_where(n), "upsample", f"{hi}x{wi} -> {ho}x{wo} is not one integer factor",
                      "upsample by the same integer factor in both directions")
    return float(ho // hi)
