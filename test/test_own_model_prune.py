"""Pruning an imported network with the package's criteria and Torch-Pruning surgery, saving it as
a graph checkpoint, reloading it (load_model and the nodes' loader), and exporting it to ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from usn_robust_keypoints.certify import certify
from usn_robust_keypoints.certify.bounds import bound_layers
from usn_robust_keypoints.model import KeypointModel, load_model
from usn_robust_keypoints.model.checkpoint import CheckpointError
from usn_robust_keypoints.model.graph import import_module
from usn_robust_keypoints.model.graph.checkpoint import load_graph_checkpoint, save_graph_checkpoint
from usn_robust_keypoints.model.graph.export import export_onnx
from usn_robust_keypoints.nodes.model_loading import load_node_model
from usn_robust_keypoints.prune.baselines import baseline_importance
from usn_robust_keypoints.prune.surgery import (UsnImportance, channel_importance, count_hidden_channels,
                                                 remove_channels, select_channels)
from usn_robust_keypoints.prune.usn import hidden_convs, usn_scores

from own_nets import zoo

torch.set_num_threads(1)
NETS = zoo(0)


@pytest.mark.parametrize("name, criterion", [("resnet_like", "usn"), ("unet_like", "usn"), ("color_normalised", "l1"),
                                             ("resnet_downsampling", "usn"),
                                             ("resnet_like", "bn")])
def test_prune_save_reload_export(name: str, criterion: str, tmp_path) -> None:
    """A quarter of the hidden channels removed (residual widths pruned together, concat inputs
    remapped by Torch-Pruning); the checkpoint and the ONNX export reload to the same heatmaps,
    the bounds build and certify runs on the reloaded model."""
    module, spec = NETS[name]
    det = import_module(module, spec)
    assert hidden_convs(det)
    n0 = count_hidden_channels(det)
    x = torch.rand(8, spec.in_channels, 32, 32)
    if criterion == "usn":
        importance = UsnImportance.from_layer_scores(det, usn_scores(det, x))
    else:
        importance = baseline_importance(criterion)
    remove_channels(det, select_channels(channel_importance(det, importance), n0 // 4))
    assert count_hidden_channels(det) == n0 - n0 // 4
    path = save_graph_checkpoint(det, tmp_path / "pruned", extra={"pruning": criterion})
    reloaded = load_model(path, device="cpu")
    onnx_model = load_model(export_onnx(det, tmp_path / "pruned.onnx"), device="cpu")
    with torch.no_grad():
        ref = det(x)
        assert torch.allclose(reloaded.detector(x), ref, atol=1e-5)
        assert torch.allclose(onnx_model.detector(x), ref, atol=1e-5)
    assert reloaded.info == {"pruning": criterion} and reloaded.config == det.config
    assert node_loads(path) and node_loads(tmp_path / "pruned.onnx")
    assert bound_layers(reloaded.detector)
    image = (np.random.default_rng(0).integers(0, 256, (32, 32, spec.in_channels)).astype(np.uint8)).squeeze()
    fc = certify(reloaded, image, 0.005, 0.005, 6.0, margins=False)
    assert len(fc.keypoints) == 2


def node_loads(path) -> bool:
    """The nodes' loader (``model_path`` parameter) gives a runnable model."""
    model = load_node_model(str(path), "cpu")
    return isinstance(model, KeypointModel) and model.predict(np.zeros((40, 40), np.uint8)).keypoints.shape == (2, 2)


def test_graph_checkpoint_rejects_bad_files(tmp_path) -> None:
    module, spec = NETS["unet_like"]
    path = save_graph_checkpoint(import_module(module, spec), tmp_path / "ok.safetensors")
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    bad_op = meta["graph"].replace('"op": "relu"', '"op": "sigmoid"', 1)
    save_file(state, str(tmp_path / "bad_op.safetensors"), metadata={**meta, "graph": bad_op})
    with pytest.raises(CheckpointError, match="unknown op"):
        load_graph_checkpoint(tmp_path / "bad_op.safetensors")
    state[next(iter(state))] = torch.zeros(1)
    save_file(state, str(tmp_path / "bad_w.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="do not match"):
        load_graph_checkpoint(tmp_path / "bad_w.safetensors")
    with pytest.raises(ValueError, match="cannot load model"):
        load_node_model(str(tmp_path / "missing.onnx"), "cpu")


def test_cli_export_onnx(tmp_path, capsys) -> None:
    """``usn-keypoints export-onnx`` of an imported-graph checkpoint writes a file that reloads to
    the same heatmaps; a bad opset is a clear error (exit status 2)."""
    from usn_robust_keypoints.cli import main

    module, spec = NETS["resnet_downsampling"]
    ckpt = save_graph_checkpoint(import_module(module, spec), tmp_path / "m.safetensors")
    assert main(["export-onnx", "--model", str(ckpt), "--out", str(tmp_path / "m.onnx")]) == 0
    assert "reloaded: max heatmap difference" in capsys.readouterr().out
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(load_model(tmp_path / "m.onnx").detector(x), load_model(ckpt).detector(x), atol=1e-5)
    assert main(["export-onnx", "--model", str(ckpt), "--out", str(tmp_path / "o.onnx"), "--opset", "9"]) == 2
    assert "opset must be >= 11" in capsys.readouterr().err
