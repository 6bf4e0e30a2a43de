"""Certifiability training: the robustness term (certify.training_loss) on a tiny detector.

Data: a bright Gaussian spot (one keypoint) at a random place on a noisy background, 32x32 px:
a task a 3-conv detector learns in seconds, so the effect of the term is measured on a detector
that actually finds its keypoint (certificates of a detector that does not are meaningless)."""

import copy

import numpy as np
import pytest
import torch

from usn_robust_keypoints.certify import certify_batch
from usn_robust_keypoints.certify.training_loss import RobustConfig, RobustnessTerm, keypoint_cells, robustness_loss
from usn_robust_keypoints.model import DetectorConfig, HeatmapDetector
from usn_robust_keypoints.train import train_detector

CFG = DetectorConfig(num_keypoints=1, input_width=32, input_height=32, output_stride=4, stem_width=4, width=8, depth=1)


def spots(n: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size) uint8 images and (n, 1, 2) keypoints (input px) of one bright spot each."""
    rng = np.random.default_rng(seed)
    kp = rng.uniform(4, size - 5, (n, 1, 2)).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    bg = rng.uniform(0.1, 0.4, (n, 1, 1)) + 0.08 * rng.standard_normal((n, size, size))
    d2 = (xx - kp[:, 0, 0, None, None]) ** 2 + (yy - kp[:, 0, 1, None, None]) ** 2
    img = bg + 0.5 * np.exp(-d2 / (2 * 2.0**2))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), kp


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these tiny ops get much slower with 2 threads on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data():
    return spots(160, 0)


@pytest.fixture(scope="module")
def pretrained(data):
    """A tiny detector trained on the task loss only (the shared warm start)."""
    torch.manual_seed(0)
    model = HeatmapDetector(CFG)
    train_detector(model, data[0][:128], data[1][:128], steps=150, batch_size=16, lr=1e-2, device="cpu", progress=False)
    return model


def _inputs(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float().div(255).unsqueeze(1)


def test_keypoint_cells_match_target_peak_and_mask_invalid():
    kp = torch.tensor([[[17.5, 9.5], [float("nan"), 3.0], [70.0, 10.0], [0.0, 47.0]]])
    cells, valid = keypoint_cells(kp, 4, (12, 16))
    assert cells[0, 0].tolist() == [2, 4]  # same cell as heatmap_targets' peak (test_train)
    assert cells[0, 3].tolist() == [11, 0]
    assert valid.tolist() == [[True, False, False, True]]


def test_eps_ramp_and_validation():
    cfg = RobustConfig(eps=0.1, ramp=0.5)
    assert cfg.eps_at(0, 100) == pytest.approx(0.002)
    assert cfg.eps_at(49, 100) == pytest.approx(0.1) and cfg.eps_at(99, 100) == 0.1
    assert RobustConfig(eps=0.1, ramp=0.0).eps_at(0, 100) == 0.1
    with pytest.raises(ValueError):
        RobustConfig(eps=1.5)


def test_robustness_gradient_is_finite_and_nonzero(data, pretrained):
    model = copy.deepcopy(pretrained).train()
    cells, valid = keypoint_cells(torch.from_numpy(data[1][:8]), CFG.output_stride, CFG.heatmap_size)
    loss, margins = robustness_loss(model, _inputs(data[0][:8]), cells, valid, 0.1, 4.0 / CFG.output_stride)
    assert margins.shape == (8, 1) and torch.isfinite(loss) and loss > 0
    loss.backward()
    convs = [m for m in model.net if isinstance(m, torch.nn.Conv2d)]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(float(c.weight.grad.abs().sum()) > 0 for c in convs)  # every conv layer gets gradient
    log_loss, _ = robustness_loss(model, _inputs(data[0][:8]), cells, valid, 0.1, 4.0 / CFG.output_stride, form="log")
    assert 0 < float(log_loss.detach()) < float(loss.detach())


def test_robustness_term_decreases_during_training(data, pretrained):
    model = copy.deepcopy(pretrained)
    term = RobustnessTerm(data[0][:128], data[1][:128], RobustConfig(kappa=1.0, eps=0.1, ramp=0.0), steps=40)
    train_detector(model, data[0][:128], data[1][:128], steps=40, batch_size=16, lr=3e-3, device="cpu",
                   progress=False, extra_loss=term)
    h = term.history
    assert len(h.loss) == 40 and all(e == 0.1 for e in h.eps)
    assert np.mean(h.loss[-8:]) < 0.5 * np.mean(h.loss[:8])
    assert np.mean(h.proven[-8:]) > np.mean(h.proven[:8])


def test_trained_with_term_certifies_more(data, pretrained):
    """Same warm start, seed and steps; only kappa differs. Native certifier at eps = 0.1, r = 4 px."""
    imgs, kps = data[0][:128], data[1][:128]
    x = _inputs(data[0][128:])
    counts = {}
    for kappa in (0.0, 1.0):
        model = copy.deepcopy(pretrained)
        term = RobustnessTerm(imgs, kps, RobustConfig(kappa=kappa, eps=0.1, ramp=0.3), steps=60) if kappa else None
        train_detector(model, imgs, kps, steps=60, batch_size=16, lr=3e-3, seed=1, device="cpu", progress=False,
                       extra_loss=term)
        res = certify_batch(model.eval(), x, 0.1, 0.1, 4.0, max_depth=1, budget_ms=500)
        near = (res["cells"].float() * CFG.output_stride + 1.5 - torch.from_numpy(data[1][128:, :, ::-1].copy())).norm(dim=-1) <= 3.0
        counts[kappa] = (int(res["certified"].sum()), int((res["certified"] & near).sum()))
    print("certified (all, correctly placed) by kappa:", counts)
    assert counts[1.0][0] >= counts[0.0][0] + 16, counts  # 32 keypoints in all
    assert counts[1.0][1] >= counts[0.0][1] + 16, counts  # and correctly placed ones


def test_tradeoff_merge_writes_table_and_plot(tmp_path):
    import json
    from dataclasses import asdict

    from usn_robust_keypoints.experiments.tradeoff import TradeoffConfig, merge_results

    cfg = TradeoffConfig(eps=(0.02, 0.1), frames=2)
    for i in range(2):
        row = {"model": f"m{i}", "path": "x", "params": 10, "pck_synthetic": 0.5, "pck_real_left": 0.4 + i / 10,
               **{f"{k}@{e:g}": 0.1 * i for k in ("cert_acc", "cert_rate", "cert_ms") for e in cfg.eps}}
        (tmp_path / f"r{i}.json").write_text(json.dumps({"config": asdict(cfg), "rows": [row]}))
    rows, _ = merge_results([tmp_path / "r0.json", tmp_path / "r1.json"], tmp_path / "out")
    table = (tmp_path / "out" / "results.md").read_text()
    assert [r["model"] for r in rows] == ["m0", "m1"] and "| m1 | 10 | 0.500 | 0.500 |" in table
    assert (tmp_path / "out" / "tradeoff.png").stat().st_size > 1000
    (tmp_path / "r2.json").write_text(json.dumps({"config": asdict(TradeoffConfig(frames=3)), "rows": []}))
    with pytest.raises(ValueError):
        merge_results([tmp_path / "r0.json", tmp_path / "r2.json"], tmp_path / "bad")


def _sampled_margin(model, x: torch.Tensor, cell: torch.Tensor, c: torch.Tensor, b: torch.Tensor,
                    r: float) -> float:
    """True ``min over the samples (c, b), over cells s outside the disk of [H_q - H_s]`` of the one
    keypoint of ``x (1, 1, h, w)`` with ground-truth cell ``q = cell (row, col)``."""
    from usn_robust_keypoints.perturbation import apply_perturbation

    h, w = CFG.heatmap_size
    rows, cols = torch.arange(h).repeat_interleave(w), torch.arange(w).repeat(h)
    hm = model(apply_perturbation(x.expand(len(c), -1, -1, -1), c, b))[:, 0].flatten(1)
    q = cell[0] * w + cell[1]
    outside = (rows - cell[0]) ** 2 + (cols - cell[1]) ** 2 > r ** 2
    return float((hm[:, q:q + 1] - hm[:, outside]).min())


def test_sub_box_margins_are_tighter_and_sound(data, pretrained):
    """Bounding a 2x2 grid of sub-boxes never loosens the whole-box margin, no sampled perturbation
    of the box has a smaller true margin than either bound, and at ±0.02 the grid proves (margin >
    0) keypoints the whole box does not."""
    from usn_robust_keypoints.certify.batch import worst_margins
    from usn_robust_keypoints.perturbation import PerturbationBox

    model = pretrained.eval()
    x = _inputs(data[0][128:136])
    cells, _ = keypoint_cells(torch.from_numpy(data[1][128:136]), CFG.output_stride, CFG.heatmap_size)
    r = 1.0
    with torch.no_grad():
        for eps in (0.02, 0.1):
            m1 = worst_margins(model, x, cells, eps, eps, r)
            m2 = worst_margins(model, x, cells, eps, eps, r, splits=2)
            assert (m2 >= m1 - 1e-5).all() and (m2 > m1 + 1e-3).any()
            if eps == 0.02:
                assert int((m2 > 0).sum()) > int((m1 > 0).sum()) > 0, (m1, m2)
            theta = PerturbationBox(eps, eps).sample(64, torch.Generator().manual_seed(0)).float()
            for i in range(x.shape[0]):
                true_min = _sampled_margin(model, x[i:i + 1], cells[i, 0], theta[:, 0], theta[:, 1], r)
                assert true_min >= m2[i, 0] - 1e-4 and true_min >= m1[i, 0] - 1e-4


def test_random_sub_box_margins_are_inside_the_box_and_sound(data, pretrained):
    """Random sub-boxes (``sub_eps``) lie inside the box, their margins are never looser than the
    whole box's (a sub-box is a subset), some are proofs (> 0), and no sample of each sub-box beats
    its bound."""
    from usn_robust_keypoints.certify.batch import worst_margins
    from usn_robust_keypoints.certify.training_loss import random_sub_boxes

    model = pretrained.eval()
    x = _inputs(data[0][128:136])
    cells, _ = keypoint_cells(torch.from_numpy(data[1][128:136]), CFG.output_stride, CFG.heatmap_size)
    eps, sub, r = 0.1, 0.02, 1.0
    boxes = random_sub_boxes(8, eps, sub, torch.Generator().manual_seed(0))
    assert torch.allclose(boxes[:, 1] - boxes[:, 0], torch.full((8,), 2 * sub, dtype=torch.float64))
    assert (boxes[:, 0] >= 1 - eps).all() and (boxes[:, 1] <= 1 + eps).all()
    assert (boxes[:, 2] >= -eps).all() and (boxes[:, 3] <= eps).all()
    assert len({tuple(b) for b in boxes.tolist()}) == 8
    assert torch.equal(random_sub_boxes(3, 0.01, sub, torch.Generator())[0], torch.tensor([0.99, 1.01, -0.01, 0.01],
                                                                                          dtype=torch.float64))
    with torch.no_grad():
        whole = worst_margins(model, x, cells, eps, eps, r)
        m = worst_margins(model, x, cells, eps, eps, r, boxes=boxes)
        assert (m >= whole - 1e-5).all() and (m > whole + 1e-3).any()
        assert (m > 0).any(), m  # the sub-boxes are proven for some keypoints (the whole box for none)
        u = torch.rand(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        for i in range(x.shape[0]):
            c = (boxes[i, 0] + u[:, 0] * (boxes[i, 1] - boxes[i, 0])).float()
            b = (boxes[i, 2] + u[:, 1] * (boxes[i, 3] - boxes[i, 2])).float()
            assert _sampled_margin(model, x[i:i + 1], cells[i, 0], c, b, r) >= m[i, 0] - 1e-4
    with pytest.raises(ValueError):
        RobustConfig(sub_eps=0.02, splits=2)


def test_first_tile_margins_are_the_certifiers_first_tiles_and_sound(data, pretrained):
    """``first_tiles`` bounds one of the tiles the certifier's first round bounds (the box cut at the
    clip kink of saturated pixels: 2 tiles here), the margins are proofs for some keypoints, and no
    sample of each tile has a smaller true margin; the option refuses sub-boxes and splits."""
    from usn_robust_keypoints.certify.batch import worst_margins
    from usn_robust_keypoints.certify.native import first_tiles
    from usn_robust_keypoints.certify.training_loss import random_first_tiles

    model = pretrained.eval()
    x = _inputs(data[0][128:136])
    x = x.clamp_min(0.05)  # no pixel at 0 (no kink at b = 0) ...
    x[:, :, :3, :3] = 1.0  # ... and saturated pixels: their clip kink crosses the box at w = 0
    cells, _ = keypoint_cells(torch.from_numpy(data[1][128:136]), CFG.output_stride, CFG.heatmap_size)
    eps, r = 0.02, 1.0
    maps = random_first_tiles(x, 0.0, eps, torch.Generator().manual_seed(0))
    assert maps.shape == (8, 2, 3)
    for i in range(8):
        tiles = first_tiles(x[i:i + 1], 0.0, (1 - eps, 1 + eps, -eps, eps))
        assert len(tiles) == 2 and any(torch.equal(maps[i], t) for t in tiles)
    with torch.no_grad():
        m = worst_margins(model, x, cells, eps, eps, r, boxes=maps)
        assert (m > 0).any(), m
        e = torch.rand(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
        for i in range(8):
            theta = (maps[i, :, 0] + e @ maps[i, :, 1:].T).float()  # (64, 2): c, b of points of the tile
            assert _sampled_margin(model, x[i:i + 1], cells[i, 0], theta[:, 0], theta[:, 1], r) >= m[i, 0] - 1e-4
    term = RobustnessTerm(data[0][:128], data[1][:128], RobustConfig(eps=eps, ramp=0.0, first_tiles=True), steps=1)
    model_t = copy.deepcopy(pretrained)
    loss = term(model_t)
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None and p.grad.abs().sum() > 0 for p in model_t.parameters())
    with pytest.raises(ValueError, match="first_tiles"):
        RobustConfig(first_tiles=True, sub_eps=0.02)


def test_certified_accuracy_scores_certify_against_ground_truth(data, pretrained):
    """evaluate.certified_accuracy (the loop of `tradeoff` and `experiment`) against certify() per frame."""
    from usn_robust_keypoints.certify import certify
    from usn_robust_keypoints.evaluate import certified_accuracy
    from usn_robust_keypoints.model import KeypointModel

    km = KeypointModel(copy.deepcopy(pretrained).eval(), device="cpu")
    imgs, kps = data[0][128:136], data[1][128:136]
    strict, loose = (certified_accuracy(km, imgs, kps, (0.01, 0.1), tolerance=t, max_depth=1) for t in (1.0, 1e9))
    for e, s, lo in zip((0.01, 0.1), strict, loose):
        assert s.eps == e and s.keypoints == lo.keypoints == 8
        fcs = [certify(km, im, e, e, 4.0, margins=False, max_depth=1) for im in imgs]
        cert = np.array([fc.keypoints[0].certified for fc in fcs])
        err = np.array([np.hypot(fc.keypoints[0].x - k[0, 0], fc.keypoints[0].y - k[0, 1]) for fc, k in zip(fcs, kps)])
        assert lo.rate == s.rate == lo.accuracy == cert.mean()
        assert s.accuracy == (cert & (err <= 1.0)).mean()
    assert strict[0].rate > 0, "nothing certified at ±0.01: the comparison above would be vacuous"
    print("rate / accuracy@1px:", [(s.rate, s.accuracy) for s in strict])
    with pytest.raises(ValueError):
        certified_accuracy(km, imgs[:, :16], kps, (0.01,))
