"""Exact linear-region enumeration: geometry, exactness of the region maps, verdicts against a dense
theta grid on tiny nets, region count against a closed-form count for a one-layer net."""

from __future__ import annotations

import dataclasses
import itertools

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from usn_robust_keypoints.certify.exact import (arrangement, box_polygon, exact_layers, exact_verdict,
                                                linear_regions)
from usn_robust_keypoints.model import DetectorConfig
from usn_robust_keypoints.model.preprocess import FrameGeometry
from usn_robust_keypoints.perturbation import apply_perturbation

from random_nets import random_model

torch.set_num_threads(1)

TINY = DetectorConfig(num_keypoints=2, input_width=16, input_height=16, output_stride=2, stem_width=3,
                      width=4, depth=1, head_width=3)
GEO = FrameGeometry(16, 16, 16, 16)


def _image(seed: int, size: int = 16, saturate: bool = True) -> torch.Tensor:
    """(1, 1, size, size) input with smooth structure and (optionally) pixels at exactly 0 and 1."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 256, (5, 5)).astype(np.uint8), (size, size), interpolation=cv2.INTER_LINEAR)
    x = torch.tensor(img, dtype=torch.float32) / 255
    if saturate:
        x[0, :4], x[-1, -4:] = 0.0, 1.0
    return x.view(1, 1, size, size)


def _area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _line_count(lines: np.ndarray, box: np.ndarray) -> int:
    """Cells of an arrangement of lines in general position inside a convex box: 1 + L + I
    (L lines crossing the box, I pairwise intersections inside it)."""
    lo, hi = box.min(axis=0), box.max(axis=0)
    crossing = [a for a in lines if (a[0] + box @ a[1:]).min() < 0 < (a[0] + box @ a[1:]).max()]
    inter = 0
    for a, b in itertools.combinations(crossing, 2):
        m = np.array([a[1:], b[1:]])
        if abs(np.linalg.det(m)) < 1e-14:
            continue
        u = np.linalg.solve(m, -np.array([a[0], b[0]]))
        inter += bool(np.all(u > lo) and np.all(u < hi))
    return 1 + len(crossing) + inter


def test_arrangement_counts_cells_and_keeps_area() -> None:
    rng = np.random.default_rng(0)
    box = box_polygon(0.3, 0.2)
    lines = rng.normal(size=(12, 3)) * [0.1, 1, 1]
    lines /= np.hypot(lines[:, 1], lines[:, 2])[:, None]
    pieces = arrangement(box, lines)
    assert len(pieces) == _line_count(lines, box) > 20
    assert sum(_area(p) for p in pieces) == pytest.approx(_area(box), rel=1e-12)
    for p in pieces:  # no line crosses the interior of a cell
        d = lines[:, :1] + lines[:, 1:] @ p.T
        assert ((d.min(axis=1) > -1e-12) | (d.max(axis=1) < 1e-12)).all()


def test_one_layer_region_count_matches_closed_form() -> None:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 1)).eval()
    x0 = 0.1 + 0.8 * _image(4, size=8, saturate=False)  # in [0.1, 0.9]: z stays in (0, 1), no clip kink
    alpha = beta = 0.05
    layers = exact_layers(net, 0)
    # Each hidden pre-activation is affine in u = (c - 1, b): conv(x0) + u1 conv_nobias(x0) + u2 conv_nobias(1).
    conv = net[0]
    with torch.no_grad():
        w = conv.weight.double()
        a0 = torch.nn.functional.conv2d(x0.double(), w, conv.bias.double(), padding=1)
        a1 = torch.nn.functional.conv2d(x0.double(), w, None, padding=1)
        a2 = torch.nn.functional.conv2d(torch.ones_like(x0).double(), w, None, padding=1)
    lines = torch.stack([a0.flatten(), a1.flatten(), a2.flatten()], 1).numpy()
    lines /= np.hypot(lines[:, 1], lines[:, 2])[:, None]
    lines = np.unique(np.round(lines, 10), axis=0)
    box = box_polygon(alpha, beta)
    expected = _line_count(lines, box)
    got = sum(len(p) for p, _ in linear_regions(layers, x0, box))
    assert got == expected > 30


@pytest.mark.parametrize("seed,clamp", [(0, 0.0), (1, 0.0), (2, 0.05)])
def test_region_maps_are_exact(seed: int, clamp: float) -> None:
    """On every enumerated region the affine map equals the real network (input clamp included) at
    interior points."""
    model = random_model(seed, dataclasses.replace(TINY, input_clamp=clamp))
    x0 = _image(seed)
    alpha, beta = 0.3, 0.3
    polys, maps = [], []
    for p, f in linear_regions(exact_layers(model.detector, 1), x0, box_polygon(alpha, beta)):
        polys += p
        maps.append(f)
    maps = torch.cat(maps)[:, :, 0].flatten(2)  # (R, 3, S)
    assert len(polys) > 20
    assert sum(_area(p) for p in polys) == pytest.approx(4 * alpha * beta, rel=1e-9)
    rng = np.random.default_rng(seed)
    det = model.detector.double()
    for p, h in zip(polys, maps):
        wts = rng.dirichlet(np.ones(len(p)), size=3)
        for u in np.concatenate([wts @ p, p.mean(axis=0, keepdims=True)]):
            with torch.no_grad():
                y = det(apply_perturbation(x0.double(), 1 + float(u[0]), float(u[1])))[0, 1].flatten()
            pred = h[0] + u[0] * h[1] + u[1] * h[2]
            assert torch.allclose(pred, y, atol=1e-9), float((pred - y).abs().max())


def _grid_violations(model, x0, k: int, cell: int, dist: np.ndarray, radius: float, centre, half, n: int) -> np.ndarray:
    c = np.linspace(centre[0] - half[0], centre[0] + half[0], n)
    b = np.linspace(centre[1] - half[1], centre[1] + half[1], n)
    cc, bb = [t.ravel() for t in np.meshgrid(c, b, indexing="ij")]
    with torch.no_grad():
        hm = model.detector(apply_perturbation(x0.expand(len(cc), -1, -1, -1), torch.tensor(cc).float(),
                                               torch.tensor(bb).float()))
    am = hm[:, k].flatten(1).argmax(dim=1).numpy()
    return np.stack([cc, bb], 1)[dist[am] > radius]


def test_verdicts_agree_with_dense_grid() -> None:
    """proven => no violation on a dense grid; refuted => the theta really moves the argmax and the
    grid around it finds violations; the bound shortcut (hybrid) never changes a verdict."""
    from usn_robust_keypoints.certify.native import frame_context

    alpha, beta = 0.4, 0.4
    seen = set()
    for seed, radius in [(s, r) for s in range(3) for r in (0.0, 3.0)]:
        model = random_model(seed, TINY)
        x0 = _image(seed + 10)
        ctx = frame_context(model.detector, x0, GEO)
        for k in range(TINY.num_keypoints):
            dist = ctx.dist[k].numpy()
            cell = int(ctx.cells[k, 0]) * 8 + int(ctx.cells[k, 1])
            res = exact_verdict(model.detector, x0, GEO, k, alpha, beta, radius, time_limit_s=60, sample_first=0)
            assert res.verdict in ("proven", "refuted"), res
            plain = exact_verdict(model.detector, x0, GEO, k, alpha, beta, radius, hybrid=False, time_limit_s=60,
                                  sample_first=0)
            assert plain.verdict == res.verdict, (res, plain)
            seen.add(res.verdict)
            grid = _grid_violations(model, x0, k, cell, dist, radius, (1.0, 0.0), (alpha, beta), 121)
            if res.verdict == "proven":
                assert len(grid) == 0, (seed, radius, k, grid[:3])
                assert res.min_margin > 0
            else:
                assert res.reason == "exact enumeration"
                near = _grid_violations(model, x0, k, cell, dist, radius, res.theta, (1e-3, 1e-3), 11)
                assert len(near) > 0 and abs(res.theta[0] - 1) <= alpha + 1e-12 and abs(res.theta[1]) <= beta + 1e-12
    assert seen == {"proven", "refuted"}


def test_caps_give_open() -> None:
    model = random_model(1, TINY)
    x0 = _image(11)
    assert exact_verdict(model.detector, x0, GEO, 0, 0.4, 0.4, 0.0, hybrid=False).verdict == "proven"
    res = exact_verdict(model.detector, x0, GEO, 0, 0.4, 0.4, 0.0, max_regions=10, hybrid=False)
    assert res.verdict == "open" and "region cap" in res.reason
    res = exact_verdict(model.detector, x0, GEO, 0, 0.4, 0.4, 0.0, time_limit_s=0.0, hybrid=False)
    assert res.verdict == "open" and "time limit" in res.reason
    assert exact_verdict(model.detector, x0, GEO, 0, 0.4, 0.4, 100.0).verdict == "proven"  # no cell outside


def test_cli_diagnose_bounds_and_exact_verdicts(tmp_path) -> None:
    """Both subcommands run end to end on a tiny model and a real photo and write their tables."""
    import json

    from usn_robust_keypoints.cli import main
    from usn_robust_keypoints.data.opencv_doc import opencv_doc_data
    from usn_robust_keypoints.model import save_checkpoint

    try:
        opencv_doc_data()
    except RuntimeError as e:
        pytest.skip(f"opencv-doc photos not installable here: {e}")
    ckpt = save_checkpoint(random_model(0, TINY).detector, tmp_path / "tiny.safetensors")
    assert main(["diagnose-bounds", "--frames", "left01", "--model", str(ckpt), "--out", str(tmp_path / "d")]) == 0
    doc = json.loads((tmp_path / "d" / "bounds_diagnosis.json").read_text())
    kps = doc["left01"]["centres"]["centre"]["64"]["keypoints"]
    assert len(kps) == TINY.num_keypoints and all(k["forward_lb"] <= k["nominal_margin"] + 1e-4 for k in kps)
    assert "| left01 | 0 | centre |" in (tmp_path / "d" / "bounds_diagnosis.md").read_text()
    assert main(["exact-verdicts", "--frames", "left01", "--model", str(ckpt), "--time-limit", "60",
                 "--alpha", "0.05", "--beta", "0.05", "--out", str(tmp_path / "e")]) == 0
    rows = json.loads((tmp_path / "e" / "exact_verdicts.json").read_text())["rows"]
    assert [r["keypoint"] for r in rows] == [0, 1] and all(r["verdict"] in ("proven", "refuted") for r in rows)
