"""Import an ONNX file (opset >= 11, read with the ``onnx`` package; no runtime) into a :class:`.GraphDetector`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .build import finish_graph
from .net import GraphDetector, Node, safe_name
from .refusal import refusal
from .spec import ModelSpec

MIN_OPSET = 11
_CONTROL_FLOW = ("If", "Loop", "Scan", "Where", "NonZero")


def import_onnx(path: str | Path, spec: ModelSpec | None = None) -> GraphDetector:
    """Read ``path`` into a :class:`GraphDetector`; ``spec`` defaults to the file's input size
    (gray for 1 channel, RGB for 3). Raises ``ValueError`` naming the first unsupported node."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:  # pragma: no cover - onnx is a dependency
        raise ValueError("reading ONNX files needs the 'onnx' package (pip install onnx)") from e
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
        raise ValueError(f"{path} is not a readable ONNX file: {e}") from e
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < MIN_OPSET:
        raise ValueError(f"{path}: ONNX opset {opset} is too old; export with opset_version >= {MIN_OPSET}")
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - shapes are then taken from the graph run
        pass
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        raise ValueError(f"{path}: the graph must have one image input and one heatmap output "
                         f"(has inputs {[i.name for i in inputs]}, outputs {[o.name for o in g.output]})")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ValueError(f"{path}: the input must be (N, C, H, W), got {len(dims)} dimensions")
    if spec is None:
        if None in dims[1:]:
            raise ValueError(f"{path}: the input size is dynamic ({dims}); pass spec=ModelSpec(input_width=..., ...)")
        spec = ModelSpec(dims[3], dims[2], color="gray" if dims[1] == 1 else "rgb")
    elif any(d is not None and d != e for d, e in zip(dims[1:], (spec.in_channels, spec.input_height, spec.input_width))):
        raise ValueError(f"{path}: input {dims[1:]} does not match the spec (C, H, W) = "
                         f"{(spec.in_channels, spec.input_height, spec.input_width)}")
    shapes = {}
    for v in list(g.value_info) + list(g.output) + list(g.input):
        d = [x.dim_value if x.HasField("dim_value") else None for x in v.type.tensor_type.shape.dim]
        shapes[v.name] = d
    return _convert(g, consts, shapes, inputs[0].name, spec, numpy_helper)


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _symmetric(pads, where: str, op: str) -> tuple[int, int]:
    pads = list(pads or [0, 0, 0, 0])
    if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
        raise refusal(where, op, f"asymmetric padding {pads} (top, left, bottom, right)",
                      "use symmetric padding (the same on both sides)")
    return pads[0], pads[1]


def _convert(g, consts: dict, shapes: dict, input_name: str, spec: ModelSpec, numpy_helper) -> GraphDetector:
    taken: set[str] = set()
    value: dict[str, str] = {input_name: safe_name(input_name, taken)}
    nodes = [Node(value[input_name], "input", [], {}, input_name)]
    mods: dict[str, nn.Module] = {}
    pending: dict[str, tuple] = {}  # Pad outputs waiting for their Conv: (input, (ph, pw), padding_mode)

    def const(name: str, where: str, op: str) -> np.ndarray:
        if name not in consts:
            raise refusal(where, op, f"input {name!r} must be a constant (an initializer)",
                          "export with constant folding (torch.onnx.export(..., do_constant_folding=True))")
        return consts[name]

    def tensor(t) -> torch.Tensor:
        return torch.from_numpy(np.array(t, dtype=np.float32))

    for node in g.node:
        op, a = node.op_type, _attrs(node)
        where = node.name or (node.output[0] if node.output else op)
        if op == "Constant":
            t = a.get("value")
            consts[node.output[0]] = numpy_helper.to_array(t) if t is not None else np.array(
                a.get("value_float", a.get("value_int", 0.0)))
            continue
        if op == "Shape" and shapes.get(node.input[0]) and None not in shapes[node.input[0]]:
            dims = shapes[node.input[0]][a.get("start", 0):a.get("end", None)]
            consts[node.output[0]] = np.array(dims, dtype=np.int64)  # static (the input size is fixed)
            continue
        if ins_const(node, consts) and op in _FOLDABLE:
            consts[node.output[0]] = _fold(op, a, [consts[i] if i else None for i in node.input])
            continue
        if node.domain not in ("", "ai.onnx"):
            raise refusal(where, f"{node.domain}.{op}", "a custom-domain op", "export with standard ONNX ops")
        if op in _CONTROL_FLOW:
            raise refusal(where, op, "data-dependent control flow or indexing",
                          "export a fixed graph (no If/Loop): take the decision outside the network")
        ins = [i for i in node.input if i]
        data = [i for i in ins if i not in consts]
        if op == "Pad":
            pending[node.output[0]] = _pad(a, ins, data, consts, where)
            continue
        if any(d in pending for d in data) and op != "Conv":
            raise refusal(where, op, "an explicit Pad that does not feed a Conv",
                          "pad through the Conv2d's padding / padding_mode instead")
        name = safe_name(node.output[0], taken)
        attrs: dict = {}
        kind = None
        if op in ("Conv", "ConvTranspose"):
            if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
                raise refusal(where, op, f"auto_pad={a['auto_pad']!r}", "export with explicit pads")
            w = tensor(const(ins[1], where, op))
            bias = tensor(const(ins[2], where, op)) if len(ins) > 2 else None
            k = tuple(w.shape[2:])
            pad = _symmetric(a.get("pads"), where, op)
            padding_mode = "zeros"
            if data[0] in pending:  # Pad -> Conv: the conv's padding_mode (reflect / replicate / zeros)
                src, (ph, pw), padding_mode = pending[data[0]]
                if op != "Conv" or (padding_mode != "zeros" and pad != (0, 0)):
                    raise refusal(where, op, "a Pad before a conv-transpose or a padded conv",
                                  "pad through the Conv2d's padding / padding_mode instead")
                pad, data = (pad[0] + ph, pad[1] + pw), [src]
            groups = a.get("group", 1)
            kw = dict(stride=tuple(a.get("strides", [1, 1])), padding=pad, dilation=tuple(a.get("dilations", [1, 1])),
                      groups=groups, bias=bias is not None)
            if op == "Conv":
                m = nn.Conv2d(w.shape[1] * groups, w.shape[0], k, padding_mode=padding_mode, **kw)
                kind = "conv"
            else:
                if "output_shape" in a:
                    raise refusal(where, op, "output_shape is set", "export with output_padding instead")
                m = nn.ConvTranspose2d(w.shape[0], w.shape[1] * groups, k, output_padding=tuple(a.get("output_padding", [0, 0])),
                                       **kw)
                kind = "conv_transpose"
            m.weight.data.copy_(w)
            if bias is not None:
                m.bias.data.copy_(bias)
            mods[name] = m
        elif op == "BatchNormalization":
            if a.get("training_mode", 0):
                raise refusal(where, op, "training_mode=1", "export the model in eval mode")
            scale, b, mean, var = (tensor(const(i, where, op)) for i in ins[1:5])
            m = nn.BatchNorm2d(scale.numel(), eps=a.get("epsilon", 1e-5))
            m.weight.data.copy_(scale)
            m.bias.data.copy_(b)
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            mods[name], kind = m.eval(), "batchnorm"
        elif op == "Relu":
            kind = "relu"
        elif op == "LeakyRelu":
            kind, attrs = "leaky_relu", {"negative_slope": float(a.get("alpha", 0.01))}
        elif op in ("MaxPool", "AveragePool"):
            if len([o for o in node.output if o]) > 1:
                raise refusal(where, op, "the indices output is used", "use the pooled values only")
            k = list(a["kernel_shape"])
            attrs = dict(kernel_size=k, stride=list(a.get("strides", [1, 1])), padding=list(_symmetric(a.get("pads"), where, op)),
                         ceil_mode=bool(a.get("ceil_mode", 0)))
            if op == "MaxPool":
                kind = "max_pool"
                attrs["dilation"] = list(a.get("dilations", [1, 1]))
            else:
                kind = "avg_pool"
                attrs.update(count_include_pad=bool(a.get("count_include_pad", 0)), divisor_override=None)
        elif op == "Resize":
            kind, attrs = "upsample", _resize_attrs(node, a, ins, consts, shapes, where)
        elif op in ("Identity", "Dropout"):
            kind = "identity"
        elif op == "Concat":
            if a.get("axis") not in (1, -3):
                raise refusal(where, op, f"concatenation along axis {a.get('axis')}", "concatenate channels (axis 1) only")
            kind = "cat"
        elif op == "Clip":
            lo = float(const(ins[1], where, op)) if len(ins) > 1 else float(a.get("min", -np.inf))
            hi = float(const(ins[2], where, op)) if len(ins) > 2 else float(a.get("max", np.inf))
            kind, attrs = "clamp", {"min": lo, "max": hi}
        elif op in ("Add", "Sub", "Mul", "Div"):
            if len(data) == 2 and op == "Add":
                kind = "add"
            elif len(data) == 1:
                kind, attrs = "affine", _affine(op, ins, data[0], consts, where)
            else:
                raise refusal(where, op, "a product or quotient of two activations is not linear" if op in ("Mul", "Div")
                              else f"{op} of two activations", "build the network from convolutions, add and concat")
        else:
            raise refusal(where, op)
        if kind in ("add", "cat"):
            inputs = [value[i] for i in data]
        else:
            inputs = [value[data[0]]]
        nodes.append(Node(name, kind, inputs, attrs, f"{where} ({op})"))
        value[node.output[0]] = name
    output = value[g.output[0].name]
    return finish_graph(nodes, mods, output, spec)


_FOLDABLE = ("ConstantOfShape", "Concat", "Reshape", "Slice", "Transpose", "Cast", "Unsqueeze", "Squeeze",
             "Gather", "Identity")


def ins_const(node, consts: dict) -> bool:
    """Every (given) input of ``node`` is a constant (then it is folded, not imported)."""
    return all(not i or i in consts for i in node.input) and len(node.output) == 1


def _fold(op: str, a: dict, x: list):
    """Evaluate a shape-arithmetic op on constants (what torch's exporter emits around ``Pad``)."""
    from onnx import numpy_helper
    from onnx.helper import tensor_dtype_to_np_dtype

    if op == "ConstantOfShape":
        value = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
        return np.full(tuple(int(v) for v in x[0]), value.reshape(-1)[0], dtype=value.dtype)
    if op == "Concat":
        return np.concatenate([np.atleast_1d(v) for v in x if v is not None], axis=a.get("axis", 0))
    if op == "Reshape":
        shape = [int(v) for v in x[1]]
        shape = [x[0].shape[i] if v == 0 else v for i, v in enumerate(shape)]
        return x[0].reshape(shape)
    if op == "Slice":
        data, starts, ends = x[0], x[1], x[2]
        axes = x[3] if len(x) > 3 and x[3] is not None else range(len(starts))
        steps = x[4] if len(x) > 4 and x[4] is not None else [1] * len(starts)
        sl = [slice(None)] * data.ndim
        for s0, e0, ax, st in zip(starts, ends, axes, steps):
            sl[int(ax)] = slice(int(s0), int(max(min(e0, 2 ** 62), -2 ** 62)), int(st))
        return data[tuple(sl)]
    if op == "Transpose":
        return np.transpose(x[0], a.get("perm"))
    if op == "Cast":
        return x[0].astype(tensor_dtype_to_np_dtype(a["to"]))
    if op == "Unsqueeze":
        axes = a.get("axes", x[1] if len(x) > 1 else None)
        out = x[0]
        for ax in sorted(int(v) for v in axes):
            out = np.expand_dims(out, ax)
        return out
    if op == "Squeeze":
        axes = a.get("axes", x[1] if len(x) > 1 else None)
        return np.squeeze(x[0], axis=None if axes is None else tuple(int(v) for v in axes))
    if op == "Gather":
        return np.take(x[0], x[1].astype(np.int64), axis=a.get("axis", 0))
    return x[0]  # Identity


def _pad(a: dict, ins: list[str], data: list[str], consts: dict, where: str) -> tuple:
    """A constant, symmetric spatial ``Pad`` as (input, (ph, pw), Conv2d padding_mode)."""
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = a.get("pads") if "pads" in a else (consts.get(ins[1]) if len(ins) > 1 else None)
    value = float(np.asarray(consts[ins[2]]).reshape(-1)[0]) if len(ins) > 2 and ins[2] in consts else 0.0
    if pads is None or len(data) != 1:
        raise refusal(where, "Pad", "pads that are not constant", "pad through the Conv2d's padding instead")
    p = [int(v) for v in np.asarray(pads).reshape(-1)]
    modes = {"constant": "zeros", "reflect": "reflect", "edge": "replicate"}
    if (len(p) != 8 or p[0] or p[1] or p[4] or p[5] or p[2] != p[6] or p[3] != p[7] or mode not in modes
            or (mode == "constant" and value != 0.0)):
        raise refusal(where, "Pad", f"pads {p} with mode {mode!r}", "use symmetric spatial zero, reflect or "
                      "replicate padding (Conv2d padding_mode)")
    return data[0], (p[2], p[3]), modes[mode]


def _affine(op: str, ins: list[str], data: str, consts: dict, where: str) -> dict:
    """``x * scale + shift`` of Add / Sub / Mul / Div with one constant (a scalar or per channel)."""
    other = next(i for i in ins if i != data)
    c = np.asarray(consts[other], dtype=np.float64)
    if c.size > 1 and c.squeeze().ndim != 1 or (c.ndim >= 3 and c.shape[-1] * c.shape[-2] != 1):
        raise refusal(where, op, f"a constant of shape {c.shape} (only a scalar or one value per channel)",
                      "use a scalar or a (1, C, 1, 1) constant")
    v = c.reshape(-1).tolist()
    first = ins[0] == data
    ones, zeros = [1.0] * len(v), [0.0] * len(v)
    if op == "Add":
        return {"scale": ones, "shift": v}
    if op == "Sub":
        return {"scale": ones, "shift": [-x for x in v]} if first else {"scale": [-1.0] * len(v), "shift": v}
    if op == "Mul":
        return {"scale": v, "shift": zeros}
    if not first:
        raise refusal(where, op, "dividing a constant by an activation is not linear", "divide by a constant only")
    return {"scale": [1.0 / x for x in v], "shift": zeros}


def _resize_attrs(node, a: dict, ins: list[str], consts: dict, shapes: dict, where: str) -> dict:
    """Resize as a torch upsample: the integer scale, nearest (asymmetric/floor or half-pixel rounding)
    or bilinear (half-pixel: align_corners=False; align_corners)."""
    def s(v):
        return v.decode() if isinstance(v, bytes) else v

    mode, ctm = s(a.get("mode", "nearest")), s(a.get("coordinate_transformation_mode", "half_pixel"))
    if a.get("antialias", 0):
        raise refusal(where, "Resize", "antialias=1", "export without antialiasing")
    scales = None
    if len(node.input) > 2 and node.input[2] and node.input[2] in consts and consts[node.input[2]].size:
        scales = [float(x) for x in consts[node.input[2]].reshape(-1)]
    elif len(node.input) > 3 and node.input[3] in consts:
        sizes = consts[node.input[3]].reshape(-1).tolist()
        src = shapes.get(node.input[0])
        if not src or None in src[2:]:
            raise refusal(where, "Resize", "sizes without a known input shape", "export with scale_factor")
        scales = [o / i for o, i in zip(sizes, src)]
    if not scales or len(scales) != 4 or scales[0] != 1 or scales[1] != 1 or scales[2] != scales[3] or scales[2] % 1:
        raise refusal(where, "Resize", f"scales {scales} are not one integer factor on H and W",
                      "upsample by the same integer factor in both directions")
    if mode == "nearest":
        nm = s(a.get("nearest_mode", "round_prefer_floor"))
        ok = (ctm == "asymmetric" and nm == "floor") or (ctm in ("half_pixel", "pytorch_half_pixel")
                                                         and nm in ("round_prefer_floor", "round_prefer_ceil"))
        if not ok:
            raise refusal(where, "Resize", f"nearest with coordinate_transformation_mode={ctm!r}, nearest_mode={nm!r} "
                          f"differs from torch's nearest", "export torch nn.Upsample(mode='nearest')")
        return {"mode": "nearest", "align_corners": None, "scale_factor": scales[2]}
    if mode == "linear" and ctm in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        return {"mode": "bilinear", "align_corners": ctm == "align_corners", "scale_factor": scales[2]}
    raise refusal(where, "Resize", f"mode={mode!r} with coordinate_transformation_mode={ctm!r}",
                  "use nearest or bilinear (half_pixel or align_corners)")
