"""Native certifier: soundness by sampling, exactness on tiny nets, monotonicity, budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from usn_robust_keypoints.certify import Status, certify, certify_batch, worst_margins
from usn_robust_keypoints.certify.bounds import bound_layers, concrete_max, concrete_min, propagate
from usn_robust_keypoints.model import DetectorConfig, KeypointModel, load_model
from usn_robust_keypoints.model.preprocess import cell_centers, decode_heatmaps
from usn_robust_keypoints.perturbation import PerturbationBox, apply_perturbation
from usn_robust_keypoints.weights import WEIGHTS_DIR

from random_nets import random_model

torch.set_num_threads(1)

SMALL = DetectorConfig(num_keypoints=3, input_width=32, input_height=24, output_stride=4,
                       stem_width=4, width=6, depth=1)


def _random_model(seed: int, config: DetectorConfig = SMALL) -> KeypointModel:
    return random_model(seed, config)


def _frame(seed: int, w: int, h: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1)).astype(np.uint8)
    import cv2

    return cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)


def _eval_forms(form: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Evaluate affine forms (3, ...) at normalised parameters e (M, 2)."""
    return form[0] + e[:, 0].view(-1, *[1] * (form.dim() - 1)) * form[1] + e[:, 1].view(-1, *[1] * (form.dim() - 1)) * form[2]


def _check_bounds_contain_samples(model: KeypointModel, image: np.ndarray, box: PerturbationBox, n: int) -> float:
    x0, _ = model.preprocess(image)
    layers = bound_layers(model.detector)
    (cl, bl), (cu, bu) = box.lower, box.upper
    f = propagate(layers, x0, torch.tensor([[cl, cu, bl, bu]]))
    theta = box.sample(n, torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model.detector(apply_perturbation(x0.expand(n, -1, -1, -1), theta[:, 0].float(), theta[:, 1].float()))
    e = torch.stack([(theta[:, 0] - 1) / max(box.alpha, 1e-12), theta[:, 1] / max(box.beta, 1e-12)], 1).float()
    lo, hi = _eval_forms(f.lower[0], e), _eval_forms(f.upper[0], e)
    tol = 1e-5 * (1 + float(y.abs().max()))
    assert (y >= lo - tol).all(), float((lo - y).max())
    assert (y <= hi + tol).all(), float((y - hi).max())
    assert (concrete_min(f.lower) <= concrete_max(f.upper)).all()
    return float((hi - lo).max())


def _sampled_distances(model: KeypointModel, image: np.ndarray, box: PerturbationBox, n: int,
                       nominal: list[tuple[float, float]]) -> torch.Tensor:
    """Max frame-pixel distance (K,) of the argmax cell centre over ``n`` samples of ``box`` from
    the ``nominal`` (x, y) of each keypoint."""
    x0, geo = model.preprocess(image)
    theta = box.sample(n, torch.Generator().manual_seed(2))
    with torch.no_grad():
        hm = torch.cat([model.detector(apply_perturbation(x0.expand(len(t), -1, -1, -1), t[:, 0].float(), t[:, 1].float()))
                        for t in theta.split(2500)])
    rows, cols, _ = decode_heatmaps(hm)
    xy = geo.input_to_frame(cell_centers(rows.numpy(), cols.numpy(), model.config.output_stride))
    d = np.hypot(xy[..., 0] - np.array([p[0] for p in nominal]), xy[..., 1] - np.array([p[1] for p in nominal]))
    return torch.from_numpy(d.max(axis=0))


def _check_certificates(model: KeypointModel, image: np.ndarray, alpha: float, beta: float, radius: float,
                        n: int, budget_ms: float | None = None, min_certified: int = 1, **kw) -> int:
    """Every certified keypoint's sampled argmax stays within r*, and at least ``min_certified``
    keypoints are certified (a certifier that proves nothing must not pass); returns #certified
    (``kw``: more :func:`certify` options)."""
    fc = certify(model, image, alpha=alpha, beta=beta, radius=radius, margins=False, budget_ms=budget_ms, **kw)
    d = _sampled_distances(model, image, PerturbationBox(alpha, beta), n, [(k.x, k.y) for k in fc.keypoints])
    for k, kc in enumerate(fc.keypoints):
        assert kc.certified_radius >= float(d[k]) - 1e-6, (k, kc.certified_radius, float(d[k]))
        if kc.status is Status.CERTIFIED:
            assert kc.certified_radius <= radius
            assert float(d[k]) <= kc.certified_radius + 1e-6
    certified = sum(k.certified for k in fc.keypoints)
    assert certified >= min_certified, f"{certified} of {len(fc.keypoints)} keypoints certified"
    return certified


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bounds_contain_sampled_outputs_random_nets(seed: int) -> None:
    model = _random_model(seed)
    image = _frame(seed, 32, 24)
    for eps in (0.02, 0.1):
        _check_bounds_contain_samples(model, image, PerturbationBox(eps, eps), 10_000)
    _check_bounds_contain_samples(model, image, PerturbationBox(0.0, 0.3), 2_000)  # clip active


# Output stride 2 (nearest upsampling, fused into conv + PixelShuffle for bounding) and dilation.
SMALL_UP = DetectorConfig(num_keypoints=2, input_width=32, input_height=24, output_stride=2,
                          stem_width=4, width=6, depth=2, head_width=5, dilations=[1, 2])


def test_upsample_fusion_is_exact() -> None:
    model = _random_model(5, SMALL_UP)
    layers = bound_layers(model.detector)
    assert any(isinstance(m, nn.PixelShuffle) for m in layers)
    assert not any(isinstance(m, nn.Upsample) for m in layers)
    x = torch.rand(4, 1, 24, 32)
    y = x
    for m in layers:
        y = m(y)
    with torch.no_grad():
        assert torch.allclose(y, model.detector(x), atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_stride2_dilated_nets_sound(seed: int) -> None:
    model = _random_model(seed, SMALL_UP)
    image = _frame(seed + 20, 32, 24)
    for eps in (0.02, 0.1):
        _check_bounds_contain_samples(model, image, PerturbationBox(eps, eps), 10_000)
    _check_certificates(model, image, 0.01, 0.01, 4.0, 10_000)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_certificates_sound_random_nets(seed: int) -> None:
    model = _random_model(seed)
    image = _frame(seed + 10, 48, 30)  # anisotropic frame -> input scale
    for eps in (0.005, 0.05):
        _check_certificates(model, image, eps, eps, 6.0, 10_000)


SMALL_REP = DetectorConfig(num_keypoints=2, input_width=32, input_height=24, output_stride=2, stem_width=4,
                           width=6, depth=2, head_width=5, dilations=[1, 2], zero_mean_stem=True,
                           stem_padding="replicate")


def _check_sound(model: KeypointModel, image: np.ndarray, certified: list[tuple[float, float]]) -> None:
    """Bounds contain samples over three boxes (small, large, brightness-only; with clipping) and
    every certificate (forward + backward bounds) at each ``(alpha, beta)`` of ``certified`` holds."""
    for box in (PerturbationBox(0.02, 0.02), PerturbationBox(0.1, 0.1), PerturbationBox(0.0, 0.3)):
        _check_bounds_contain_samples(model, image, box, 5_000)
    for alpha, beta in certified:
        _check_certificates(model, image, alpha, beta, 4.0, 10_000)


@pytest.mark.parametrize("seed", [0, 1])
def test_replicate_padded_stem_sound(seed: int) -> None:
    """Replicate-padded zero-mean stem: bounds contain samples (also with clipping) and every
    certificate (forward + backward bounds) holds under sampling."""
    _check_sound(_random_model(seed, SMALL_REP), _frame(seed + 30, 32, 24), [(0.01, 0.01), (0.0, 0.1)])


SMALL_CLAMP = DetectorConfig(**{**SMALL_REP.to_dict(), "input_clamp": 0.1})


def _saturated_frame(seed: int, w: int, h: int) -> np.ndarray:
    """A frame with pure black and white blocks beside grey ramps (pixels at, near and far from 0 / 255)."""
    f = _frame(seed, w, h)
    f[: h // 2, : w // 2] = np.where(f[: h // 2, : w // 2] > 127, 255, 0)
    return f


@pytest.mark.parametrize("seed", [0, 1])
def test_input_clamp_sound(seed: int) -> None:
    """A detector with an input clamp: bounds contain samples and certificates hold under sampling."""
    _check_sound(_random_model(seed, SMALL_CLAMP), _saturated_frame(seed + 40, 32, 24), [(0.02, 0.02), (0.1, 0.1)])


def test_input_clamp_makes_saturated_pixels_exact() -> None:
    """Only pure black and white pixels and beta <= tau: every pixel reaches the network as the same
    constant for every theta, so the bounds are exact (zero width); without the clamp the same frame
    has wide bounds."""
    blocks = np.random.default_rng(5).integers(0, 2, (6, 8)) * 255  # random pure black / white 4x4 blocks
    image = np.kron(blocks, np.ones((4, 4))).astype(np.uint8)  # 24 x 32, the network's input size
    clamped, plain = _random_model(0, SMALL_CLAMP), _random_model(0, SMALL_REP)
    box = PerturbationBox(0.05, 0.05)
    assert _check_bounds_contain_samples(clamped, image, box, 2_000) < 1e-5
    assert _check_bounds_contain_samples(plain, image, box, 2_000) > 1e-2


def test_clamp_relaxation_sound() -> None:
    """The backward pass's linear relaxation of clip(z, tau, 1 - tau) holds on every z in [lo, hi]."""
    from usn_robust_keypoints.certify.backward import _clamp_relaxation

    g = torch.Generator().manual_seed(0)
    for tau in (0.0, 0.1, 0.3):
        lo = torch.rand(2000, generator=g, dtype=torch.float64) * 1.6 - 0.3
        hi = lo + torch.rand(2000, generator=g, dtype=torch.float64) * 0.8
        a_l, b_l, a_u, b_u = _clamp_relaxation(lo, hi, tau)
        t = torch.rand(50, 1, generator=g, dtype=torch.float64)
        z = lo + t * (hi - lo)
        x = z.clamp(tau, 1 - tau)
        assert (a_l * z + b_l <= x + 1e-9).all() and (x <= a_u * z + b_u + 1e-9).all()
        flat = (hi <= tau) | (lo >= 1 - tau)  # a clamped constant: exact
        assert (a_l[flat] == 0).all() and (a_u[flat] == 0).all() and torch.equal(b_l[flat], b_u[flat])


@pytest.mark.parametrize("mode,stride,dilation,kernel,hw", [
    ("replicate", 2, 1, 3, (9, 12)), ("zeros", 2, 1, 3, (9, 12)), ("zeros", 2, 1, 3, (8, 12)),
    ("zeros", 1, 4, 3, (10, 7)), ("zeros", 1, 1, 1, (5, 6)), ("replicate", 2, 1, 3, (8, 11))])
def test_conv_adjoint(mode: str, stride: int, dilation: int, kernel: int, hw: tuple[int, int]) -> None:
    """The backward pass's conv adjoint (strided, dilated, odd sizes, zero or replicate padding):
    <conv(x), l> = <x, adj(l)>."""
    from usn_robust_keypoints.certify.backward import _conv_adjoint
    from usn_robust_keypoints.certify.bounds import FoldedConv

    torch.manual_seed(0)
    pad = dilation * (kernel // 2)
    conv = FoldedConv(torch.randn(5, 3, kernel, kernel, dtype=torch.float64), None, (stride, stride), (pad, pad),
                      (dilation, dilation), 1, mode)
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    y = conv(x)
    lam = torch.randn_like(y)
    adj = _conv_adjoint(lam, conv, (3, *hw))
    assert adj.shape == x.shape
    torch.testing.assert_close((y * lam).sum(), (x * adj).sum())


def test_exact_without_unstable_relus() -> None:
    """A conv net whose ReLUs are all stably active and whose inputs never clip: bounds exact."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 1))
    with torch.no_grad():
        net[0].weight.abs_()
        net[0].bias.fill_(0.5)
    x0 = 0.2 + 0.6 * torch.rand(1, 1, 6, 6)
    box = PerturbationBox(0.05, 0.05)
    f = propagate(bound_layers(net), x0, torch.tensor([[0.95, 1.05, -0.05, 0.05]]))
    c, b = torch.meshgrid(torch.linspace(0.95, 1.05, 21), torch.linspace(-0.05, 0.05, 21), indexing="ij")
    theta = torch.stack([c.flatten(), b.flatten()], 1)
    with torch.no_grad():
        y = net(apply_perturbation(x0.expand(len(theta), -1, -1, -1), theta[:, 0], theta[:, 1]))
    e = torch.stack([(theta[:, 0] - 1) / 0.05, theta[:, 1] / 0.05], 1)
    lo, hi = _eval_forms(f.lower[0], e), _eval_forms(f.upper[0], e)
    assert torch.allclose(lo, y, atol=1e-5) and torch.allclose(hi, y, atol=1e-5)
    assert box.alpha == 0.05


def test_tiny_net_bounds_contain_dense_grid() -> None:
    """With unstable ReLUs and clipping: the bounds contain a dense 101x101 theta grid."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(3, 2, 1))
    x0 = torch.rand(1, 1, 8, 8)
    f = propagate(bound_layers(net), x0, torch.tensor([[0.8, 1.2, -0.2, 0.2]]))
    c, b = torch.meshgrid(torch.linspace(0.8, 1.2, 101), torch.linspace(-0.2, 0.2, 101), indexing="ij")
    theta = torch.stack([c.flatten(), b.flatten()], 1)
    with torch.no_grad():
        y = net(apply_perturbation(x0.expand(len(theta), -1, -1, -1), theta[:, 0], theta[:, 1]))
    e = torch.stack([(theta[:, 0] - 1) / 0.2, theta[:, 1] / 0.2], 1)
    lo, hi = _eval_forms(f.lower[0], e), _eval_forms(f.upper[0], e)
    assert (y >= lo - 1e-5).all() and (y <= hi + 1e-5).all()


def test_monotone_in_radius_and_budget() -> None:
    model = _random_model(5)
    image = _frame(5, 32, 24)
    ref = certify(model, image, 0.02, 0.02, radius=4.0, margins=False)
    assert any(kc.certified for kc in ref.keypoints)
    for kc in ref.keypoints:
        if kc.certified:
            for r in (kc.certified_radius, kc.certified_radius + 1.0, 50.0):
                fc = certify(model, image, 0.02, 0.02, radius=r, margins=False)
                assert fc.keypoints[kc.index].certified, (kc.index, r)
    tiny = certify(model, image, 0.05, 0.05, radius=0.0, budget_ms=0.0)
    assert all(k.status is not Status.CERTIFIED or k.certified_radius == 0.0 for k in tiny.keypoints)
    assert all(k.status in (Status.UNKNOWN, Status.REFUTED, Status.OPEN) or k.certified_radius == 0.0
               for k in tiny.keypoints)
    assert all(k.certified or k.certified_radius == float("inf") for k in tiny.keypoints + ref.keypoints)


def test_zero_budget_is_never_certified_when_splitting_is_needed() -> None:
    model = _random_model(6)
    image = _frame(6, 32, 24)
    full = certify(model, image, 0.05, 0.05, radius=4.0, margins=False)
    tiny = certify(model, image, 0.05, 0.05, radius=4.0, margins=False, budget_ms=0.0)
    assert any(a.certified for a in full.keypoints)
    for a, b in zip(full.keypoints, tiny.keypoints):
        assert b.status in (Status.UNKNOWN, Status.CERTIFIED, Status.REFUTED)
        if b.status is Status.CERTIFIED:  # only possible when the single whole-box pass proved it
            assert a.certified and b.certified_radius <= 4.0
    assert any(k.status is Status.UNKNOWN for k in tiny.keypoints) or all(
        k.status is full.keypoints[k.index].status for k in tiny.keypoints)


def test_margins_are_proven_values() -> None:
    """beta* and alpha* are proven values: every sampled brightness-only theta in [-beta*, beta*]
    (contrast-only in [1 - alpha*, 1 + alpha*]) keeps the argmax within the radius."""
    model = _random_model(7)
    image = _frame(7, 32, 24)
    fc = certify(model, image, 0.01, 0.01, radius=4.0, margins=True)
    assert any(kc.beta_star > 0 for kc in fc.keypoints) and any(kc.alpha_star > 0 for kc in fc.keypoints)
    nominal = [(k.x, k.y) for k in fc.keypoints]
    for kc in fc.keypoints:
        assert 0.0 <= kc.beta_star <= 0.5 and 0.0 <= kc.alpha_star <= 0.5
        for box in (PerturbationBox(0.0, kc.beta_star), PerturbationBox(kc.alpha_star, 0.0)):
            if box.alpha > 0 or box.beta > 0:
                assert float(_sampled_distances(model, image, box, 2_000, nominal)[kc.index]) <= 4.0 + 1e-6, (kc, box)
        if kc.certified:
            assert kc.beta_star >= 0.01 and kc.alpha_star >= 0.01


def test_certify_batch_and_differentiable_margins() -> None:
    model = _random_model(8)
    x = torch.stack([model.preprocess(_frame(s, 32, 24))[0][0] for s in range(3)])
    out = certify_batch(model.detector, x, 0.01, 0.01, radius=4.0)
    assert out["certified"].shape == (3, SMALL.num_keypoints) and out["certified"].any()
    assert (out["certified_radius"][out["certified"]] <= 4.0).all()
    det = model.detector
    m = worst_margins(det, x, out["cells"], 0.01, 0.01, radius_cells=1.0)
    assert m.shape == (3, SMALL.num_keypoints) and m.requires_grad
    m.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in det.parameters())
    det.zero_grad()
    # A positive whole-box margin is a proof: the certificate must agree.
    for n in range(3):
        for k in range(SMALL.num_keypoints):
            if m[n, k] > 1e-3:
                assert out["certified"][n, k]


SHIPPED = sorted(p.name for p in WEIGHTS_DIR.glob("*.safetensors"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_sound(name: str) -> None:
    """Every shipped model: bounds contain sampled perturbations, and certified keypoints keep every
    sampled argmax within r*, on a synthetic test scene where every shipped model certifies some
    keypoints (at ±0.005 the dense model too, at ±0.02 the certifiably trained ones)."""
    from usn_robust_keypoints.data import generate_split

    model = load_model(WEIGHTS_DIR / name, device="cpu")
    scene = generate_split("test", 4, progress=False)[0][3]  # certified here: dense 2, pruned 4, the others 8 of 8
    _check_bounds_contain_samples(model, scene, PerturbationBox(0.05, 0.05), 1_000)  # full-size nets: keep it short
    certified = sum(_check_certificates(model, scene, eps, eps, 4.0, 4_000, min_certified=0) for eps in (0.005, 0.02))
    assert certified > 0


def test_branch_and_bound_proves_what_one_pass_cannot() -> None:
    """A random stride-2 net and frame where, at ±0.2, one bound pass over the whole box proves no
    keypoint, while the branch and bound proves them all, and every sampled argmax stays within r*."""
    model = _random_model(10, SMALL_UP)
    image = _frame(60, 32, 24)
    one_pass = certify(model, image, alpha=0.2, beta=0.2, radius=4.0, margins=False, max_depth=0)
    assert not any(k.certified for k in one_pass.keypoints)
    assert _check_certificates(model, image, 0.2, 0.2, 4.0, 10_000) == SMALL_UP.num_keypoints
