"""``usn-keypoints real-pruning`` runs end to end on a tiny detector and one real left* photo: it
prunes with two criteria (and fine-tunes the no-pruning control), evaluates on the real photo,
writes its table, JSON and plot, and a second run reuses the finished models and rows."""

import json

import torch

from usn_robust_keypoints.cli import main
from usn_robust_keypoints.data import CHESSBOARD_9X6
from usn_robust_keypoints.experiments.real_pruning import certified_within
from usn_robust_keypoints.model import DetectorConfig, HeatmapDetector, save_checkpoint


def test_real_pruning_end_to_end_and_resume(tmp_path, capsys):
    torch.manual_seed(0)
    cfg = DetectorConfig(keypoint_names=CHESSBOARD_9X6.keypoint_names, stem_width=4, width=8, depth=1,
                         head_width=4, zero_mean_stem=True)
    parent = save_checkpoint(HeatmapDetector(cfg).eval(), tmp_path / "tiny.safetensors")
    out = tmp_path / "rp"
    args = ["real-pruning", "--parent", str(parent), "--teacher", "none", "--out", str(out), "--methods", "USN+W",
            "random", "no pruning", "--sparsities", "0.25", "--seeds", "0", "--steps-per-round", "1", "--recovery-steps", "1",
            "--train-images", "8", "--frames", "1", "--cap-ms", "200"]
    assert main(args) == 0
    d = json.loads((out / "results.json").read_text())
    rows = d["rows"]
    assert set(rows) == {"parent|0|0", "USN+W|0.25|0", "random|0.25|0", "no pruning|0|0"}
    for r in rows.values():
        assert r["keypoints"] == 4 and len(r["node"]) == len(r["status"]) == len(r["time_ms"]) == 4
        assert 0.0 <= r["pck_real_left"] <= 1.0 and r["leaf_ms"] > 0 and len(r["complete_ms"]) == 1
        assert all(c <= 1 for c in certified_within(r, 200.0))
        assert set(r["status"]) <= {"CERTIFIED", "REFUTED", "OPEN", "UNKNOWN"}
    assert rows["USN+W|0.25|0"]["params"] < rows["parent|0|0"]["params"] == rows["no pruning|0|0"]["params"]
    table = (out / "results.md").read_text()
    assert "| USN+W | 25% |" in table and "| random | 25% |" in table and "| no pruning | 0% |" in table and "paired vs USN+W" in table
    assert (out / "pruning_real.png").stat().st_size > 0
    stamp = {f.name: f.stat().st_mtime_ns for f in (out / "models").iterdir()}
    assert main(args) == 0  # resumed: nothing pruned or evaluated again
    assert {f.name: f.stat().st_mtime_ns for f in (out / "models").iterdir()} == stamp
    assert json.loads((out / "results.json").read_text())["rows"] == rows
    capsys.readouterr()


def test_real_pruning_rejects_unknown_method(tmp_path):
    assert main(["real-pruning", "--methods", "magic", "--out", str(tmp_path / "x")]) == 2
