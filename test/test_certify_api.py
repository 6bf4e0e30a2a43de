"""certify(): input validation, result semantics, CLI, and the auto_LiRPA backend (when importable)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from usn_robust_keypoints import certify
from usn_robust_keypoints.certify import CertifyOptions, PerturbationBox, Status, validate_request
from usn_robust_keypoints.certify.bounds import bound_layers
from usn_robust_keypoints.cli import main
from usn_robust_keypoints.draw import COLORS
from usn_robust_keypoints.model import DetectorConfig, HeatmapDetector, KeypointModel, save_checkpoint

torch.set_num_threads(1)
CFG = DetectorConfig(num_keypoints=2, input_width=32, input_height=24, output_stride=4, stem_width=4, width=6, depth=1)


@pytest.fixture(scope="module")
def model() -> KeypointModel:
    torch.manual_seed(0)
    return KeypointModel(HeatmapDetector(CFG).eval(), device="cpu")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2.resize(rng.integers(0, 256, (7, 9)).astype(np.uint8), (40, 30), interpolation=cv2.INTER_LINEAR)


@pytest.mark.parametrize("kwargs, match", [
    (dict(alpha=-0.1), "alpha"), (dict(beta=-0.1), "beta"), (dict(alpha=1.0), "alpha"), (dict(beta=1.5), "beta"),
    (dict(radius=-1.0), "radius"), (dict(radius=math.nan), "radius"), (dict(backend="magic"), "backend"),
    (dict(budget_ms=-5.0), "budget"), (dict(budget_ms=math.inf), "budget"), (dict(method="magic"), "method"),
    (dict(max_depth=-1), "max_depth"),
    (dict(box=PerturbationBox(0.01, 0.01), alpha=0.01), "not both"),
    (dict(options=CertifyOptions(margins=False), backward=False), "not both"),
])
def test_bad_arguments(model, image, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        certify(model, image, **kwargs)


def test_one_request_validation() -> None:
    """validate_request is the one rule set (the API, the CLI and the certifier node call it):
    radius 0 is a request (the argmax stays in the nominal cell), beta is capped at 1."""
    assert validate_request((0.02, 0.03), 0.0) == PerturbationBox(0.02, 0.03)
    assert validate_request(PerturbationBox(0.0, 1.0), 4.0, "auto_lirpa", 0.0) == PerturbationBox(0.0, 1.0)
    for bad in [((0.02, 1.01), 4.0, "native", None), ((0.02, 0.02), -0.5, "native", None),
                ((0.02, 0.02), True, "native", None), ((0.02, 0.02), 4.0, "native", float("nan"))]:
        with pytest.raises(ValueError):
            validate_request(*bad)


def test_box_and_options_form_is_the_keyword_form(model, image) -> None:
    """certify(box=..., options=...) gives the same certificates as the keyword form; the default box
    is PerturbationBox()."""
    a = certify(model, image, 0.01, 0.03, radius=6.0, margins=False, max_depth=2)
    b = certify(model, image, box=PerturbationBox(0.01, 0.03), radius=6.0,
                options=CertifyOptions(margins=False, max_depth=2))
    assert (b.alpha, b.beta) == (0.01, 0.03)
    assert [(k.status, k.certified_radius) for k in a.keypoints] == [(k.status, k.certified_radius) for k in b.keypoints]
    d = certify(model, image, options=CertifyOptions(margins=False))
    assert (d.alpha, d.beta) == (PerturbationBox().alpha, PerturbationBox().beta)


def test_bad_images(model, image) -> None:
    with pytest.raises(ValueError, match="uint8"):
        certify(model, image.astype(np.float32))
    bad = image.astype(np.float64)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        certify(model, bad)
    with pytest.raises(ValueError, match="shape"):
        certify(model, np.zeros((30, 40, 2), np.uint8))
    with pytest.raises(ValueError, match="numpy"):
        certify(model, [[0, 1]])


def test_unsupported_layer_is_named() -> None:
    with pytest.raises(ValueError, match="MaxPool2d"):
        bound_layers(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Conv2d(2, 1, 1)))


def test_result_fields_match_predict(model, image) -> None:
    fc = certify(model, image, 0.01, 0.01, radius=6.0)
    pred = model.predict(image)
    assert (fc.frame_width, fc.frame_height) == (40, 30) and fc.backend == "native"
    assert len(fc.keypoints) == CFG.num_keypoints
    for k in fc.keypoints:
        assert (k.x, k.y) == pytest.approx(tuple(pred.keypoints[k.index]))
        assert k.status in Status and k.time_ms >= 0
        assert k.certified == (k.certified_radius <= 6.0 and k.status is Status.CERTIFIED)
    json.dumps(fc.to_dict())
    quick = certify(model, image, 0.01, 0.01, radius=6.0, margins=False)
    assert all(math.isnan(k.beta_star) and math.isnan(k.alpha_star) for k in quick.keypoints)


def test_cli_certify(tmp_path, model, image) -> None:
    ckpt = save_checkpoint(model.detector, tmp_path / "m.safetensors")
    cv2.imwrite(str(tmp_path / "a.png"), image)
    out = tmp_path / "r.json"
    rc = main(["certify", "--model", str(ckpt), "--images", str(tmp_path), "--alpha", "0.01", "--beta", "0.01",
               "--no-margins", "--json", str(out), "--plot", str(tmp_path / "p.png"), "--threads", "1"])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["summary"]["keypoints"] == CFG.num_keypoints and len(doc["frames"]) == 1
    plot = cv2.imread(str(tmp_path / "p.png"))
    assert plot.shape == (360, 480, 3)  # the 40x30 frame upscaled x12 (draw.draw_certificate, min_size 480)
    statuses = {Status(k["status"]) for f in doc["frames"] for k in f["keypoints"]}
    assert any((plot == np.array(COLORS[s], np.uint8)).all(axis=-1).any() for s in statuses)  # status colours drawn
    assert main(["certify", "--model", str(ckpt), "--images", str(tmp_path), "--radius", "-1"]) == 2


def _lirpa_available() -> bool:
    try:
        import auto_LiRPA  # noqa: F401
    except ImportError:
        return False
    return True


def test_lirpa_missing_error_names_install(model, image) -> None:
    if _lirpa_available():
        pytest.skip("auto_LiRPA is importable here")
    with pytest.raises(ImportError, match="git\\+https://github.com/Verified-Intelligence/auto_LiRPA"):
        certify(model, image, backend="auto_lirpa")


@pytest.mark.skipif(not _lirpa_available(), reason="auto_LiRPA not importable (installed from source only)")
@pytest.mark.parametrize("method", ["IBP", "CROWN"])
def test_lirpa_backend_sound_and_agrees(model, image, method) -> None:
    from usn_robust_keypoints.perturbation import PerturbationBox, apply_perturbation

    fc = certify(model, image, 0.01, 0.01, radius=6.0, backend="auto_lirpa", method=method)
    native = certify(model, image, 0.01, 0.01, radius=6.0, margins=False)
    x0, geo = model.preprocess(image)
    theta = PerturbationBox(0.01, 0.01).sample(10_000, torch.Generator().manual_seed(0))
    with torch.no_grad():
        hm = model.detector(apply_perturbation(x0.expand(len(theta), -1, -1, -1), theta[:, 0].float(), theta[:, 1].float()))
    idx = hm.flatten(2).argmax(2)
    w = hm.shape[-1]
    s = CFG.output_stride
    for k, (a, b) in enumerate(zip(fc.keypoints, native.keypoints)):
        assert (a.x, a.y) == (b.x, b.y)
        xs = (((idx[:, k] % w) + 0.5) * s - 0.5 + 0.5) * geo.scale[0] - 0.5
        ys = (((idx[:, k] // w) + 0.5) * s - 0.5 + 0.5) * geo.scale[1] - 0.5
        d = torch.hypot(xs.double() - a.x, ys.double() - a.y).max()
        assert a.certified_radius >= float(d) - 1e-6


def test_bench_certify_keeps_checkpoints_with_the_same_file_name_apart(model, tmp_path):
    """Two checkpoints named alike (e.g. the same method in two seed folders) get two row groups."""
    for seed in ("s0", "s1"):
        (tmp_path / seed).mkdir()
        save_checkpoint(model.detector, tmp_path / seed / "m.safetensors")
    out = tmp_path / "bench.md"
    rc = main(["bench-certify", "--out", str(out), "--frames", "1", "--lirpa-frames", "0", "--threads", "1",
               "--train-steps", "2", "--model", str(tmp_path / "s0" / "m.safetensors"),
               "--model", str(tmp_path / "s1" / "m.safetensors"), "--eps", "0.01", "0.02",
               "--real-frames", "1", "--real-synthetic", "1", "--real-eps", "0.02", "--real-budgets", "0",
               "--real-derived", "50", "--real-cap-s", "5"])
    assert rc == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| s")]
    for seed in ("s0", "s1"):  # 3 native methods x the 2 boxes asked for per checkpoint, no mixing
        assert sum(line.startswith(f"| {seed}/m.safetensors ") for line in rows) == 6
    assert {line.split(" | ")[1] for line in rows} == {"0.01", "0.02"}
    real = [line for line in out.read_text().splitlines() if line.startswith(("| left*", "| synthetic"))]
    assert len(real) == 2 and all(len(line.split(" | ")) == 4 + 2 * 3 + 1 for line in real)
