"""``usn-keypoints real-frontier`` runs end to end on a tiny detector and one real left* photo, writes
its table (with the sampling upper bound), JSON and plot, counts as certified within a budget only what was
proven in time, and merges only results measured with the same settings."""

import json

import pytest
import torch

from usn_robust_keypoints.cli import main
from usn_robust_keypoints.model import DetectorConfig, HeatmapDetector, save_checkpoint
from usn_robust_keypoints.data import CHESSBOARD_9X6


def _tiny(tmp_path):
    torch.manual_seed(0)
    cfg = DetectorConfig(keypoint_names=CHESSBOARD_9X6.keypoint_names, stem_width=4, width=6, depth=1,
                         head_width=4, zero_mean_stem=True)
    return save_checkpoint(HeatmapDetector(cfg).eval(), tmp_path / "tiny.safetensors")


def test_real_frontier_end_to_end_and_merge(tmp_path, capsys):
    model = _tiny(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["real-frontier", "--models", str(model), "--labels", "tiny", "--frames", "1",
                 "--budgets", "0", "50", "none", "--out", str(a)]) == 0
    d = json.loads((a / "results.json").read_text())
    row = d["rows"][0]
    assert row["model"] == "tiny" and row["real_keypoints"] == 4 and row["detector_fps"] > 0
    assert set(row["cert"]) == {"0.02@0", "0.02@50", "0.02@none"} and set(row["upper"]) == {"0.02"}
    # A zero budget: the first round still runs and proves keypoints, but after the budget: none counts.
    assert row["cert"]["0.02@0"]["rate"] == 0.0 and row["cert"]["0.02@0"]["late"] >= 1
    assert row["cert"]["0.02@none"]["rate"] > 0 and row["cert"]["0.02@none"]["late"] == 0
    assert 0.0 <= row["upper"]["0.02"] <= 1.0
    for c in row["cert"].values():
        assert len(c["certified"]) == 4 and 0.0 <= c["rate"] <= 1.0 and c["acc"] <= c["rate"]
        assert all(x <= y for x, y in zip(c["correct"], c["certified"]))
        assert c["rate"] <= row["upper"]["0.02"]  # no sound certificate beats sampling
    assert (a / "frontier.png").stat().st_size > 0 and "| tiny |" in (a / "results.md").read_text()
    assert main(["real-frontier", "--models", str(model), "--frames", "1", "--budgets", "none",
                 "--out", str(b)]) == 0
    with pytest.raises(ValueError, match="other settings"):
        from usn_robust_keypoints.experiments.real_frontier import merge_results

        merge_results([str(a / "results.json"), str(b / "results.json")], tmp_path / "m")
    assert main(["real-frontier", "--merge", str(a / "results.json"), str(a / "results.json"),
                 "--out", str(tmp_path / "m2")]) == 0
    assert len(json.loads((tmp_path / "m2" / "results.json").read_text())["rows"]) == 2
    capsys.readouterr()
