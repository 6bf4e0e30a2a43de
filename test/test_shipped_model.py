"""The shipped default checkpoints load and meet the accuracy targets measured in README."""

import numpy as np
import pytest

from usn_robust_keypoints.data import CHESSBOARD_9X6, build_real_set, generate_split, load_coco
from usn_robust_keypoints.evaluate import evaluate_model
from usn_robust_keypoints.model import load_model
from usn_robust_keypoints.weights import DEFAULT_DENSE, WEIGHTS_DIR, default_model_path

SHIPPED = sorted(p.name for p in WEIGHTS_DIR.glob("*.safetensors"))


def test_dense_default_is_shipped():
    assert DEFAULT_DENSE in SHIPPED
    assert default_model_path().is_file()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_accuracy_on_real_left_photos(name):
    model = load_model(WEIGHTS_DIR / name, device="cpu")
    records, _, symmetries = load_coco(build_real_set("left"))
    ev = evaluate_model(model, [r.load() for r in records], np.stack([r.keypoints for r in records]),
                        symmetries, progress=False)
    assert ev.pck(3.0) >= 0.75, ev.table()


def test_dense_default_accuracy_on_synthetic_test_split():
    model = load_model(WEIGHTS_DIR / DEFAULT_DENSE, device="cpu")
    images, kps = generate_split("test", 500, progress=False)
    ev = evaluate_model(model, list(images), kps, CHESSBOARD_9X6.symmetries, progress=False)
    assert ev.pck(3.0) >= 0.90, ev.table()
