"""The photographed-print scenes (data/photo.py) keep exact labels: OpenCV's own chessboard detector
re-finds every inner corner within 1 px of the generator's labels, for each effect family alone and
for all of them together; and the effects really change the image."""

import cv2
import numpy as np
import pytest

from usn_robust_keypoints.data import CHESSBOARD_9X6, PhotoConfig, SceneConfig, SceneGenerator
from usn_robust_keypoints.data.backgrounds import load_backgrounds
from usn_robust_keypoints.data.photo import FAMILIES, distort_points, distortion_maps

# Large, moderately tilted boards at 320x240 so that cv2 can find them; effect strengths as trained.
BIG = dict(width=320, height=240, render_scale=2, board_width=(0.45, 0.7), max_tilt_deg=30.0)
SCENES = 10


@pytest.fixture(scope="module")
def backgrounds():
    return load_backgrounds()


def _cv2_corners(image: np.ndarray) -> np.ndarray | None:
    t = CHESSBOARD_9X6
    ok, c = cv2.findChessboardCorners(image, (t.cols, t.rows),
                                      cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
    if not ok:
        return None
    c = cv2.cornerSubPix(image, c, (5, 5), (-1, -1),
                         (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 0.01))
    return c.reshape(-1, 2).astype(np.float64)


def _max_error(found: np.ndarray, labels: np.ndarray) -> float:
    """Largest corner distance under the best of cv2's possible orderings (reversed or not)."""
    t = CHESSBOARD_9X6
    g = found.reshape(t.rows, t.cols, 2)
    orders = [g, g[::-1, ::-1], g[::-1], g[:, ::-1]]
    return min(float(np.linalg.norm(o.reshape(-1, 2) - labels, axis=1).max()) for o in orders)


@pytest.mark.parametrize("family", FAMILIES + ("all",))
def test_cv2_refinds_the_labels(backgrounds, family):
    photo = PhotoConfig() if family == "all" else PhotoConfig().only(family)
    if family == "occlusion":
        photo = PhotoConfig(**{**photo.__dict__, "occlusion_p": 1.0})
    gen = SceneGenerator(backgrounds, SceneConfig(**BIG, photo=photo))
    rng = np.random.default_rng(7)
    errors, eligible = [], 0
    for _ in range(8 * SCENES):
        scene = gen.generate(rng)
        # cv2 needs the outer squares in the frame: only boards a square away from the border count
        sq = np.linalg.norm(np.diff(scene.corners.reshape(6, 9, 2), axis=1), axis=-1).max()
        if not ((scene.corners >= sq).all() and (scene.corners <= np.array([BIG["width"], BIG["height"]]) - sq).all()):
            continue
        eligible += 1
        found = _cv2_corners(scene.image)
        if found is not None:
            errors.append(_max_error(found, scene.corners))
        if eligible == SCENES:
            break
    assert eligible == SCENES
    assert len(errors) >= SCENES * 3 // 4, f"cv2 found the board in only {len(errors)}/{SCENES} scenes"
    assert max(errors) < 1.0, f"labels off by up to {max(errors):.2f} px ({family})"
    np.testing.assert_allclose(gen.generate(np.random.default_rng(3)).keypoints,
                               gen.generate(np.random.default_rng(3)).keypoints)  # deterministic


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "levels"])
def test_each_family_changes_the_image(backgrounds, family):
    """Against the levels-only config and the same random draws, every family changes the pixels
    (for occlusion: of at least one of a few scenes, since a try can be refused)."""
    cfg = SceneConfig(**BIG)
    on = PhotoConfig().only(family)
    on = PhotoConfig(**{**on.__dict__, **{k: 1.0 for k in on.__dict__ if k.endswith("_p") and getattr(on, k) > 0}})
    changed = 0
    for seed in range(4):
        base = SceneGenerator(backgrounds, SceneConfig(**{**cfg.__dict__, "photo": PhotoConfig().only("levels")}))
        eff = SceneGenerator(backgrounds, SceneConfig(**{**cfg.__dict__, "photo": on}))
        a = base.generate(np.random.default_rng(seed)).image.astype(int)
        b = eff.generate(np.random.default_rng(seed)).image.astype(int)
        changed += np.abs(a - b).mean() > 0.5
    assert changed >= 1


def test_distortion_labels_follow_the_remap():
    """A dot moved by the remap lands where distort_points says (sub-pixel centroid)."""
    h, w = 240, 320
    for k1 in (-0.12, 0.12):
        src = np.array([[40.0, 30.0], [280.0, 200.0], [160.0, 120.0], [290.0, 40.0]])
        img = np.zeros((h, w), np.float32)
        yy, xx = np.mgrid[0:h, 0:w]
        for p in src:
            img += np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * 2.0**2))
        mx, my = distortion_maps(k1, (h, w))
        out = cv2.remap(img, mx, my, cv2.INTER_LINEAR)
        for p, q in zip(src, distort_points(src, k1, (h, w))):
            x0, y0 = int(round(q[0])), int(round(q[1]))
            assert 8 <= x0 < w - 8 and 8 <= y0 < h - 8
            win = out[y0 - 8 : y0 + 9, x0 - 8 : x0 + 9]
            gy, gx = np.mgrid[y0 - 8 : y0 + 9, x0 - 8 : x0 + 9]
            c = np.array([(win * gx).sum(), (win * gy).sum()]) / win.sum()
            assert np.linalg.norm(c - q) < 0.3, (k1, p, q, c)
        assert np.abs(distort_points(src, k1, (h, w)) - src).max() > 3  # it moved
