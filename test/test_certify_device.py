"""Certification on an accelerator runs the same code as on the CPU: same verdicts, and every
certificate survives sampling there. Device from ``USN_TEST_DEVICE`` (default ``cuda``; skipped
when CUDA is absent, as in CI), samples per certified keypoint from ``USN_TEST_SAMPLES`` (default
10^4). ``scripts/gpu_check.sh`` runs it on a GPU; ``USN_TEST_DEVICE=cpu`` checks the test itself."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from usn_robust_keypoints.certify import Status, certify
from usn_robust_keypoints.certify.exact import exact_verdict
from usn_robust_keypoints.data import generate_split
from usn_robust_keypoints.model import DetectorConfig, load_model
from usn_robust_keypoints.model.preprocess import FrameGeometry
from usn_robust_keypoints.perturbation import PerturbationBox, apply_perturbation

from random_nets import random_model

DEVICE = os.environ.get("USN_TEST_DEVICE", "cuda")
SAMPLES = int(os.environ.get("USN_TEST_SAMPLES", "10000"))
pytestmark = pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                                reason="no CUDA device (set USN_TEST_DEVICE=cpu to run these checks on the CPU)")
torch.set_num_threads(1)
EPS, RADIUS = 0.01, 4.0


def _frames() -> list[np.ndarray]:
    frames = list(generate_split("test", 2, progress=False)[0])
    try:
        import cv2

        from usn_robust_keypoints.data.opencv_doc import opencv_doc_data

        frames.append(cv2.imread(str(opencv_doc_data() / "left01.jpg")))
    except RuntimeError:  # opencv-doc photos not installable here: synthetic frames only
        pass
    return frames


def _violations(model, image: np.ndarray, fc) -> int:
    """Sampled thetas (corners and edges included) whose argmax leaves a certified keypoint's disk."""
    x0, geo = model.preprocess(image)
    theta = PerturbationBox(EPS, EPS).sample(SAMPLES, torch.Generator().manual_seed(0)).float().to(x0.device)
    w, s = model.config.heatmap_size[1], model.config.output_stride
    bad = 0
    for i in range(0, SAMPLES, 1000):
        t = theta[i:i + 1000]
        with torch.no_grad():
            idx = model.detector(apply_perturbation(x0.expand(len(t), -1, -1, -1), t[:, 0], t[:, 1])).flatten(2).argmax(2)
        for k in fc.keypoints:
            if k.certified:
                xs = (((idx[:, k.index] % w) + 0.5) * s - 0.5 + 0.5) * geo.scale[0] - 0.5
                ys = (((idx[:, k.index] // w) + 0.5) * s - 0.5 + 0.5) * geo.scale[1] - 0.5
                bad += int((torch.hypot(xs.double() - k.x, ys.double() - k.y) > k.radius + 1e-6).sum())
    return bad


def test_device_certificates_sound_and_equal_to_cpu() -> None:
    gpu = load_model(device=DEVICE)
    cpu = load_model(device="cpu")
    certified = 0
    for image in _frames():
        fc = certify(gpu, image, EPS, EPS, RADIUS, margins=False)
        ref = certify(cpu, image, EPS, EPS, RADIUS, margins=False)
        assert [k.certified for k in fc.keypoints] == [k.certified for k in ref.keypoints]
        assert _violations(gpu, image, fc) == 0
        certified += sum(k.certified for k in fc.keypoints)
        assert all(k.status in Status for k in fc.keypoints)
    assert certified > 0  # the check above is not vacuous


def test_exact_verdict_same_on_device() -> None:
    config = DetectorConfig(num_keypoints=2, input_width=16, input_height=16, output_stride=2, stem_width=3,
                            width=4, depth=1, head_width=3)
    model = random_model(1, config)
    x0 = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    geo = FrameGeometry(16, 16, 16, 16)
    ref = exact_verdict(model.detector, x0, geo, 0, 0.3, 0.3, 0.0)
    det = model.detector.to(DEVICE)
    got = exact_verdict(det, x0.to(DEVICE), geo, 0, 0.3, 0.3, 0.0)
    assert got.verdict == ref.verdict and got.regions == ref.regions
