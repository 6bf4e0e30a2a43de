"""ONNX round trip of a user's network: torch.onnx.export (legacy exporter, no onnxscript) ->
import_onnx: the same heatmaps, the same bound layers, sound certificates; refusals name the node."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnx")

from usn_robust_keypoints.certify import certify
from usn_robust_keypoints.certify.bounds import bound_layers, propagate
from usn_robust_keypoints.model import load_model
from usn_robust_keypoints.model.graph import ModelSpec, import_module
from usn_robust_keypoints.model.graph.onnx_import import import_onnx

from own_nets import zoo

torch.set_num_threads(1)
NETS = {k: v for k, v in zoo(0).items() if k != "conv_circular"}  # circular padding exports as Slice/Concat
NETS["conv_strides_groups"] = (nn.Sequential(
    nn.Conv2d(1, 4, 3, 2, 1), nn.BatchNorm2d(4).eval(), nn.ReLU(), nn.Conv2d(4, 4, 3, 1, 2, dilation=2, groups=2),
    nn.ReLU(), nn.Conv2d(4, 4, 5, 1, 2, groups=4), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval(), ModelSpec(32, 32))


def export(module: nn.Module, spec: ModelSpec, path, opset: int = 13) -> None:
    x = torch.rand(1, spec.in_channels, spec.input_height, spec.input_width)
    torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=opset)


@pytest.mark.parametrize("name", sorted(NETS))
def test_onnx_round_trip_exact(name: str, tmp_path) -> None:
    """The user's module exported to ONNX and imported: the same heatmaps as the module and as the
    fx import, and bound layers of the same types."""
    module, spec = NETS[name]
    path = tmp_path / f"{name}.onnx"
    export(module, spec, path)
    det = import_onnx(path, spec)  # the spec's normalisation, as for the module
    ref = import_module(module, spec)
    x = torch.rand(2, spec.in_channels, 32, 32)
    with torch.no_grad():
        assert torch.allclose(det(x), ref(x), atol=1e-5)
        f = propagate(bound_layers(det), x[:1], torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
        assert torch.allclose(f.lower[:, 0], ref(x[:1]), atol=1e-5)
    assert [type(l).__name__ for l in bound_layers(det)] == [type(l).__name__ for l in bound_layers(ref)]


def test_onnx_of_shipped_default_certifies_like_native(tmp_path) -> None:
    """The shipped default exported to ONNX and loaded with load_model(path.onnx): spec from the
    file, same heatmaps, same statuses and radii as the native model."""
    native = load_model(device="cpu")
    c = native.config
    path = tmp_path / "default.onnx"
    export(native.detector, ModelSpec(c.input_width, c.input_height), path)
    model = load_model(path, device="cpu")
    assert (model.config.input_width, model.config.input_height, model.config.output_stride) == (128, 96, 2)
    image = (np.indices((96, 128)).sum(0) // 16 % 2 * 200 + 20).astype(np.uint8)
    assert np.allclose(model.predict(image).heatmaps, native.predict(image).heatmaps, atol=1e-5)
    a = certify(native, image, 0.01, 0.01, 4.0, margins=False)
    b = certify(model, image, 0.01, 0.01, 4.0, margins=False)
    assert [k.status for k in a.keypoints] == [k.status for k in b.keypoints]


@pytest.mark.parametrize("act, needle", [(nn.Sigmoid(), "Sigmoid"), (nn.Softmax(dim=1), "move the softmax out"),
                                         (nn.Tanh(), "ReLU or LeakyReLU"), (nn.GELU(), "not one of the supported"),
                                         (nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular"), "node")])
def test_onnx_refusals_name_the_node(act: nn.Module, needle: str, tmp_path) -> None:
    module = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), act, nn.Conv2d(2, 2, 1)).eval()
    path = tmp_path / "bad.onnx"
    export(module, ModelSpec(32, 32), path)
    with pytest.raises(ValueError) as e:
        import_onnx(path)
    assert "cannot certify this network: node" in str(e.value) and needle in str(e.value), str(e.value)


def test_onnx_bad_files_refused(tmp_path) -> None:
    import onnx
    from onnx import TensorProto, helper

    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ValueError, match="not a readable ONNX file"):
        import_onnx(bad)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])
    old = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                            opset_imports=[helper.make_opsetid("", 9)])
    onnx.save(old, str(tmp_path / "old.onnx"))
    with pytest.raises(ValueError, match="opset 9 is too old"):
        import_onnx(tmp_path / "old.onnx")
