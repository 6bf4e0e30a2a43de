"""Training a tiny model for a few steps reduces the loss; evaluation handles symmetry."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from usn_robust_keypoints.data import SceneConfig, SceneGenerator
from usn_robust_keypoints.data.backgrounds import load_backgrounds
from usn_robust_keypoints.evaluate import format_rate, keypoint_errors, paired_test, wilson_interval
from usn_robust_keypoints.model import DetectorConfig, HeatmapDetector
from usn_robust_keypoints.train import distill_loss, heatmap_targets, train_detector


def tiny_training_set() -> tuple[DetectorConfig, np.ndarray, np.ndarray]:
    """A tiny detector config and 64 seeded 64x48 synthetic scenes (images, keypoints)."""
    cfg = DetectorConfig(input_width=64, input_height=48, output_stride=4, stem_width=8, width=12, depth=1)
    gen = SceneGenerator(load_backgrounds(include_opencv_doc=False), SceneConfig(width=64, height=48))
    rng = np.random.default_rng(0)
    scenes = [gen.generate(rng) for _ in range(64)]
    return cfg, np.stack([s.image for s in scenes]), np.stack([s.keypoints for s in scenes]).astype(np.float32)


def test_training_reduces_loss():
    torch.manual_seed(0)
    cfg, images, kps = tiny_training_set()
    model = HeatmapDetector(cfg)
    losses = train_detector(model, images, kps, steps=150, batch_size=16, lr=1e-2, device="cpu", progress=False)
    assert np.mean(losses[-10:]) < 0.9 * np.mean(losses[:5])


def _students(cfg, images, kps, teacher) -> list[HeatmapDetector]:
    """The same student (seed 1) trained 100 steps without and with distillation from ``teacher`` (weight 10)."""
    out = []
    for weight in (0.0, 10.0):
        torch.manual_seed(1)
        student = HeatmapDetector(cfg)
        train_detector(student, images, kps, steps=100, batch_size=16, lr=1e-2, device="cpu", progress=False,
                       teacher=teacher, distill_weight=weight)
        out.append(student)
    return out


def test_distillation_pulls_the_student_towards_the_teacher():
    """The same student trained with the distillation term ends closer to the teacher's heatmaps
    (distill_loss, whose floor is the teacher's own entropy) than without it; a teacher with other
    heatmap shapes is refused."""
    cfg, images, kps = tiny_training_set()
    torch.manual_seed(0)
    teacher = HeatmapDetector(cfg)
    train_detector(teacher, images, kps, steps=100, batch_size=16, lr=1e-2, device="cpu", progress=False)
    x = torch.from_numpy(images[:32]).float().div(255.0).unsqueeze(1)
    students = _students(cfg, images, kps, teacher)
    with torch.no_grad():
        t = teacher(x)
        gaps = [float(distill_loss(s(x), t) - distill_loss(t, t)) for s in students]
    assert 0 < gaps[1] < 0.7 * gaps[0]
    for other in (DetectorConfig(input_width=32, input_height=24, output_stride=2, stem_width=8, width=12, depth=1),
                  DetectorConfig(input_width=64, input_height=48, output_stride=4, stem_width=8, width=12, depth=1,
                                 num_keypoints=2, keypoint_names=("a", "b"))):
        with pytest.raises(ValueError, match="same keypoints and input size"):
            train_detector(HeatmapDetector(cfg), images, kps, steps=1, batch_size=4, device="cpu", progress=False,
                           teacher=HeatmapDetector(other), distill_weight=1.0)


def test_distillation_from_a_finer_stride():
    """A stride-4 student distils from a stride-2 teacher against the teacher's distribution summed
    over the 2x2 cells of each student cell, and training with it pulls the student towards it; a
    coarser teacher is refused."""
    cfg, images, kps = tiny_training_set()
    fine = replace(cfg, output_stride=2)
    torch.manual_seed(0)
    teacher = HeatmapDetector(fine)
    train_detector(teacher, images, kps, steps=100, batch_size=16, lr=1e-2, device="cpu", progress=False)
    x = torch.from_numpy(images[:32]).float().div(255.0).unsqueeze(1)
    with torch.no_grad():
        t = teacher(x)
    p = torch.softmax(t.flatten(-2), -1).view_as(t)
    coarse = p.unflatten(-1, (-1, 2)).unflatten(-3, (-1, 2)).sum(dim=(-1, -3))  # (B, K, h/2, w/2)
    s = torch.randn(32, cfg.num_keypoints, *cfg.heatmap_size)
    ref = -(coarse * torch.log_softmax(s.flatten(-2), -1).view_as(s)).sum(dim=(-2, -1)).mean()
    assert torch.isclose(distill_loss(s, t), ref, rtol=1e-5)
    students = _students(cfg, images, kps, teacher)
    with torch.no_grad():
        gaps = [float(distill_loss(s(x), t)) for s in students]
    assert gaps[1] < gaps[0]
    with pytest.raises(ValueError, match="student's output stride or a finer one"):
        train_detector(HeatmapDetector(fine), images, kps, steps=1, batch_size=4, device="cpu", progress=False,
                       teacher=HeatmapDetector(cfg), distill_weight=1.0)


def test_heatmap_targets_peak_at_keypoint():
    cfg = DetectorConfig(input_width=64, input_height=48, output_stride=4)
    kp = torch.tensor([[[17.5, 9.5], [0.0, 0.0], [63.0, 47.0], [30.0, 20.0]]])
    t = heatmap_targets(kp, cfg)
    assert t.shape == (1, 4, 12, 16)
    idx = t[0, 0].flatten().argmax()
    assert (int(idx // 16), int(idx % 16)) == (2, 4)  # cell centre (4.5*4-0.5, 2.5*4-0.5) = (17.5, 9.5)
    assert torch.isclose(t[0, 0, 2, 4], torch.tensor(1.0))


def test_symmetric_errors_pick_best_permutation():
    gt = np.array([[0, 0], [10, 0], [10, 5], [0, 5]], float)
    pred = gt[[2, 3, 0, 1]] + 0.5
    e = keypoint_errors(pred, gt, [[0, 1, 2, 3], [2, 3, 0, 1]])
    np.testing.assert_allclose(e, np.full(4, np.hypot(0.5, 0.5)))


def test_wilson_interval_solves_the_score_equation():
    """The Wilson bounds are the roots p of (k/n - p)^2 = z^2 p (1 - p) / n; k = 0 gives [0, z^2/(n + z^2)]."""
    z = 1.96
    for k, n in [(1, 10), (5, 10), (20, 64), (63, 64), (300, 1024)]:
        lo, hi = wilson_interval(k, n, z)
        assert 0 < lo < k / n < hi < 1
        for p in (lo, hi):
            assert abs((k / n - p) ** 2 - z * z * p * (1 - p) / n) < 1e-12
    lo, hi = wilson_interval(0, 64, z)
    assert lo == 0 and abs(hi - z * z / (64 + z * z)) < 1e-12
    assert format_rate(20 / 64, 64) == "0.312 (0.21–0.43)"
    assert format_rate(0.5, 0) == "0.500"


def test_paired_test_is_the_exact_binomial_on_discordant_pairs():
    """Concordant trials do not count; 5 vs 0 discordant gives 2 / 2^5; 3 vs 3 gives 1; the
    probability is the two-sided binomial tail computed term by term."""
    a = [1, 1, 1, 1, 1, 1, 0, 0]
    b = [1, 0, 0, 0, 0, 0, 0, 0]
    assert paired_test(a, b) == (5, 0, 2 / 32)
    assert paired_test(b, a) == (0, 5, 2 / 32)
    assert paired_test([1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]) == (3, 3, 1.0)
    only_a, only_b, p = paired_test([1] * 9 + [0] * 2 + [1] * 40, [0] * 9 + [1] * 2 + [1] * 40)
    assert (only_a, only_b) == (9, 2) and abs(p - 2 * (1 + 11 + 55) / 2**11) < 1e-15
    with pytest.raises(ValueError):
        paired_test([1], [1, 0])


def test_train_cli_refuses_the_robustness_term_from_scratch(tmp_path, capsys):
    from usn_robust_keypoints.cli import main

    out = tmp_path / "m.safetensors"
    assert main(["train", "--out", str(out), "--steps", "1", "--robust-kappa", "1"]) == 2
    assert "--init" in capsys.readouterr().err
    assert not out.exists()


def test_train_cli_refuses_a_teacher_with_other_heatmaps(tmp_path, capsys):
    """The shipped dense model (128x96 input) cannot teach a 64x48 student: clear error, no checkpoint."""
    from usn_robust_keypoints.cli import main
    from usn_robust_keypoints.weights import DEFAULT_DENSE, shipped_model_path

    out = tmp_path / "m.safetensors"
    teacher = str(shipped_model_path(DEFAULT_DENSE))
    assert main(["train", "--out", str(out), "--steps", "1", "--input-size", "64x48", "--distill-from", teacher]) == 2
    assert "do not match" in capsys.readouterr().err
    assert not out.exists()


def test_build_detector_fine_tunes_a_copy_and_keeps_the_architecture(tmp_path):
    """With ``init``: the checkpoint's weights, the requested stem/clamp settings on a new config (the
    checkpoint's config is not mutated), the architecture kept; without: DetectorConfig + overrides."""
    from usn_robust_keypoints.model import load_detector, save_checkpoint
    from usn_robust_keypoints.train import build_detector

    cfg = tiny_training_set()[0]
    torch.manual_seed(0)
    start = HeatmapDetector(cfg)
    path = save_checkpoint(start, tmp_path / "start.safetensors")
    tuned = build_detector([], path, zero_mean_stem=True, stem_padding="replicate", input_clamp=0.05, width=None)
    c = tuned.config
    assert (c.zero_mean_stem, c.stem_padding, c.input_clamp) == (True, "replicate", 0.05)
    assert tuned.net[0].padding_mode == "replicate" and not start.config.zero_mean_stem
    assert torch.allclose(tuned.net[0].weight.sum(dim=(1, 2, 3)), torch.zeros(cfg.stem_width), atol=1e-6)
    assert torch.equal(tuned.net[1].running_var, load_detector(path)[0].net[1].running_var)
    assert c.conv_channels() == cfg.conv_channels()
    with pytest.raises(ValueError, match="width"):
        build_detector([], path, width=32)
    # re-dilating keeps every weight and changes the blocks' dilation (and the output)
    dil = [2] * cfg.depth
    redil = build_detector([], path, dilations=dil)
    convs = [m for m in redil.net if isinstance(m, torch.nn.Conv2d)][2 : 2 + cfg.depth]
    assert redil.config.dilations == dil and all(m.dilation == (2, 2) and m.padding == (2, 2) for m in convs)
    assert all(torch.equal(a, b) for a, b in zip(redil.state_dict().values(), start.state_dict().values()))
    with pytest.raises(ValueError, match="dilations"):
        build_detector([], path, dilations=[1] * (cfg.depth + 1))
    fresh = build_detector(["a", "b"], None, width=10, output_stride=4, stem_padding=None)
    assert (fresh.config.num_keypoints, fresh.config.width, fresh.config.output_stride) == (2, 10, 4)
    assert fresh.config.keypoint_names == ["a", "b"] and fresh.config.stem_padding == "zeros"


@pytest.mark.parametrize("steps", [1, 2, 10, 11])
def test_training_runs_for_any_number_of_steps(steps):
    """Short fine-tunes (e.g. the pruning schedule's rounds) train every step: the one-cycle
    schedule used to divide by zero at exactly 10 steps."""
    torch.manual_seed(0)
    cfg, images, kps = tiny_training_set()
    losses = train_detector(HeatmapDetector(cfg), images, kps, steps=steps, batch_size=4, device="cpu", progress=False)
    assert len(losses) == steps and np.isfinite(losses).all()
