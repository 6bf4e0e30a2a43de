"""Branch-and-bound engine of the native certifier on real photos and tiny nets: soundness by
sampling where it certifies, exactness against a dense θ grid, the memory cap, anytime budgets,
honest r* / statuses, real counter-examples and warm starts."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from usn_robust_keypoints.certify import Status, WarmStart, certify, native
from usn_robust_keypoints.certify.bounds import input_clamp
from usn_robust_keypoints.certify.native import _Coords, _kink_cuts, frame_context, search
from usn_robust_keypoints.data.opencv_doc import opencv_doc_data
from usn_robust_keypoints.model import DetectorConfig, KeypointModel, load_model
from usn_robust_keypoints.model.preprocess import decode_heatmaps
from usn_robust_keypoints.perturbation import apply_perturbation

from random_nets import random_model

torch.set_num_threads(1)
EPS, RADIUS = 0.02, 4.0


@pytest.fixture(scope="module")
def model() -> KeypointModel:
    return load_model(device="cpu")


def _photo(name: str) -> np.ndarray:
    return cv2.imread(str(opencv_doc_data() / f"{name}.jpg"), cv2.IMREAD_GRAYSCALE)


def _thetas(eps: float, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` θ of the box: its 4 corners and 4 edge midpoints, a quarter on the c edges, a quarter
    on the b edges, a tenth along the clip kink c + b = 1 of saturated pixels, the rest uniform."""
    g = torch.Generator().manual_seed(seed)
    th = (torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1) * eps
    th[:, 0] += 1
    q = n // 4
    th[:q, 0] = torch.where(torch.rand(q, generator=g) < 0.5, 1 - eps, 1 + eps).double()
    th[q:2 * q, 1] = torch.where(torch.rand(q, generator=g) < 0.5, -eps, eps).double()
    t = (torch.rand(n // 10, generator=g, dtype=torch.float64) * 2 - 1) * eps
    th[2 * q:2 * q + n // 10] = torch.stack([1 + t, -t], 1)
    th[:8] = torch.tensor([[1 - eps, -eps], [1 - eps, eps], [1 + eps, -eps], [1 + eps, eps],
                           [1, -eps], [1, eps], [1 - eps, 0], [1 + eps, 0]], dtype=torch.float64)
    return th


def _moves(model: KeypointModel, image: np.ndarray, thetas: torch.Tensor) -> torch.Tensor:
    """Frame-pixel distance (M, K) of each keypoint's argmax at each θ from its nominal position."""
    x0, geo = model.preprocess(image)
    with torch.no_grad():
        hm = torch.cat([model.detector(apply_perturbation(x0.expand(len(t), -1, -1, -1), t[:, 0].float(), t[:, 1].float()))
                        for t in thetas.split(1000)])
        nominal = model.detector(x0)
    s = model.config.output_stride

    def frame_xy(h):
        rows, cols, _ = decode_heatmaps(h)
        return (((cols.double() + 0.5) * s) * geo.scale[0] - 0.5, ((rows.double() + 0.5) * s) * geo.scale[1] - 0.5)

    xs, ys = frame_xy(hm)
    x_n, y_n = frame_xy(nominal)
    return torch.hypot(xs - x_n, ys - y_n)


def test_real_photo_certificates_sound(model) -> None:
    """left01 (saturated white squares: the clip kink crosses the box): the engine certifies
    keypoints, and none of 10 000 sampled θ (corners, edges, kink line) moves one beyond r."""
    image = _photo("left01")
    fc = certify(model, image, EPS, EPS, RADIUS, margins=False)
    certified = [k for k in fc.keypoints if k.certified]
    assert len(certified) >= 3
    d = _moves(model, image, _thetas(EPS, 10_000))
    for k in certified:
        assert k.certified_radius <= RADIUS
        assert float(d[:, k.index].max()) <= k.certified_radius + 1e-6, k


def test_first_tiles_cut_only_where_saturated_pixels_have_their_kink(model) -> None:
    """The branch and bound runs in the clip-kink coordinates when a pixel's kink crosses the box,
    from the box cut at w = 0 only when a pixel is at 1 and at b = 0 only when one is at 0 (the
    clip's kinks lie there); a real photo has no pixel at 0."""
    x0, geo = model.preprocess(_photo("left01"))
    assert float(x0.min()) > 0 and float(x0.max()) >= 1
    box = (1 - EPS, 1 + EPS, -EPS, EPS)
    cases = [(x0, (True, False), 2), (x0.clamp(0.1, 0.9), (False, False), 1), (x0 * 1.2 - 0.1, (True, True), 4)]
    for x, kinks, tiles in cases:
        ctx = frame_context(model.detector, x.clamp(0, 1), geo)
        crossed, cuts = _kink_cuts(ctx.x0, input_clamp(ctx.plan.layers)[0], box)
        assert cuts == kinks
        assert crossed == (tiles > 1)  # in [0.1, 0.9] no kink reaches the ±0.02 box
        t = _Coords(box, True, "cpu", cuts).initial()
        assert len(t) == tiles
        assert torch.allclose(t[:, [0, 2]].min(0).values, _Coords(box, True, "cpu").root[[0, 2]])  # they cover the root
        assert torch.allclose(t[:, [1, 3]].max(0).values, _Coords(box, True, "cpu").root[[1, 3]])


def test_refuted_keypoints_carry_a_real_counterexample(model) -> None:
    """left02's last keypoint is refuted; its θ lies in the box and really moves the argmax beyond
    r. Nothing but certified keypoints has a finite r*."""
    image = _photo("left02")
    fc = certify(model, image, EPS, EPS, RADIUS, margins=False)
    refuted = [k for k in fc.keypoints if k.status is Status.REFUTED]
    assert refuted
    for k in fc.keypoints:
        assert math.isfinite(k.certified_radius) == k.certified
        assert (k.counterexample is not None) == (k.status is Status.REFUTED)
    for k in refuted:
        c, b = k.counterexample
        assert 1 - EPS <= c <= 1 + EPS and -EPS <= b <= EPS
        d = _moves(model, image, torch.tensor([[c, b]], dtype=torch.float64))
        assert float(d[0, k.index]) > RADIUS
        assert k.radius_label == "refuted" and k.to_dict()["certified_radius"] is None
        assert k.to_dict()["counterexample"] == [c, b]


def test_nothing_proven_gives_infinite_radius(model) -> None:
    """A zero budget on a frame the first bound pass cannot prove: every keypoint UNKNOWN, r* inf."""
    fc = certify(model, _photo("left03"), EPS, EPS, RADIUS, margins=False, budget_ms=0.0)
    assert all(k.status is Status.UNKNOWN for k in fc.keypoints)
    assert all(k.certified_radius == math.inf and k.radius_label == "—" for k in fc.keypoints)


def test_smaller_budget_never_proves_more(model) -> None:
    """Anytime: the proven sets grow with the budget, up to the unlimited search's (which the
    sampling test checks), and what is not proven in time is UNKNOWN, never refuted by the cut."""
    image = _photo("left01")
    full = certify(model, image, EPS, EPS, RADIUS, margins=False)
    prev: set[int] = set()
    for budget in (0.0, 100.0, 400.0, 1500.0, 8000.0):
        fc = certify(model, image, EPS, EPS, RADIUS, margins=False, budget_ms=budget)
        proven = {k.index for k in fc.keypoints if k.certified}
        assert prev <= proven <= {k.index for k in full.keypoints if k.certified}, budget
        for k, f in zip(fc.keypoints, full.keypoints):
            assert k.status in (f.status, Status.UNKNOWN)
        prev = proven
    assert prev


def test_memory_cap_ends_open(model) -> None:
    """A cap of 3 open sub-boxes on a frame that needs many: the search ends with OPEN keypoints
    (no crash, no certificate it did not prove), and never holds more than the cap."""
    image = _photo("left03")
    x0, geo = model.preprocess(image)
    ctx = frame_context(model.detector, x0, geo)
    res = search(ctx, (1 - EPS, 1 + EPS, -EPS, EPS), RADIUS, max_leaves=3)
    assert any(r.state == "open" for r in res.values())
    assert all(r.peak_leaves <= 3 for r in res.values())
    full = search(ctx, (1 - EPS, 1 + EPS, -EPS, EPS), RADIUS)
    assert max(r.peak_leaves for r in full.values()) > 3
    for k, r in res.items():
        assert r.state != "proven" or full[k].state == "proven"


def test_warm_start_gives_the_cold_statuses(model) -> None:
    """A stream left01, left01, left06: with a warm start every frame gets the statuses of its
    cold start, and the warm state really holds partitions."""
    warm = WarmStart()
    for name in ("left01", "left01", "left06"):
        image = _photo(name)
        cold = certify(model, image, EPS, EPS, RADIUS, margins=False)
        hot = certify(model, image, EPS, EPS, RADIUS, margins=False, warm_start=warm)
        assert [k.status for k in hot.keypoints] == [k.status for k in cold.keypoints], name
        assert any(len(p) > 0 for p in warm.partitions.values())


TINY = DetectorConfig(num_keypoints=2, input_width=16, input_height=12, output_stride=4, stem_width=3, width=4, depth=1)


@pytest.mark.parametrize("seed", [0, 1, 2, 4, 7, 8])  # not 3, 5: dead heatmaps (exact ties, OPEN)
def test_exact_against_dense_grid_on_tiny_nets(seed: int) -> None:
    """Tiny random nets (certified and refuted keypoints mixed): the search decides every
    keypoint (complete here), a certified keypoint never moves on a dense 101 x 101 θ grid, a
    refuted one has a real counter-example, and where the grid finds a move the verdict is REFUTED."""
    net = random_model(seed, TINY)
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 256, (4, 5)).astype(np.uint8), (16, 12), interpolation=cv2.INTER_LINEAR)
    eps, radius = 0.1, 2.0
    fc = certify(net, image, eps, eps, radius, margins=False)
    c, b = torch.meshgrid(torch.linspace(1 - eps, 1 + eps, 101, dtype=torch.float64),
                          torch.linspace(-eps, eps, 101, dtype=torch.float64), indexing="ij")
    grid = _moves(net, image, torch.stack([c.flatten(), b.flatten()], 1))
    for k in fc.keypoints:
        assert k.status in (Status.CERTIFIED, Status.REFUTED), k
        moved = float(grid[:, k.index].max()) > radius
        if k.certified:
            assert not moved
        else:
            assert float(_moves(net, image, torch.tensor([k.counterexample], dtype=torch.float64))[0, k.index]) > radius
        if moved:
            assert k.status is Status.REFUTED


def test_decision_time_is_the_end_of_the_deciding_round(model, monkeypatch) -> None:
    """left11 and left14, first round only (max_depth=0): every keypoint is decided in that round
    (proven, refuted or stopped at the depth cap), so all carry the same decision time, that
    round's end (a clock that ticks once per reading tells the stamps apart)."""
    ticks = iter(range(10**6))
    monkeypatch.setattr(native, "clock", lambda: float(next(ticks)))
    proven = 0
    for name in ("left11", "left14"):
        x0, geo = model.preprocess(_photo(name))
        ctx = frame_context(model.detector, x0, geo)
        res = search(ctx, (1 - EPS, 1 + EPS, -EPS, EPS), RADIUS, max_depth=0)
        assert len({r.decided_at for r in res.values()}) == 1, res
        proven += sum(r.state == "proven" for r in res.values())
    assert proven >= 1  # the case that was stamped one round late


def test_round_past_the_deadline_keeps_its_proofs_and_ends(model) -> None:
    """A zero budget: the first round's bounds still run and what they prove stays proven (left11's
    first keypoint is proven by the first tiles), but its counter-example search and splits are
    skipped, so nothing is refuted and the rest is UNKNOWN (left02's refuted keypoint too)."""
    fc = certify(model, _photo("left11"), EPS, EPS, RADIUS, margins=False, budget_ms=0.0)
    assert [k.status for k in fc.keypoints] == [Status.CERTIFIED] + [Status.UNKNOWN] * 3
    fc = certify(model, _photo("left02"), EPS, EPS, RADIUS, margins=False, budget_ms=0.0)
    assert all(k.status is Status.UNKNOWN for k in fc.keypoints)
