"""``GraphDetector``: a user's heatmap network as a small graph of supported operations.

Both importers (:mod:`.fx_import` for a ``torch.nn.Module``, :mod:`.onnx_import` for an ONNX file)
produce the same thing: a topologically ordered list of :class:`Node` over a closed set of ops
(:data:`OPS`), the conv / conv-transpose / batch-norm modules that hold the weights, and the
:class:`.ModelSpec`. The same object runs the network (``forward``: what ``predict`` and the
nodes execute), is pruned (Torch-Pruning sees ordinary modules) and gives the certifier its layer
list (``bound_layers``, :mod:`.lower`), so what is certified is what runs.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .spec import ModelSpec

MODULE_OPS = ("conv", "conv_transpose", "batchnorm")
OPS = MODULE_OPS + ("input", "relu", "leaky_relu", "avg_pool", "max_pool", "upsample", "add", "cat",
                    "clamp", "affine", "identity")


@dataclass
class Node:
    """One operation: ``op`` in :data:`OPS`, the names of its ``inputs``, its attributes, and
    ``source`` (the node's name and op in the user's graph, for messages)."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict = field(default_factory=dict)
    source: str = ""


def safe_name(name: str, taken: set[str]) -> str:
    """A module-dict key from a graph node name (letters, digits, ``_``), unique in ``taken``."""
    base = re.sub(r"\W", "_", name).strip("_") or "node"
    if base[0].isdigit():
        base = "n" + base
    out, i = base, 1
    while out in taken:
        out, i = f"{base}_{i}", i + 1
    taken.add(out)
    return out


def module_attrs(m: nn.Module) -> dict:
    """The constructor arguments of a conv / conv-transpose / batch-norm module (JSON-able)."""
    if isinstance(m, nn.BatchNorm2d):
        return {"num_features": m.num_features, "eps": m.eps}
    d = {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": list(m.kernel_size),
         "stride": list(m.stride), "padding": list(m.padding), "dilation": list(m.dilation), "groups": m.groups,
         "bias": m.bias is not None}
    if isinstance(m, nn.ConvTranspose2d):
        d["output_padding"] = list(m.output_padding)
    else:
        d["padding_mode"] = m.padding_mode
    return d


def build_module(op: str, attrs: dict) -> nn.Module:
    """A fresh module for a module op from :func:`module_attrs`."""
    if op == "batchnorm":
        return nn.BatchNorm2d(attrs["num_features"], eps=attrs["eps"])
    a = dict(attrs)
    return (nn.Conv2d if op == "conv" else nn.ConvTranspose2d)(**a)


class GraphDetector(nn.Module):
    """A heatmap network as a graph of :data:`OPS` (see the module docstring).

    ``forward(x)`` maps ``(N, C, H, W)`` images in [0, 1] to ``(N, K, h, w)`` heatmaps; ``config``
    is the :class:`.ModelSpec` (the keypoint model reads the input size, colour and stride there).
    """

    def __init__(self, nodes: list[Node], modules: dict[str, nn.Module], output: str, spec: ModelSpec) -> None:
        super().__init__()
        self.nodes = list(nodes)
        self.output = output
        self.config = spec
        self.mods = nn.ModuleDict(modules)
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names) or output not in names:
            raise ValueError("graph nodes need unique names and the output among them")
        seen: set[str] = set()
        for n in self.nodes:
            if n.op not in OPS:
                raise ValueError(f"node {n.name}: unknown op {n.op!r}")
            if any(i not in seen for i in n.inputs):
                raise ValueError(f"node {n.name}: inputs {n.inputs} are not all computed before it")
            if n.op in MODULE_OPS and n.name not in self.mods:
                raise ValueError(f"node {n.name}: no module")
            seen.add(n.name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {}
        for n in self.nodes:
            env[n.name] = x if n.op == "input" else self.run_node(n, [env[i] for i in n.inputs])
        return env[self.output]

    def run_node(self, n: Node, xs: list[torch.Tensor]) -> torch.Tensor:
        a, x = n.attrs, xs[0]
        if n.op in MODULE_OPS:
            return self.mods[n.name](x)
        if n.op == "relu":
            return F.relu(x)
        if n.op == "leaky_relu":
            return F.leaky_relu(x, a["negative_slope"])
        if n.op == "avg_pool":
            return F.avg_pool2d(x, a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"],
                                a["count_include_pad"], a["divisor_override"])
        if n.op == "max_pool":
            return F.max_pool2d(x, a["kernel_size"], a["stride"], a["padding"], a["dilation"], a["ceil_mode"])
        if n.op == "upsample":
            return F.interpolate(x, scale_factor=a["scale_factor"], mode=a["mode"],
                                 align_corners=a.get("align_corners"))
        if n.op == "add":
            out = xs[0]
            for y in xs[1:]:
                out = out + y
            return out
        if n.op == "cat":
            return torch.cat(xs, dim=1)
        if n.op == "clamp":
            return x.clamp(a["min"], a["max"])
        if n.op == "affine":
            scale = torch.as_tensor(a["scale"], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            shift = torch.as_tensor(a["shift"], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            return x * scale + shift
        return x  # identity

    def bound_layers(self, differentiable: bool = False) -> list:
        """The certifier's layer list of this graph (:func:`.lower.lower_graph`)."""
        from .lower import lower_graph

        return lower_graph(self, differentiable)

    def describe(self) -> dict:
        """The graph as JSON-able data (module shapes read from the modules: valid after pruning)."""
        nodes = []
        for n in self.nodes:
            d = asdict(n)
            if n.op in MODULE_OPS:
                d["attrs"] = module_attrs(self.mods[n.name])
            nodes.append(d)
        return {"nodes": nodes, "output": self.output}

    @classmethod
    def from_description(cls, desc: dict, spec: ModelSpec) -> "GraphDetector":
        """Rebuild (random weights) from :meth:`describe`; load the state dict afterwards."""
        nodes = [Node(**d) for d in desc["nodes"]]
        mods = {n.name: build_module(n.op, n.attrs) for n in nodes if n.op in MODULE_OPS}
        return cls(nodes, mods, desc["output"], spec)

    def hidden_convs(self) -> list[tuple[str, nn.Conv2d, nn.BatchNorm2d]]:
        """(name, conv, bn) of the prunable units, in graph order: every Conv2d whose only consumer
        is a BatchNorm2d, one per group of channels that Torch-Pruning couples (a residual add ties
        the widths of the convs it sums: pruning the first prunes them all), none whose group
        reaches the heatmap output."""
        import torch_pruning as tp

        from ...prune.surgery import dependency_graph

        cons = self.consumers()
        with torch.enable_grad():  # Torch-Pruning traces with autograd
            graph = dependency_graph(self)
        head = self._output_modules()
        covered: set[nn.Module] = set()
        out = []
        for n in self.nodes:
            if n.op != "conv" or len(cons[n.name]) != 1 or cons[n.name][0].op != "batchnorm":
                continue
            conv, bn = self.mods[n.name], self.mods[cons[n.name][0].name]
            if conv in covered or cons[n.name][0].name == self.output:
                continue
            group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=[0])
            members = {dep.target.module for dep, _ in group}
            covered |= {dep.target.module for dep, _ in group if graph.is_out_channel_pruning_fn(dep.handler)}
            grouped = any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.groups > 1 for m in members)
            if members & head or grouped:
                continue  # the keypoints are never pruned; Torch-Pruning cannot shrink grouped convs evenly
            out.append((n.name, conv, bn))
        return out

    def _output_modules(self) -> set[nn.Module]:
        """The conv / batch-norm modules whose channels are the heatmaps (reached backward from the
        output through non-conv ops)."""
        byname = {n.name: n for n in self.nodes}
        out, stack = set(), [self.output]
        while stack:
            n = byname[stack.pop()]
            if n.op in MODULE_OPS:
                out.add(self.mods[n.name])
                if n.op != "batchnorm":
                    continue
            stack += n.inputs
        return out

    def apply_constraints(self) -> None:
        """No weight constraints (the training loop calls this after every step)."""

    def sync_config(self) -> None:
        """Nothing to record after pruning: :meth:`describe` reads the widths from the modules."""

    def consumers(self) -> dict[str, list[Node]]:
        """Node name -> the nodes that read it."""
        out: dict[str, list[Node]] = {n.name: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                out[i].append(n)
        return out

