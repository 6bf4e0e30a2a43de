"""Pruning tools: USN scores, physical channel removal, Wasserstein term, baselines."""

import itertools

import pytest
import torch
from scipy.stats import wasserstein_distance

from usn_robust_keypoints.model import DetectorConfig, HeatmapDetector, load_detector, save_checkpoint
from usn_robust_keypoints.prune.baselines import BASELINES, accumulate_gradients, baseline_importance
from usn_robust_keypoints.prune.surgery import (UsnImportance, channel_importance, count_hidden_channels,
                                                 remove_channels, select_channels)
from usn_robust_keypoints.prune.usn import UsnConfig, hidden_convs, usn_scores
from usn_robust_keypoints.prune.wasserstein import layer_loss, w1_sorted, wasserstein_loss

CFG = DetectorConfig(input_width=32, input_height=24, stem_width=6, width=8, depth=1, head_width=6)


def _model(seed: int = 0) -> HeatmapDetector:
    torch.manual_seed(seed)
    m = HeatmapDetector(DetectorConfig(**CFG.to_dict()))
    for bn in m.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):  # non-trivial BN statistics
            bn.weight.data.uniform_(0.2, 1.5)
            bn.bias.data.uniform_(-0.3, 0.3)
    return m.eval()


def _images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 1, CFG.input_height, CFG.input_width, generator=torch.Generator().manual_seed(1))


def test_usn_scores_deterministic_for_a_seed():
    m = _model()
    a = usn_scores(m, _images(), UsnConfig(num_theta=6, seed=3))
    b = usn_scores(m, _images(), UsnConfig(num_theta=6, seed=3))
    c = usn_scores(m, _images(), UsnConfig(num_theta=6, seed=4))
    assert [s.name for s in a] == [n for n, _, _ in hidden_convs(m)]
    for x, y in zip(a, b):
        assert torch.equal(x.score, y.score) and torch.equal(x.smoothness, y.smoothness)
    assert any(not torch.equal(x.smoothness, y.smoothness) for x, y in zip(a, c))
    for s in a:
        assert torch.isfinite(s.score).all() and (s.score >= 0).all()
        assert (s.smoothness > 0).any()  # the perturbation really moves the pre-activations


def test_usn_terms_match_direct_computation():
    m = _model()
    x = _images(3)
    cfg = UsnConfig(num_theta=5, seed=0, signal="total_var")
    s = usn_scores(m, x, cfg)[0]
    from usn_robust_keypoints.perturbation import PerturbationBox, apply_perturbation
    gen = torch.Generator().manual_seed(0)
    zs0, smooth = [], []
    for i in range(3):
        th = PerturbationBox(cfg.alpha, cfg.beta).sample(5, generator=gen)
        z0 = m.net[1](m.net[0](x[i:i + 1]))[0]
        zt = m.net[1](m.net[0](apply_perturbation(x[i:i + 1].expand(5, -1, -1, -1), th[:, 0].float(), th[:, 1].float())))
        zs0.append(z0)
        smooth.append(zt.var(0, unbiased=False).mean((1, 2)))
    z0 = torch.stack(zs0)
    per_channel = z0.transpose(0, 1).reshape(z0.shape[1], -1)
    assert torch.allclose(s.signal, per_channel.var(1, unbiased=False), rtol=1e-4)
    assert torch.allclose(s.smoothness, torch.stack(smooth).mean(0), rtol=1e-4, atol=1e-9)
    relu_var = usn_scores(m, x, UsnConfig(num_theta=5, seed=0, signal="relu_var"))[0].signal
    assert torch.allclose(relu_var, per_channel.relu().var(1, unbiased=False), rtol=1e-4, atol=1e-9)


def test_usn_gate_signal_is_bn_scale_times_stability():
    m = _model()
    x = _images(3)
    for s, (_, _, bn) in zip(usn_scores(m, x, UsnConfig(num_theta=5, signal="gate", gamma=0.0)), hidden_convs(m)):
        g = bn.weight.detach().abs()
        assert torch.allclose(s.signal, g ** 2)
        assert torch.equal(torch.argsort(s.score), torch.argsort(g))  # gamma = 0: BN-scale's ranking
    # gamma = 0.5: g^2 / sqrt(B + S), up to the layer-median normalisations
    for s in usn_scores(m, x, UsnConfig(num_theta=5, signal="gate", gamma=0.5)):
        raw = s.signal / (s.bias + s.smoothness).sqrt()
        assert torch.allclose(s.score / s.score.median(), raw / raw.median(), rtol=1e-3)


def test_usn_bound_smoothness_is_sound_and_exact_on_the_stem():
    """``smoothness="bounds"``: never below the sampled variance (every sample lies in the bounds),
    and on the first layer, which is affine in θ where no pixel clips, the exact half-width²."""
    m = _model()
    x = 0.3 + 0.4 * _images(3)  # in [0.3, 0.7]: c·x + b never clips at α = β = 0.05
    cfg = UsnConfig(num_theta=8, seed=0)
    sampled = usn_scores(m, x, cfg)
    bounded = usn_scores(m, x, UsnConfig(num_theta=8, seed=0, smoothness="bounds"))
    for s, b in zip(sampled, bounded):
        assert (b.smoothness >= s.smoothness * (1 - 1e-4) - 1e-9).all()
        assert torch.equal(s.signal, b.signal) and torch.equal(s.bias, b.bias)
    z = lambda c, bb: m.net[1](m.net[0](c * x + bb))  # noqa: E731  (stem conv + BN)
    with torch.no_grad():
        half = ((z(1 + cfg.alpha, 0.0) - z(1 - cfg.alpha, 0.0)).abs() + (z(1.0, cfg.beta) - z(1.0, -cfg.beta)).abs()) / 2
    expected = (half.double() ** 2).mean((0, 2, 3)).float()
    assert torch.allclose(bounded[0].smoothness, expected, rtol=1e-4, atol=1e-9)
    with pytest.raises(ValueError):
        UsnConfig(smoothness="exact")


def test_removing_channels_is_physical_and_reloads(tmp_path):
    m = _model()
    x = _images(2)
    n_params = sum(p.numel() for p in m.parameters())
    widths = [c.out_channels for _, c, _ in hidden_convs(m)]
    removal = [[0, 2]] + [[] for _ in widths[1:-1]] + [[1]]
    remove_channels(m, removal)
    new_widths = [c.out_channels for _, c, _ in hidden_convs(m)]
    assert new_widths == [widths[0] - 2] + widths[1:-1] + [widths[-1] - 1]
    assert m.config.channels == new_widths
    # first conv: 2 filters of 1x3x3; second conv loses 2 input slices; BN loses 2x(γ, β);
    # last hidden conv loses 1 filter; its BN 2 params; the head loses 1 input weight per keypoint
    k = CFG.num_keypoints
    removed = 2 * 9 + widths[1] * 2 * 9 + 2 * 2 + widths[-2] * 9 + 2 + k
    assert sum(p.numel() for p in m.parameters()) == n_params - removed
    assert not any("mask" in n for n, _ in m.named_buffers())
    y = m(x)
    assert y.shape == (2, k, CFG.input_height // 2, CFG.input_width // 2)
    path = save_checkpoint(m, tmp_path / "pruned.safetensors")
    m2, _ = load_detector(path)
    assert m2.config.channels == new_widths
    assert torch.allclose(m2(x), y, atol=1e-6)


def test_usn_importance_prunes_lowest_scores():
    m = _model()
    scores = usn_scores(m, _images(), UsnConfig(num_theta=4))
    imp = UsnImportance.from_layer_scores(m, scores)
    per_layer = channel_importance(m, imp)
    for s, v in zip(scores, per_layer):
        assert torch.equal(s.score, v)
    total = count_hidden_channels(m)
    removal = select_channels(per_layer, 10, min_keep=2, generator=torch.Generator().manual_seed(0))
    remove_channels(m, removal)  # the schedule's path: select globally, then remove through the graph
    assert sum(map(len, removal)) == 10 and count_hidden_channels(m) == total - 10
    # the removed channels of each layer are that layer's lowest normalised scores
    for s, r in zip(scores, removal):
        if r and len(r) < len(s.score):
            kept = [i for i in range(len(s.score)) if i not in r]
            assert s.score[r].max() <= s.score[kept].max()
    assert all(w >= 2 for w in m.config.channels)


def test_select_channels_global_with_floor():
    imps = [torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 1.0, 1.0, 1.0])]
    sel = select_channels(imps, 5, min_keep=1, generator=torch.Generator().manual_seed(0))
    assert sum(map(len, sel)) == 5 and all(len(s) <= 3 for s in sel)
    assert 3 not in sel[0]  # the largest normalised score survives


@pytest.mark.parametrize("n", [1, 2, 5, 7])
def test_w1_sorted_equals_brute_force(n):
    g = torch.Generator().manual_seed(n)
    a, b = torch.rand(n, generator=g), torch.rand(n, generator=g)
    w = float(w1_sorted(a, b))
    assert w == pytest.approx(wasserstein_distance(a.numpy(), b.numpy()), abs=1e-6)
    if n <= 7:
        brute = min(sum(abs(float(a[i]) - float(b[j])) for i, j in enumerate(p)) / n
                    for p in itertools.permutations(range(n)))
        assert w == pytest.approx(brute, abs=1e-6)


def test_wasserstein_layer_losses():
    g = torch.tensor([0.5, 0.1, 0.9, 0.3], requires_grad=True)
    marked = torch.tensor([True, False, False, False])
    t = torch.tensor([0.0, 0.1, 0.9, 0.3])
    assert float(layer_loss(g.detach(), marked, "sorted")) == pytest.approx(wasserstein_distance(g.detach().numpy(), t.numpy()))
    assigned = layer_loss(g, marked, "assigned")
    assert assigned.item() == pytest.approx(0.5 / 4)
    assert assigned.item() >= float(layer_loss(g.detach(), marked, "sorted")) - 1e-9
    assigned.backward()
    assert g.grad[0] > 0 and torch.all(g.grad[1:] == 0)  # only the marked gate is pushed to 0
    g0 = torch.tensor([0.0, 0.1, 0.9, 0.3])
    assert float(layer_loss(g0, marked, "assigned")) == 0.0
    m = _model()
    bns = [bn for _, _, bn in hidden_convs(m)]
    marks = [torch.tensor([0]) for _ in bns]
    loss = wasserstein_loss(bns, marks, "sorted")
    loss.backward()
    assert loss > 0 and bns[0].weight.grad is not None


@pytest.mark.parametrize("name", BASELINES)
def test_each_baseline_runs(name):
    m = _model()
    if name == "taylor":
        x = _images(2)
        accumulate_gradients(m, lambda mod, b: mod(b).pow(2).mean(), [x])
    imp = baseline_importance(name, seed=0)
    per_layer = channel_importance(m, imp)
    assert [len(v) for v in per_layer] == [c.out_channels for _, c, _ in hidden_convs(m)]
    assert all(torch.isfinite(v).all() for v in per_layer)
    before = count_hidden_channels(m)
    remove_channels(m, select_channels(per_layer, 6))
    assert count_hidden_channels(m) == before - 6
    assert m(_images(1)).shape[1] == CFG.num_keypoints


def test_fine_tune_with_wasserstein_drives_marked_gates_to_zero():
    import numpy as np

    from usn_robust_keypoints.prune.schedule import fine_tune

    m = _model()
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (16, CFG.input_height, CFG.input_width)).astype(np.uint8)
    kps = rng.uniform(2, 20, (16, CFG.num_keypoints, 2)).astype(np.float32)
    bns = [bn for _, _, bn in hidden_convs(m)]
    marks = [torch.tensor([0, 1]) for _ in bns]
    before = [bn.weight.detach().abs().clone() for bn in bns]
    fine_tune(m, imgs, kps, steps=40, batch_size=2, lr=1e-3, seed=0, progress=False,
              gate_loss=lambda mod: wasserstein_loss([b for _, _, b in hidden_convs(mod)], marks, "assigned"))
    for bn, b0 in zip(bns, before):
        g = bn.weight.detach().abs()
        assert g[:2].max() < 0.1 * b0[:2].min()  # marked gates collapsed
        assert g[2:].min() > 0.5 * b0[2:].min()  # the others did not
