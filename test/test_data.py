"""Data: generator labels re-detected by OpenCV, COCO round trip, real set labels."""

import cv2
import numpy as np
import pytest

from usn_robust_keypoints.data import (CHESSBOARD_9X6, LabelledImage, SceneConfig, SceneGenerator,
                                       build_real_set, load_coco, save_coco)
from usn_robust_keypoints.data.backgrounds import background_files, load_backgrounds


@pytest.fixture(scope="module")
def generator():
    # larger output than the model input so that OpenCV's corner finder works reliably
    cfg = SceneConfig(width=320, height=240, render_scale=2, blur_sigma=(0.0, 0.8), noise_sigma=(0.0, 2.0))
    return SceneGenerator(load_backgrounds(), cfg)


def test_generator_labels_match_opencv_corner_finder(generator):
    rng = np.random.default_rng(7)
    checked, errors = 0, []
    for _ in range(40):
        scene = generator.generate(rng)
        found, corners = cv2.findChessboardCorners(scene.image, (9, 6))
        if not found:
            continue
        corners = cv2.cornerSubPix(scene.image, corners.reshape(-1, 1, 2).astype(np.float32), (5, 5), (-1, -1),
                                   (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)).reshape(-1, 2)
        # OpenCV orders the grid its own way: match every found corner to its nearest label
        errors.append(np.linalg.norm(corners[:, None] - scene.corners[None], axis=2).min(axis=1))
        checked += 1
    assert checked >= 15, f"OpenCV found the board in only {checked}/40 scenes"
    errors = np.concatenate(errors)  # OpenCV occasionally misplaces a corner by itself
    assert np.median(errors) < 0.3
    assert np.mean(errors < 1.0) > 0.98, f"only {np.mean(errors < 1.0):.3f} of corners within 1 px"


def test_generator_keypoints_are_the_named_corners_in_canonical_order(generator):
    rng = np.random.default_rng(3)
    for _ in range(20):
        scene = generator.generate(rng)
        np.testing.assert_allclose(scene.keypoints, scene.corners[CHESSBOARD_9X6.keypoint_indices])
        # the canonical order is reproduced from the image alone
        canon = CHESSBOARD_9X6.canonical_order(scene.corners[::-1], scene.image)
        np.testing.assert_allclose(canon, scene.corners)
        h, w = scene.image.shape
        assert np.all((scene.keypoints >= 0) & (scene.keypoints <= [w - 1, h - 1]))


def test_generator_is_deterministic(generator):
    a = generator.generate(np.random.default_rng(11))
    b = generator.generate(np.random.default_rng(11))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.keypoints, b.keypoints)


def test_backgrounds_never_include_evaluation_photos():
    names = [p.name for p in background_files()]
    assert names, "no backgrounds"
    assert not [n for n in names if n.startswith(("left", "right")) or "chess" in n]


def test_coco_round_trip(tmp_path):
    img = np.zeros((30, 40), np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    kps = np.array([[1.25, 2.5], [10.0, 20.0], [30.5, 5.0], [0.0, 0.0]])
    vis = np.array([2, 2, 1, 0])
    rec = LabelledImage(tmp_path / "a.png", kps, vis, 40, 30)
    path = save_coco(tmp_path / "sub" / "kp.json", [rec, rec], CHESSBOARD_9X6.keypoint_names, "board",
                     CHESSBOARD_9X6.symmetries)
    records, names, sym = load_coco(path)
    assert names == CHESSBOARD_9X6.keypoint_names and sym == CHESSBOARD_9X6.symmetries
    assert len(records) == 2
    np.testing.assert_allclose(records[0].keypoints, kps)
    np.testing.assert_array_equal(records[0].visibility, vis)
    assert records[0].load().shape == (30, 40)


def test_coco_bad_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": []}')
    with pytest.raises(ValueError, match="not a COCO-keypoints file"):
        load_coco(bad)


def test_real_left_set_labels():
    records, names, sym = load_coco(build_real_set("left"))
    assert len(records) == 13 and len(names) == 4 and sym == CHESSBOARD_9X6.symmetries
    for r in records:
        assert r.file.name.startswith("left") and r.width == 640 and r.height == 480
        # the four named corners span a large quadrilateral inside the photo
        assert np.all((r.keypoints > 0) & (r.keypoints < [640, 480]))
        assert np.linalg.norm(r.keypoints[0] - r.keypoints[2]) > 100
