"""auto_LiRPA backend: the network it is given equals the detector (upsampling rewrite included,
without auto_LiRPA), unsupported layers are refused up front, and with auto_LiRPA installed it
runs soundly on every shipped model (skipped with the reason when it is absent). The missing-install
error is tested in test_certify_api.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from usn_robust_keypoints.certify import Status, certify
from usn_robust_keypoints.certify.lirpa import lirpa_network, upsample_as_conv_transpose
from usn_robust_keypoints.data import generate_split
from usn_robust_keypoints.model import DetectorConfig, HeatmapDetector, load_model
from usn_robust_keypoints.perturbation import PerturbationBox, apply_perturbation
from usn_robust_keypoints.weights import WEIGHTS_DIR

from random_nets import random_model

torch.set_num_threads(1)
SHIPPED = sorted(p.name for p in WEIGHTS_DIR.glob("*.safetensors"))


def _lirpa_available() -> bool:
    try:
        import auto_LiRPA  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("scale", [2, 3])
def test_upsample_rewrite_is_identical(scale: int) -> None:
    x = torch.randn(3, 5, 7, 9)
    up = nn.Upsample(scale_factor=scale, mode="nearest")
    assert torch.equal(upsample_as_conv_transpose(up, 5)(x), up(x))


def test_upsample_rewrite_refuses_other_modes() -> None:
    with pytest.raises(ValueError, match="nearest"):
        upsample_as_conv_transpose(nn.Upsample(scale_factor=2, mode="bilinear"), 3)
    with pytest.raises(ValueError, match="integer"):
        upsample_as_conv_transpose(nn.Upsample(scale_factor=1.5, mode="nearest"), 3)


@pytest.mark.parametrize("name", SHIPPED)
def test_lirpa_network_equals_detector(name: str) -> None:
    """theta -> flattened heatmaps of the rewritten network == the detector on the perturbed input."""
    model = load_model(WEIGHTS_DIR / name, device="cpu")
    assert any(isinstance(m, nn.Upsample) for m in model.detector.net)  # the rewrite is exercised
    x0, _ = model.preprocess(generate_split("test", 1, progress=False)[0][0])
    net = lirpa_network(model.detector, x0)
    assert not any(isinstance(m, nn.Upsample) for m in net)
    theta = PerturbationBox(0.1, 0.1).sample(6, torch.Generator().manual_seed(0)).float()
    with torch.no_grad():
        ref = model.detector(apply_perturbation(x0.expand(6, -1, -1, -1), theta[:, 0], theta[:, 1])).flatten(1)
        got = net(theta)
    assert torch.allclose(got, ref, atol=1e-5 * (1 + float(ref.abs().max())), rtol=0)


def test_input_clamp_is_expressed() -> None:
    torch.manual_seed(0)
    det = HeatmapDetector(DetectorConfig(num_keypoints=2, input_width=16, input_height=16, stem_width=3, width=4,
                                         depth=1, head_width=3, input_clamp=0.05)).eval()
    x0 = torch.rand(1, 1, 16, 16)
    x0[..., :3, :] = 0.0
    theta = PerturbationBox(0.2, 0.2).sample(8, torch.Generator().manual_seed(1)).float()
    with torch.no_grad():
        ref = det(apply_perturbation(x0.expand(8, -1, -1, -1), theta[:, 0], theta[:, 1])).flatten(1)
        assert torch.allclose(lirpa_network(det, x0)(theta), ref, atol=1e-5)


def test_unsupported_layers_are_refused_up_front() -> None:
    x0 = torch.rand(1, 1, 8, 8)
    rep = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="replicate"), nn.ReLU(), nn.Conv2d(2, 1, 1))
    with pytest.raises(ValueError, match="replicate"):
        lirpa_network(rep, x0)
    pool = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(2, 1, 1))
    with pytest.raises(ValueError, match="MaxPool2d"):
        lirpa_network(pool, x0)


def _max_sampled_distance(model, image, eps: float, fc, n: int) -> list[float]:
    x0, geo = model.preprocess(image)
    theta = PerturbationBox(eps, eps).sample(n, torch.Generator().manual_seed(0)).float()
    with torch.no_grad():
        hm = model.detector(apply_perturbation(x0.expand(len(theta), -1, -1, -1), theta[:, 0], theta[:, 1]))
    idx = hm.flatten(2).argmax(2)
    w, s = hm.shape[-1], model.config.output_stride
    out = []
    for k in fc.keypoints:
        xs = (((idx[:, k.index] % w) + 0.5) * s - 0.5 + 0.5) * geo.scale[0] - 0.5
        ys = (((idx[:, k.index] // w) + 0.5) * s - 0.5 + 0.5) * geo.scale[1] - 0.5
        out.append(float(torch.hypot(xs.double() - k.x, ys.double() - k.y).max()))
    return out


@pytest.mark.skipif(not _lirpa_available(), reason="auto_LiRPA not importable (it is installed from source only)")
def test_lirpa_certifies_soundly_through_the_upsample_rewrite() -> None:
    """A small stride-2 model (nearest upsampling inside): CROWN certifies at ±0.001 and no
    certificate is broken by 10^4 sampled thetas (corners and edges included)."""
    config = DetectorConfig(num_keypoints=2, input_width=32, input_height=24, output_stride=2, stem_width=4,
                            width=6, depth=1, head_width=4)
    model = random_model(0, config)
    image = generate_split("test", 1, progress=False)[0][0]
    fc = certify(model, image, 0.001, 0.001, radius=30.0, backend="auto_lirpa", method="CROWN", margins=False)
    assert sum(k.certified for k in fc.keypoints) > 0
    for k, d in zip(fc.keypoints, _max_sampled_distance(model, image, 0.001, fc, 10_000)):
        assert k.certified_radius >= d - 1e-6
        assert not k.certified or d <= k.radius


@pytest.mark.skipif(not _lirpa_available(), reason="auto_LiRPA not importable (it is installed from source only)")
@pytest.mark.parametrize("name", SHIPPED)
def test_lirpa_backend_runs_and_is_sound_on_shipped_models(name: str) -> None:
    """IBP through auto_LiRPA on every shipped model: no error, and every r* it reports contains
    the argmax of 2000 sampled thetas (IBP proves nothing on these deep models even at ±0.002:
    what it proves is checked on the small model below)."""
    model = load_model(WEIGHTS_DIR / name, device="cpu")
    image = generate_split("test", 1, progress=False)[0][0]
    eps = 0.002
    fc = certify(model, image, eps, eps, radius=4.0, backend="auto_lirpa", method="IBP", margins=False)
    for k, d in zip(fc.keypoints, _max_sampled_distance(model, image, eps, fc, 2000)):
        assert k.status in Status
        assert k.certified_radius >= d - 1e-6
    assert np.isfinite([k.certified_radius for k in fc.keypoints]).all()


@pytest.mark.skipif(not _lirpa_available(), reason="auto_LiRPA not importable (it is installed from source only)")
def test_full_backward_methods_refused_up_front_on_shipped_models() -> None:
    model = load_model(device="cpu")
    image = generate_split("test", 1, progress=False)[0][0]
    for method in ("full-CROWN", "alpha-CROWN"):
        with pytest.raises(ValueError, match="GB for this model"):
            certify(model, image, backend="auto_lirpa", method=method, margins=False)
