"""Tiny end-to-end runs of `usn-keypoints prune` and the experiment (quick mode)."""

import json

import numpy as np
import pytest
import torch

from usn_robust_keypoints.cli import main
from usn_robust_keypoints.evaluate import format_rate
from usn_robust_keypoints.model import DetectorConfig, HeatmapDetector, load_detector, save_checkpoint
from usn_robust_keypoints.prune.schedule import round_plan
from usn_robust_keypoints.prune.surgery import select_channels
from usn_robust_keypoints.prune.usn import hidden_convs

CFG = DetectorConfig(input_width=32, input_height=24, stem_width=6, width=8, depth=1, head_width=6)


@pytest.fixture()
def tiny_model(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(HeatmapDetector(DetectorConfig(**CFG.to_dict())), tmp_path / "tiny.safetensors")


def test_prune_cli_removes_channels_and_reloads(tiny_model, tmp_path):
    lam = 0.5
    out = tmp_path / "pruned_usn"
    rc = main(["prune", "--model", str(tiny_model), "--method", "usn", "--sparsity", "0.5", "--wasserstein",
               str(lam), "--out", str(out), "--train-images", "16", "--test-images", "4", "--steps-per-round", "1",
               "--recovery-steps", "1", "--batch-size", "2", "--round-fraction", "0.25"])
    assert rc == 0
    model, info = load_detector(out.with_suffix(".safetensors"))
    dense, _ = load_detector(tiny_model)
    before = sum(c.out_channels for _, c, _ in hidden_convs(dense))
    after = sum(c.out_channels for _, c, _ in hidden_convs(model))
    assert after == before - round(0.5 * before)
    assert model.config.channels == [c.out_channels for _, c, _ in hidden_convs(model)]
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in dense.parameters())
    assert model(torch.rand(1, 1, 24, 32)).shape == (1, CFG.num_keypoints, 12, 16)
    assert info["pruning"]["method"] == "usn" and info["pruning"]["wasserstein"] == lam
    assert len(info["pruning"]["removed"]) == 2  # two rounds of 25 %
    scores = json.loads(out.with_suffix(".usn_scores.json").read_text())
    assert len(scores["layers"]) == len(hidden_convs(dense))
    assert out.with_suffix(".usn_scores.png").stat().st_size > 0
    # The saved scores are the ones the first round pruned by: the schedule's own selection rule on
    # them (same floors, same seeded tie-break) gives exactly the channels the first round removed.
    sched = info["pruning"]
    floors = [max(1, int(round(sched["min_keep"] * c.out_channels))) for _, c, _ in hidden_convs(dense)]
    first = round_plan(before, tuple(sched["targets"]), sched["round_fraction"])[0]
    chosen = select_channels([torch.tensor(layer["score"]) for layer in scores["layers"]], first, floors,
                             torch.Generator().manual_seed(sched["seed"]))
    assert chosen == info["pruning"]["removed"][0] and sum(map(len, chosen)) == first


def test_prune_cli_rejects_bad_sparsity(tiny_model, tmp_path):
    assert main(["prune", "--model", str(tiny_model), "--sparsity", "1.5", "--out", str(tmp_path / "x")]) == 2


def test_experiment_quick_writes_table_and_plots(tiny_model, tmp_path):
    out = tmp_path / "results"
    rc = main(["experiment", "--quick", "--model", str(tiny_model), "--out", str(out), "--threads", "1",
               "--wasserstein", "0.5", "1"])  # a λ sweep: one USN+W trajectory per value
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    rows = doc["rows"]
    assert rows[0]["model"] == "dense" and {r["sparsity"] for r in rows[1:]} == {0.5}
    assert {r["method"] for r in rows} == {"dense", "usn", "random"}
    assert [(r["model"], r["lambda"]) for r in rows[1:] if r["lambda"] > 0] == [("USN+W (λ=0.5)", 0.5),
                                                                                 ("USN+W (λ=1)", 1.0)]
    for r in rows:
        assert 0 <= r["cert_acc@0.02"] <= r["cert_rate@0.02"] <= 1
        assert r["cert_ms@0.02"] > 0 and r["params"] > 0 and r["mean_beta_star"] >= 0
    assert all(r["params"] < rows[0]["params"] for r in rows[1:])
    table = (out / "results.md").read_text()
    assert "| dense |" in table and "USN+W" in table
    n_kp = 2 * rows[0]["num_keypoints"]  # 2 certified frames; certified accuracy carries its 95 % interval
    assert rows[0]["cert_keypoints"] == n_kp and "Wilson" in table
    assert format_rate(rows[0]["cert_acc@0.02"], n_kp) in table
    for png in ("certified_accuracy.png", "pck.png", "cert_time.png", "pck_vs_certified.png"):
        assert (out / png).stat().st_size > 0


def test_experiment_robust_term_kappa0_ablation_in_parallel_jobs(tiny_model, tmp_path):
    out = tmp_path / "results"
    rc = main(["experiment", "--quick", "--model", str(tiny_model), "--out", str(out), "--threads", "1",
               "--methods", "usn+w", "random", "--robust-kappa", "0.1", "--robust-eps", "0.02", "--robust-ramp", "0",
               "--jobs", "2", "--usn-smoothness", "bounds", "--usn-gamma", "0.25"])  # worker processes
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["config"]["usn"]["smoothness"] == "bounds" and doc["config"]["usn"]["gamma"] == 0.25
    rows = doc["rows"][1:]
    by_label = {r["model"]: r for r in rows}
    assert set(by_label) == {"USN+W (λ=1)", "random", "USN+W (λ=1) κ=0"}
    assert by_label["USN+W (λ=1)"]["kappa"] == 0.1 and by_label["random"]["kappa"] == 0.1
    assert by_label["USN+W (λ=1) κ=0"]["kappa"] == 0.0
    # The term ran in every fine-tuning step of the trajectory: 4 rounds x 2 steps + 2 recovery steps.
    _, meta = load_detector(out / by_label["random"]["file"])
    assert meta["robust"]["steps"] == 10 and meta["robust"]["eps"] == 0.02
    _, meta0 = load_detector(out / by_label["USN+W (λ=1) κ=0"]["file"])
    assert "robust" not in meta0
    assert "κ = 0.1" in (out / "results.md").read_text() and "smoothness bounds" in (out / "results.md").read_text()
    _, meta_w = load_detector(out / by_label["USN+W (λ=1)"]["file"])
    assert meta_w["pruning"]["usn"]["smoothness"] == "bounds"
    assert [r["model"] for r in rows] == ["USN+W (λ=1)", "random", "USN+W (λ=1) κ=0"]  # run order kept


def test_tradeoff_end_to_end_on_a_checkpoint(tiny_model, tmp_path):
    from usn_robust_keypoints.experiments.tradeoff import TradeoffConfig, run_tradeoff

    cfg = TradeoffConfig(eps=(0.02, 0.05), frames=2, test_images=4, budget_ms=300)
    row, again = run_tradeoff([("tiny", str(tiny_model)), ("again", str(tiny_model))], cfg, tmp_path / "t",
                              progress=False)
    k = load_detector(tiny_model)[0].config.num_keypoints
    assert row["cert_keypoints"] == 2 * k and row["real_keypoints"] > 0
    assert all(0 <= row[f"cert_acc@{e:g}"] <= row[f"cert_rate@{e:g}"] <= 1 for e in cfg.eps)
    for e in cfg.eps:  # per-keypoint outcomes behind the rate, the same for the same (deterministic) model
        assert len(row[f"cert_correct@{e:g}"]) == 2 * k
        assert np.mean(row[f"cert_correct@{e:g}"]) == row[f"cert_acc@{e:g}"]
        assert again[f"cert_correct@{e:g}"] == row[f"cert_correct@{e:g}"]
    md = (tmp_path / "t" / "results.md").read_text()
    assert "| tiny |" in md and "- again: ε=0.02: +0 / −0 (p = 1)" in md
    assert json.loads((tmp_path / "t" / "results.json").read_text())["rows"][0]["model"] == "tiny"
    assert (tmp_path / "t" / "tradeoff.png").stat().st_size > 1000


def test_tradeoff_first_frame_certifies_a_later_range(tiny_model, tmp_path, monkeypatch):
    """``first_frame`` certifies test scenes first_frame.. (the same scenes and outcomes as in a run from 0)."""
    from usn_robust_keypoints.experiments import tradeoff
    from usn_robust_keypoints.experiments.tradeoff import TradeoffConfig, run_tradeoff

    seen = []
    real = tradeoff.certified_accuracy
    monkeypatch.setattr(tradeoff, "certified_accuracy", lambda km, images, *a, **kw: seen.append(images.copy()) or
                        real(km, images, *a, **kw))
    both = run_tradeoff([("t", str(tiny_model))], TradeoffConfig(eps=(0.05,), frames=2, test_images=2, budget_ms=None),
                        tmp_path / "a", progress=False)[0]
    later = run_tradeoff([("t", str(tiny_model))], TradeoffConfig(eps=(0.05,), frames=1, test_images=2, budget_ms=None,
                                                                  first_frame=1), tmp_path / "b", progress=False)[0]
    assert len(seen[1]) == 1 and np.array_equal(seen[1][0], seen[0][1]) and not np.array_equal(seen[1][0], seen[0][0])
    k = len(later["cert_correct@0.05"])
    assert k > 0 and later["cert_correct@0.05"] == both["cert_correct@0.05"][k:]
    assert "test scenes 1–1" in (tmp_path / "b" / "results.md").read_text()


def test_tradeoff_cli_without_budget(tiny_model, tmp_path):
    """``--no-budget`` certifies with no time limit (recorded as budget_ms None and said in the table)."""
    out = tmp_path / "nb"
    assert main(["tradeoff", "--models", str(tiny_model), "--labels", "tiny", "--out", str(out), "--frames", "1",
                 "--eps", "0.02", "--no-budget"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["config"]["budget_ms"] is None and doc["rows"][0]["cert_keypoints"] > 0
    assert "no time budget" in (out / "results.md").read_text()


def test_experiment_plus_w_rows_for_any_criterion():
    """``bn+w`` prunes with BN-scale marks plus the Wasserstein concentration, one row per λ."""
    from usn_robust_keypoints.experiments.pruning import ExperimentConfig, _runs

    runs = _runs(ExperimentConfig(methods=("bn+w", "usn+w", "bn"), wasserstein=(0.1, 1.0), ablations=False))
    got = [(label, s.method, s.wasserstein) for label, s, _ in runs]
    assert got == [("bn+W (λ=0.1)", "bn", 0.1), ("bn+W (λ=1)", "bn", 1.0), ("USN+W (λ=0.1)", "usn", 0.1),
                   ("USN+W (λ=1)", "usn", 1.0), ("bn", "bn", 0.0)]
    with pytest.raises(ValueError):
        _runs(ExperimentConfig(methods=("magic+w",)))


def test_pooled_paired_pools_the_files_row_by_row(tmp_path):
    """``pooled-paired``: the per-keypoint outcomes of every file, concatenated per row, against row 0."""
    from dataclasses import asdict

    from usn_robust_keypoints.experiments.tradeoff import TradeoffConfig

    cfg = asdict(TradeoffConfig(eps=(0.02,)))
    files = []
    for i, (a, b) in enumerate([([1, 0, 1], [0, 0, 1]), ([1, 1], [0, 1])]):
        rows = [{"model": "base", "cert_correct@0.02": b}, {"model": f"m{i}", "cert_correct@0.02": a}]
        files.append(tmp_path / f"s{i}.json")
        files[-1].write_text(json.dumps({"config": cfg, "rows": rows}))
    assert main(["pooled-paired", *map(str, files)]) == 0
    from usn_robust_keypoints.experiments.tradeoff import pooled_paired

    lines = pooled_paired(files)
    assert lines[0] == "Pooled over 2 files (labels of the first)."
    assert lines[-1] == "- m0: ε=0.02: +2 / −0 (p = 0.5)"  # 5 pooled keypoints, 2 only by the model
    (tmp_path / "bad.json").write_text(json.dumps({"config": cfg, "rows": []}))
    with pytest.raises(ValueError):
        pooled_paired([files[0], tmp_path / "bad.json"])


def test_diagnostic_subcommands_write_their_tables(tiny_model, tmp_path, capsys):
    """box-pass-cost, certify-timing, stream-check and frontier run end to end on a tiny model."""
    out = tmp_path / "bpc.md"
    assert main(["box-pass-cost", str(tiny_model), "--batches", "1", "2", "--repeats", "1", "--out", str(out)]) == 0
    assert "| tiny | 32×24 |" in out.read_text()
    out = tmp_path / "timing.md"
    assert main(["certify-timing", str(tiny_model), "--frames", "1", "--out", str(out)]) == 0
    timing = out.read_text()
    assert timing.count("| tiny | real left (13) |") == 2 and "| × first |" in timing  # margins off, on
    assert main(["stream-check", "--model", str(tiny_model), "--frames", "1", "--radii", "4"]) == 0
    assert "| levels 20..235 | 4 |" in capsys.readouterr().out
    from dataclasses import asdict

    from usn_robust_keypoints.experiments.tradeoff import TradeoffConfig

    cfg = asdict(TradeoffConfig(eps=(0.02,), frames=2, budget_ms=None))
    rows = [{"model": f"m{i}", "path": f"m{i}.safetensors", "pck_synthetic": 0.9, "pck_real_left": 0.5 + i / 10,
             "cert_acc@0.02": 0.25 * i} for i in range(2)]
    (tmp_path / "r.json").write_text(json.dumps({"config": cfg, "rows": rows + rows[:1]}))  # m0 twice: once
    assert main(["frontier", str(tmp_path / "r.json"), "--out", str(tmp_path / "f")]) == 0
    table = (tmp_path / "f" / "frontier.md").read_text()
    assert "| 2 | m1 | `m1.safetensors` | 0.900 | 0.600 | 0.250 |" in table and "| 3 |" not in table
    assert (tmp_path / "f" / "frontier.png").stat().st_size > 1000
    (tmp_path / "b.json").write_text(json.dumps({"config": {**cfg, "budget_ms": 500.0}, "rows": rows}))
    assert main(["frontier", str(tmp_path / "b.json"), "--out", str(tmp_path / "g")]) == 2


def test_prune_cli_photo_scenes_with_distillation(tiny_model, tmp_path):
    """--photo fine-tunes on photographed-print scenes and --distill-from adds the teacher's term;
    both are recorded in the checkpoint."""
    out = tmp_path / "pruned_photo"
    rc = main(["prune", "--model", str(tiny_model), "--method", "bn", "--sparsity", "0.25", "--out", str(out),
               "--train-images", "8", "--test-images", "0", "--steps-per-round", "2", "--recovery-steps", "2",
               "--batch-size", "2", "--round-fraction", "0.25", "--photo", "--distill-from", str(tiny_model),
               "--distill-weight", "0.5"])
    assert rc == 0
    model, info = load_detector(out.with_suffix(".safetensors"))
    assert info["pruning"]["photo"] is True and info["pruning"]["distill_weight"] == 0.5
    assert info["pruning"]["distill_from"] == str(tiny_model)
    dense, _ = load_detector(tiny_model)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in dense.parameters())
