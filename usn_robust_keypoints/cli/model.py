"""``usn-keypoints export-onnx``: a detector (native or imported, pruned or not) as an ONNX file."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-onnx", help="write a model (checkpoint or ONNX) as an ONNX file the nodes load")
    p.add_argument("--model", default="", help="detector or imported-graph checkpoint, or .onnx (default: shipped)")
    p.add_argument("--out", required=True, help="output .onnx file")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 11)")
    p.set_defaults(func=run_export_onnx)


def run_export_onnx(args: argparse.Namespace) -> int:
    """Load ``--model``, export it, and check that the file loads back to the same heatmaps."""
    import torch

    from ..model import load_model
    from ..model.graph.export import export_onnx

    if args.opset < 11:
        raise ValueError(f"--opset must be >= 11, got {args.opset}")
    model = load_model(args.model or None, device="cpu")
    path = export_onnx(model.detector, args.out, args.opset)
    back = load_model(path, device="cpu")
    c = model.config
    x = torch.rand(2, back.detector.config.in_channels, c.input_height, c.input_width)
    with torch.no_grad():
        err = float((back.detector(x) - model.detector(x)).abs().max())
    print(f"wrote {path} (reloaded: max heatmap difference {err:.2e})")
    return 0
