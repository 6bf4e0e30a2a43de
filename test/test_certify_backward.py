"""Backward (CROWN-style) refinement of the native certifier: soundness by sampling, never looser
than the forward difference bound once combined, exactness in the linear regime, certificates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from usn_robust_keypoints.certify import Status, certify
from usn_robust_keypoints.certify.backward import backward_margins
from usn_robust_keypoints.certify.bounds import bound_layers, propagate
from usn_robust_keypoints.certify.native import frame_context, search
from usn_robust_keypoints.model import DetectorConfig, HeatmapDetector, KeypointModel
from usn_robust_keypoints.model.preprocess import FrameGeometry, decode_heatmaps
from usn_robust_keypoints.perturbation import apply_perturbation

from random_nets import random_model

torch.set_num_threads(1)


def _net(seed: int) -> nn.Sequential:
    """Stride-2 convs, a nearest x2 upsample and a 1x1 head, random weights and biases."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, stride=2, padding=1),
                         nn.ReLU(), nn.Conv2d(5, 5, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
                         nn.Conv2d(5, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()


def _all_rows(n_boxes: int, k: int, hw: int, gen: torch.Generator, n: int) -> torch.Tensor:
    q = torch.randint(0, hw, (n,), generator=gen)
    s = (q + 1 + torch.randint(0, hw - 1, (n,), generator=gen)) % hw
    return torch.stack([torch.randint(0, n_boxes, (n,), generator=gen), torch.randint(0, k, (n,), generator=gen),
                        q, s], dim=1)


def _sampled_min(net: nn.Module, x0: torch.Tensor, box: list[float], rows: torch.Tensor, n: int) -> torch.Tensor:
    """min over >= n sampled theta (corners and edges included) of H[k, q] - H[k, s] per row."""
    gen = torch.Generator().manual_seed(7)
    cl, cu, bl, bu = box
    c = cl + (cu - cl) * torch.rand(n, generator=gen)
    b = bl + (bu - bl) * torch.rand(n, generator=gen)
    c[: n // 4] = torch.where(torch.rand(n // 4, generator=gen) < 0.5, cl, cu)  # on the c edges
    b[n // 4: n // 2] = torch.where(torch.rand(n - n // 2 - n // 4, generator=gen) < 0.5, bl, bu)  # b edges
    c[:4], b[:4] = torch.tensor([cl, cl, cu, cu]), torch.tensor([bl, bu, bl, bu])
    with torch.no_grad():
        y = torch.cat([net(apply_perturbation(x0.expand(len(ci), -1, -1, -1), ci, bi)).flatten(2)
                       for ci, bi in zip(c.split(2500), b.split(2500))])  # (n, K, hw)
    return (y[:, rows[:, 1], rows[:, 2]] - y[:, rows[:, 1], rows[:, 3]]).amin(dim=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_backward_margins_contain_sampled_outputs(seed: int) -> None:
    """>= 10^4 sampled theta per box: every sampled H_q - H_s lies above its backward lower bound,
    for small, clipped (kink at 0 or 1) and very large boxes (both kinks of the clip)."""
    net = _net(seed)
    layers = bound_layers(net)
    x0 = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(seed))
    x0[..., :3, :] = 0.0  # pixels at the clip limits
    x0[..., -3:, :] = 1.0
    gen = torch.Generator().manual_seed(seed)
    for box in ([0.98, 1.02, -0.02, 0.02], [0.9, 1.1, -0.1, 0.1], [0.4, 1.6, -0.6, 0.6], [1.0, 1.0, -0.3, 0.3]):
        trace: list = []
        f = propagate(layers, x0, torch.tensor([box]), trace)
        k, h, w = f.lower.shape[2:]
        rows = _all_rows(1, k, h * w, gen, 400)
        lb = backward_margins(layers, x0, torch.tensor([box]), trace, rows)
        true = _sampled_min(net, x0, box, rows, 10_000)
        tol = 1e-5 * (1 + float(true.abs().max()))
        assert (lb <= true + tol).all(), (box, float((lb - true).max()))


def test_backward_batches_boxes_like_single_boxes() -> None:
    """Rows over several sub-boxes in one batch give the same bounds as one box at a time."""
    net = _net(3)
    layers = bound_layers(net)
    x0 = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    boxes = torch.tensor([[0.9, 1.0, -0.1, 0.0], [1.0, 1.1, 0.0, 0.1], [0.95, 1.05, -0.05, 0.05]])
    trace: list = []
    f = propagate(layers, x0, boxes, trace)
    k, h, w = f.lower.shape[2:]
    rows = _all_rows(3, k, h * w, torch.Generator().manual_seed(0), 60)
    both = backward_margins(layers, x0, boxes, trace, rows)
    for n in range(3):
        t1: list = []
        propagate(layers, x0, boxes[n:n + 1], t1)
        sel = rows[:, 0] == n
        one = backward_margins(layers, x0, boxes[n:n + 1], t1, rows[sel] * torch.tensor([0, 1, 1, 1]))
        assert torch.allclose(both[sel], one, atol=1e-5)


def test_backward_tighter_on_average_and_combined_never_looser() -> None:
    """Alone, the backward bound is tighter on average than the forward difference bound (it can
    be looser on a few rows: the adaptive lower ReLU slope is chosen per neuron, not per row); the
    certifier uses max(forward, backward), which is never looser, so req never grows."""
    net = _net(4)
    layers = bound_layers(net)
    x0 = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    box = torch.tensor([[0.95, 1.05, -0.05, 0.05]])
    trace: list = []
    f = propagate(layers, x0, box, trace)
    k, h, w = f.lower.shape[2:]
    rows = _all_rows(1, k, h * w, torch.Generator().manual_seed(1), 2000)
    lb = backward_margins(layers, x0, box, trace, rows)
    lo, hi = f.lower.flatten(3)[0], f.upper.flatten(3)[0]  # (3, K, hw)
    d = lo[:, rows[:, 1], rows[:, 2]] - hi[:, rows[:, 1], rows[:, 3]]
    fwd = d[0] - d[1].abs() - d[2].abs()
    assert float(lb.mean()) > float(fwd.mean())
    assert float((lb >= fwd - 1e-6).float().mean()) > 0.9
    # Certifier level: one bound pass with the backward bounds proves every keypoint the forward
    # bounds alone prove (it only lowers requirements), and certifies the same way or better.
    det = HeatmapDetector(DetectorConfig(num_keypoints=2, input_width=32, input_height=24, output_stride=2,
                                         stem_width=4, width=6, depth=1, head_width=4)).eval()
    for seed in range(4):
        torch.manual_seed(seed)
        det = HeatmapDetector(det.config).eval()
        x = torch.rand(1, 1, 24, 32, generator=torch.Generator().manual_seed(seed))
        ctx = frame_context(det, x, FrameGeometry(32, 24, 32, 24))
        for box in ((0.99, 1.01, -0.01, 0.01), (0.9, 1.1, -0.1, 0.1)):
            with_b = search(ctx, box, 4.0, max_depth=0, backward=True)
            without = search(ctx, box, 4.0, max_depth=0, backward=False)
            for k in with_b:
                assert without[k].state != "proven" or with_b[k].state == "proven"


def test_backward_exact_in_linear_regime() -> None:
    """All ReLUs stably active and no clipping: H_q - H_s is affine in theta and the backward bound
    equals its minimum over a dense 101x101 theta grid (corners included)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
                        nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 1)).eval()
    with torch.no_grad():
        net[0].weight.abs_()
        net[0].bias.fill_(0.5)
        net[3].weight.abs_()
        net[3].bias.fill_(0.5)
    x0 = 0.2 + 0.6 * torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    box = [0.9, 1.1, -0.1, 0.1]
    layers = bound_layers(net)
    trace: list = []
    f = propagate(layers, x0, torch.tensor([box]), trace)
    k, h, w = f.lower.shape[2:]
    rows = torch.tensor([[0, kk, q, s] for kk in range(k) for q in range(h * w) for s in range(h * w) if q != s])
    lb = backward_margins(layers, x0, torch.tensor([box]), trace, rows)
    c, b = torch.meshgrid(torch.linspace(0.9, 1.1, 101), torch.linspace(-0.1, 0.1, 101), indexing="ij")
    with torch.no_grad():
        y = net(apply_perturbation(x0.expand(c.numel(), -1, -1, -1), c.flatten(), b.flatten())).flatten(2)
    true = (y[:, rows[:, 1], rows[:, 2]] - y[:, rows[:, 1], rows[:, 3]]).amin(dim=0)
    assert torch.allclose(lb, true, atol=1e-5), float((lb - true).abs().max())


def _stride2_model(seed: int) -> KeypointModel:
    return random_model(seed, DetectorConfig(num_keypoints=2, input_width=32, input_height=24, output_stride=2,
                                             stem_width=4, width=6, depth=1, head_width=4))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_certificates_with_backward_sound(seed: int) -> None:
    """Stride-2 detector (upsample inside): every sampled argmax (10^4 theta, corners and edges)
    stays within r* of the nominal cell, for certified and non-certified keypoints alike, and
    keypoints are certified (all of them when measured)."""
    import cv2

    model = _stride2_model(seed)
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 256, (7, 9)).astype(np.uint8), (40, 30), interpolation=cv2.INTER_LINEAR)
    x0, geo = model.preprocess(image)
    for eps, radius in ((0.01, 3.0), (0.05, 5.0)):
        fc = certify(model, image, eps, eps, radius=radius, margins=False)
        assert any(kc.certified for kc in fc.keypoints), (eps, radius)
        theta = torch.rand(10_000, 2, generator=torch.Generator().manual_seed(seed)) * 2 * eps - eps
        theta[:, 0] += 1
        theta[:4] = torch.tensor([[1 - eps, -eps], [1 - eps, eps], [1 + eps, -eps], [1 + eps, eps]])
        theta[4:2000, 0] = torch.where(theta[4:2000, 0] < 1, 1 - eps, 1 + eps)
        with torch.no_grad():
            hm = torch.cat([model.detector(apply_perturbation(x0.expand(len(t), -1, -1, -1), t[:, 0], t[:, 1]))
                            for t in theta.split(2500)])
        rows, cols, _ = decode_heatmaps(hm)
        s = model.config.output_stride
        xs = ((cols.double() + 0.5) * s - 0.5 + 0.5) * geo.scale[0] - 0.5
        ys = ((rows.double() + 0.5) * s - 0.5 + 0.5) * geo.scale[1] - 0.5
        for kc in fc.keypoints:
            d = torch.hypot(xs[:, kc.index] - kc.x, ys[:, kc.index] - kc.y)
            assert kc.certified_radius >= float(d.max()) - 1e-6
            if kc.status is Status.CERTIFIED:
                assert float(d.max()) <= radius + 1e-6
