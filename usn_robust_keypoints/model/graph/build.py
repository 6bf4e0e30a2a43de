"""The common end of both importers: normalisation node, shape checks, spec resolution."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from .lower import lower_graph, node_shapes
from .net import GraphDetector, Node
from .spec import ModelSpec


def finish_graph(nodes: list[Node], modules: dict[str, nn.Module], output: str, spec: ModelSpec) -> GraphDetector:
    """A checked :class:`GraphDetector`: the spec's normalisation inserted after the input (an
    ``affine`` node: ``(x - mean) / std``), the output shape checked against the spec (``(1, K,
    H / s, W / s)``; ``output_stride`` and ``num_keypoints`` filled in) and the lowering run once,
    so every refusal happens here, before any other work."""
    nodes = list(nodes)
    if spec.mean is not None or spec.std is not None:
        mean = torch.tensor(spec.mean or [0.0] * spec.in_channels)
        std = torch.tensor(spec.std or [1.0] * spec.in_channels)
        inp = nodes[0].name
        norm = Node("normalize", "affine", [inp], {"scale": (1 / std).tolist(), "shift": (-mean / std).tolist()},
                    "ModelSpec mean/std")
        for n in nodes[1:]:
            n.inputs = ["normalize" if i == inp else i for i in n.inputs]
        nodes.insert(1, norm)
        if output == inp:
            output = "normalize"
    det = GraphDetector(nodes, modules, output, spec).eval()
    try:
        shapes = node_shapes(det)
    except RuntimeError as e:
        raise ValueError(f"the network does not run on a {spec.in_channels}x{spec.input_height}x{spec.input_width} "
                         f"input (ModelSpec input size / color): {e}") from e
    k, h, w = shapes[output]
    if spec.input_height % h or spec.input_width % w or spec.input_height // h != spec.input_width // w:
        raise ValueError(f"heatmaps {h}x{w} are not the {spec.input_height}x{spec.input_width} input divided "
                         f"by one integer output stride")
    stride = spec.input_height // h
    if spec.output_stride is not None and spec.output_stride != stride:
        raise ValueError(f"ModelSpec.output_stride is {spec.output_stride} but the network's heatmaps are at "
                         f"stride {stride} ({h}x{w} for a {spec.input_height}x{spec.input_width} input)")
    if spec.num_keypoints is not None and spec.num_keypoints != k:
        raise ValueError(f"ModelSpec.num_keypoints is {spec.num_keypoints} but the network outputs {k} heatmaps")
    if spec.keypoint_names and len(spec.keypoint_names) != k:
        raise ValueError(f"ModelSpec.keypoint_names has {len(spec.keypoint_names)} names for {k} heatmaps")
    clamp = next((n for n in nodes if n.op == "clamp"), None)
    tau = float(clamp.attrs["min"]) if clamp is not None else 0.0
    det.config = replace(spec, output_stride=stride, num_keypoints=k, input_clamp=tau)
    lower_graph(det)
    return det
