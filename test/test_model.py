"""Detector, checkpoints, pre-processing and the predict API."""

import numpy as np
import pytest
import torch

from usn_robust_keypoints.model import (CheckpointError, DetectorConfig, HeatmapDetector, fold_batchnorm,
                                        load_detector, load_model, save_checkpoint)


def small_config(**kw):
    return DetectorConfig(**{"input_width": 64, "input_height": 48, "stem_width": 4, "width": 6, "depth": 1,
                             "head_width": 4, **kw})


def test_forward_shape_and_bn_folding():
    torch.manual_seed(0)
    m = HeatmapDetector(small_config())
    for mod in m.modules():  # non-trivial BN statistics
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
    m.eval()
    x = torch.rand(3, 1, 48, 64)
    y = m(x)
    assert y.shape == (3, 4, 24, 32)
    folded = fold_batchnorm(m.net)
    assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in folded)
    torch.testing.assert_close(folded(x), y, atol=1e-5, rtol=1e-5)


def test_checkpoint_round_trip(tmp_path):
    m = HeatmapDetector(small_config(output_stride=4))
    path = save_checkpoint(m, tmp_path / "m.safetensors", extra={"note": "x"})
    m2, extra = load_detector(path)
    assert extra == {"note": "x"} and m2.config == m.config
    x = torch.rand(1, 1, 48, 64)
    torch.testing.assert_close(m2(x), m.eval()(x))


def test_bad_checkpoints_raise_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_detector(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_detector(junk)
    # weights that do not fit the config
    path = save_checkpoint(HeatmapDetector(small_config()), tmp_path / "a.safetensors")
    other = save_checkpoint(HeatmapDetector(small_config(width=8)), tmp_path / "b.safetensors")
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    save_file(load_file(str(other)), str(tmp_path / "mixed.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="do not match the config"):
        load_detector(tmp_path / "mixed.safetensors")
    # a safetensors file that is not a detector checkpoint
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="not a usn_robust_keypoints detector"):
        load_detector(tmp_path / "plain.safetensors")


def test_predict_maps_keypoints_to_caller_pixels(tmp_path):
    torch.manual_seed(1)
    m = HeatmapDetector(small_config())
    path = save_checkpoint(m, tmp_path / "m.safetensors")
    model = load_model(path, device="cpu")
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (48, 64), dtype=np.uint8)
    big = np.repeat(np.repeat(small, 4, axis=0), 4, axis=1)  # same content, 4x the pixels
    bgr = np.repeat(big[:, :, None], 3, axis=2)
    p_small, p_big, p_bgr = model.predict(small), model.predict(big), model.predict(bgr)
    np.testing.assert_array_equal(p_small.cells, p_big.cells)
    np.testing.assert_allclose((p_small.keypoints + 0.5) * 4 - 0.5, p_big.keypoints)
    np.testing.assert_allclose(p_big.keypoints, p_bgr.keypoints)
    assert p_small.heatmaps.shape == (4, 24, 32) and p_small.scores.shape == (4,)
    # theta = identity changes nothing; a strong perturbation changes the heatmaps
    np.testing.assert_allclose(model.predict(small, theta=(1.0, 0.0)).heatmaps, p_small.heatmaps)
    assert not np.allclose(model.predict(small, theta=(0.5, 0.3)).heatmaps, p_small.heatmaps)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((48, 64), np.float32), "uint8"),
    (np.zeros((48, 64, 4), np.uint8), "shape"),
    (np.zeros((4, 4), np.uint8), "too small"),
])
def test_predict_rejects_bad_frames(tmp_path, bad, match):
    path = save_checkpoint(HeatmapDetector(small_config()), tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match=match):
        load_model(path, device="cpu").predict(bad)


def test_device_selection():
    from usn_robust_keypoints.model import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError):
        resolve_device("tpu")


def test_zero_mean_stem_cancels_brightness_and_survives_training(tmp_path):
    """Stem kernels stay zero-sum through training and a checkpoint; the stem's output then does not
    depend on brightness away from the zero-padded border (for unclipped pixels), and the bounds
    see it: the brightness coefficient of the first conv's forms vanishes there."""
    from usn_robust_keypoints.certify.bounds import bound_layers, propagate
    from usn_robust_keypoints.train import train_detector

    torch.manual_seed(0)
    m = HeatmapDetector(small_config(zero_mean_stem=True))
    rng = np.random.default_rng(0)
    images = rng.integers(40, 200, size=(16, 48, 64), dtype=np.uint8)
    kps = rng.uniform(8, 40, size=(16, 4, 2)).astype(np.float32)
    train_detector(m, images, kps, steps=3, batch_size=4, progress=False)
    m2, _ = load_detector(save_checkpoint(m, tmp_path / "zm.safetensors"))
    assert m2.config.zero_mean_stem
    for net in (m, m2):
        sums = net.net[0].weight.sum(dim=(1, 2, 3))
        torch.testing.assert_close(sums, torch.zeros_like(sums), atol=1e-6, rtol=0)
    x = torch.rand(1, 1, 48, 64) * 0.5 + 0.25  # stays unclipped for |b| <= 0.2
    stem = m2.net[0]
    with torch.no_grad():
        d = stem(x + 0.2) - stem(x)
    assert d[..., 1:-1, 1:-1].abs().max() < 1e-5 and d.abs().max() > 1e-3  # only the padded border moves
    f = propagate(bound_layers(m2.eval())[:1], x, torch.tensor([[1.0, 1.0, -0.2, 0.2]]))
    assert f.lower[:, 2, :, 1:-1, 1:-1].abs().max() < 1e-5


def test_replicate_padded_zero_mean_stem_cancels_brightness_everywhere(tmp_path):
    """With ``stem_padding='replicate'`` every stem tap reads an image pixel, so a zero-sum stem's
    output ignores brightness on the border too; the bounds are exact there (no width at all)."""
    from usn_robust_keypoints.certify.bounds import bound_layers, propagate

    torch.manual_seed(1)
    m = HeatmapDetector(small_config(zero_mean_stem=True, stem_padding="replicate"))
    assert m.net[0].padding_mode == "replicate"
    m2, _ = load_detector(save_checkpoint(m, tmp_path / "rep.safetensors"))
    assert m2.config.stem_padding == "replicate" and m2.net[0].padding_mode == "replicate"
    x = torch.rand(1, 1, 48, 64) * 0.5 + 0.25  # unclipped for |b| <= 0.2
    stem = m2.net[0]
    with torch.no_grad():
        assert (stem(x + 0.2) - stem(x)).abs().max() < 1e-5
    f = propagate(bound_layers(m2.eval())[:1], x, torch.tensor([[1.0, 1.0, -0.2, 0.2]]))
    assert (f.upper - f.lower).abs().max() < 1e-5 and f.lower[:, 2].abs().max() < 1e-5
    with pytest.raises(ValueError, match="stem_padding"):
        small_config(stem_padding="reflect")
