"""USN scores (Unbiased and Smooth Neuron) per conv output channel.

This is **this project's own definition** (the paper that names the metric publishes no formula
we could use): docs/method.md, section "USN score". For every prunable unit j (a hidden conv output channel) with
pre-activation ``z_j`` (the BatchNorm output, before the ReLU), calibration images ``x`` and
perturbation parameters ``theta`` sampled from a :class:`PerturbationBox` (``theta0 = (1, 0)`` is
the nominal image):

- signal      ``T_j``: how much the unit carries (variant chosen by ``UsnConfig.signal``)
    * ``"mean_var"``:  ``Var_x[ mean_pos z_j(x(theta0)) ]`` (variance of the channel means)
    * ``"total_var"``: ``Var_{x,pos}[ z_j(x(theta0)) ]`` (variance over images and positions)
    * ``"energy"``:    ``E_{x,pos}[ relu(z_j(x(theta0)))^2 ]`` (what the next layer receives)
    * ``"relu_var"``:  ``Var_{x,pos}[ relu(z_j(x(theta0))) ]`` (the part of it that varies: a channel
      that is a near-constant positive offset, a bias in disguise, carries no signal)
    * ``"contribution"``: ``energy * ||W_next[:, j]||^2`` (energy seen through the next conv)
    * ``"gate"``:      ``g_j^2`` with ``g_j = |BN gamma_j|``, the gate the Wasserstein loss moves. The
      terms B and S scale with ``g_j^2`` too, so with ``gamma = 0.5`` USN = ``g_j^2 / sqrt(B_j + S_j)``
      (layer-median normalised) is BN-scale ``g_j`` divided by the perturbation spread of the
      normalised unit; ``gamma = 0`` ranks exactly like BN-scale
- bias        ``B_j = E_{x,pos}[ (E_theta z_j(x(theta)) - z_j(x(theta0)))^2 ]``
- smoothness  ``S_j = E_{x,pos}[ Var_theta z_j(x(theta)) ]`` (``UsnConfig.smoothness = "sampled"``), or
  with ``"bounds"`` its sound upper limit as the certifier sees it:
  ``E_{x,pos}[ ((hi_j - lo_j) / 2)^2 ]`` with ``[lo_j, hi_j]`` the native engine's forward-mode
  bounds of ``z_j`` over the whole box (one pass per image, no splitting). A variable confined to
  ``[lo, hi]`` has variance at most ``((hi - lo) / 2)^2``, so this is >= the sampled term; it also
  counts the relaxation looseness that upstream channels cause, which is what the certifier pays for.
- flip rate   ``F_j``: share of (x, pos, theta) where ``sign z_j(x(theta)) != sign z_j(x(theta0))``

and, after dividing every term by its layer median (so layers of different scale compare),

    ratio_j = T_j / (B_j + S_j + eps)                      (the pure stability ratio)
    USN_j   = T_j ** (1 - gamma) * ratio_j ** gamma * ((m_F + eps_F) / (F_j + m_F + eps_F)) ** w_relu

``gamma = 1`` is the pure ratio (it collapsed accuracy when pruned by alone: docs/method.md, "USN score");
``gamma = 0`` ignores stability; ``w_relu`` weights ReLU stability (``m_F`` = layer median flip
rate). ``include_bias=False`` drops ``B`` (ablation). Finally USN is divided by its layer median
again so that one global ranking across layers decides how many units every layer loses.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..model.detector import HeatmapDetector
from ..perturbation import PerturbationBox, apply_perturbation

SIGNALS = ("mean_var", "total_var", "energy", "relu_var", "contribution", "gate")
SMOOTHNESS = ("sampled", "bounds")


@dataclass
class UsnConfig:
    """How USN scores are computed (see the module docstring for the formulas)."""

    alpha: float = 0.05
    beta: float = 0.05
    num_theta: int = 16
    signal: str = "energy"
    smoothness: str = "sampled"
    gamma: float = 0.5
    include_bias: bool = True
    relu_weight: float = 0.0
    eps: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        if self.signal not in SIGNALS:
            raise ValueError(f"signal must be one of {SIGNALS}, got {self.signal!r}")
        if self.smoothness not in SMOOTHNESS:
            raise ValueError(f"smoothness must be one of {SMOOTHNESS}, got {self.smoothness!r}")
        if self.num_theta < 4:
            raise ValueError("num_theta must be >= 4 (the box corners are always sampled)")


@dataclass
class LayerScores:
    """Raw terms and the final score of one layer's channels (all 1-D, length = channels)."""

    name: str
    signal: torch.Tensor
    bias: torch.Tensor
    smoothness: torch.Tensor
    flip: torch.Tensor
    ratio: torch.Tensor
    score: torch.Tensor

    def to_dict(self) -> dict:
        d = {"name": self.name}
        for k in ("signal", "bias", "smoothness", "flip", "ratio", "score"):
            d[k] = [float(v) for v in getattr(self, k)]
        return d


def hidden_convs(detector: HeatmapDetector) -> list[tuple[str, nn.Conv2d, nn.BatchNorm2d]]:
    """(name, conv, bn) of every prunable conv layer, in order (the heatmap head excluded); an
    imported graph (:class:`..model.graph.GraphDetector`) lists its own."""
    own = getattr(detector, "hidden_convs", None)
    if callable(own):
        return own()
    mods = list(detector.net.named_children())
    out = []
    for i, (name, m) in enumerate(mods[:-1]):
        if isinstance(m, nn.Conv2d) and isinstance(mods[i + 1][1], nn.BatchNorm2d):
            out.append((f"net.{name}", m, mods[i + 1][1]))
    return out


def _next_conv(detector: HeatmapDetector, conv: nn.Conv2d) -> nn.Conv2d:
    convs = [m for m in detector.net if isinstance(m, nn.Conv2d)]
    return convs[convs.index(conv) + 1]


def _median_norm(v: torch.Tensor, eps: float) -> torch.Tensor:
    return v / (v.median() + eps)


class _Stats:
    """Streaming per-channel sums for one layer (float64)."""

    def __init__(self, c: int) -> None:
        z = lambda: torch.zeros(c, dtype=torch.float64)  # noqa: E731
        self.n_pos = 0
        self.sum0, self.sq0, self.energy, self.relu_sum = z(), z(), z(), z()
        self.bias, self.smooth, self.flip, self.bound_smooth = z(), z(), z(), z()
        self.means: list[torch.Tensor] = []

    def add(self, z: torch.Tensor) -> None:
        """``z`` (1 + M, C, H, W): row 0 is the nominal image, the rest the theta samples."""
        z = z.double()
        z0, zt = z[0], z[1:]
        npos = z0.shape[1] * z0.shape[2]
        self.n_pos += npos
        self.sum0 += z0.sum((1, 2))
        self.sq0 += (z0 ** 2).sum((1, 2))
        self.energy += (torch.relu(z0) ** 2).sum((1, 2))
        self.relu_sum += torch.relu(z0).sum((1, 2))
        mean_t = zt.mean(0)
        self.bias += ((mean_t - z0) ** 2).sum((1, 2))
        self.smooth += zt.var(0, unbiased=False).sum((1, 2))
        self.flip += ((zt > 0) != (z0 > 0)).double().mean(0).sum((1, 2))
        self.means.append(z0.mean((1, 2)))

    def add_bounds(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        """Accumulate the bound smoothness term of one image: ``lo``/``hi`` (1, C, H, W) are the
        certified bounds of the pre-activation over the whole box."""
        self.bound_smooth += (((hi[0].double() - lo[0].double()) / 2) ** 2).sum((1, 2))


@torch.no_grad()
def usn_scores(detector: HeatmapDetector, images: torch.Tensor, config: UsnConfig | None = None,
               progress: bool = False) -> list[LayerScores]:
    """USN terms and scores for every hidden conv layer of ``detector``.

    ``images`` (N, 1, H, W) in [0, 1] are calibration inputs (pre-processed network inputs);
    ``config.num_theta`` parameters are drawn from ``PerturbationBox(alpha, beta).sample`` per image
    with a generator seeded by ``config.seed`` (deterministic for a seed).
    """
    cfg = config or UsnConfig()
    box = PerturbationBox(cfg.alpha, cfg.beta)
    gen = torch.Generator().manual_seed(cfg.seed)
    layers = hidden_convs(detector)
    stats = [_Stats(conv.out_channels) for _, conv, _ in layers]
    captured: dict[int, torch.Tensor] = {}
    hooks = [bn.register_forward_hook(lambda _m, _i, out, k=k: captured.__setitem__(k, out))
             for k, (_, _, bn) in enumerate(layers)]
    was_training = detector.training
    detector.eval()
    if cfg.smoothness == "bounds":
        from ..certify.bounds import bound_layers, input_clamp, propagate

        blayers = bound_layers(detector)
        whole_box = box.tensor().view(1, 4)
    try:
        it = range(images.shape[0])
        if progress:
            from tqdm import tqdm
            it = tqdm(it, desc="USN scores", unit="img", leave=False)
        for i in it:
            x0 = images[i : i + 1]
            theta = box.sample(cfg.num_theta, generator=gen)
            c = torch.cat([torch.ones(1, dtype=theta.dtype), theta[:, 0]])
            b = torch.cat([torch.zeros(1, dtype=theta.dtype), theta[:, 1]])
            xs = apply_perturbation(x0.expand(len(c), -1, -1, -1), c.float(), b.float())
            detector(xs)
            for k, st in enumerate(stats):
                st.add(captured[k])
            if cfg.smoothness == "bounds":
                trace: list = []
                propagate(blayers, x0, whole_box, trace)
                relus = [t for m, t in zip(input_clamp(blayers)[1], trace) if isinstance(m, nn.ReLU)]
                if len(relus) != len(stats):
                    raise ValueError(f"{len(relus)} ReLUs in the bound pass but {len(stats)} hidden convs")
                for st, (lo, hi) in zip(stats, relus):
                    st.add_bounds(lo, hi)
    finally:
        for h in hooks:
            h.remove()
        detector.train(was_training)

    out = []
    for (name, conv, bn), st in zip(layers, stats):
        n = st.n_pos
        mean0 = st.sum0 / n
        if cfg.signal == "gate":
            signal = bn.weight.detach().double() ** 2
        elif cfg.signal == "mean_var":
            signal = torch.stack(st.means).var(0, unbiased=False)
        elif cfg.signal == "total_var":
            signal = st.sq0 / n - mean0 ** 2
        elif cfg.signal == "relu_var":
            signal = st.energy / n - (st.relu_sum / n) ** 2
        else:
            signal = st.energy / n
            if cfg.signal == "contribution":
                w = _next_conv(detector, conv).weight.detach().double()
                signal = signal * (w ** 2).sum((0, 2, 3))
        signal = signal.clamp_min(0)
        bias, flip = st.bias / n, st.flip / n
        smooth = (st.bound_smooth if cfg.smoothness == "bounds" else st.smooth) / n
        out.append(_combine(name, signal, bias, smooth, flip, cfg))
    return out


def _combine(name: str, signal: torch.Tensor, bias: torch.Tensor, smooth: torch.Tensor,
             flip: torch.Tensor, cfg: UsnConfig) -> LayerScores:
    eps = cfg.eps
    t = _median_norm(signal, eps) + eps
    unstable = smooth + (bias if cfg.include_bias else 0.0)
    ratio = t / (_median_norm(unstable, eps) + eps)
    score = t ** (1.0 - cfg.gamma) * ratio ** cfg.gamma
    if cfg.relu_weight:
        m = flip.median()
        score = score * ((m + 1e-3) / (flip + m + 1e-3)) ** cfg.relu_weight
    score = _median_norm(score, eps)
    f = lambda v: v.float()  # noqa: E731
    return LayerScores(name, f(signal), f(bias), f(smooth), f(flip), f(ratio), f(score))


def save_scores(scores: list[LayerScores], path: str | Path, config: UsnConfig | None = None) -> Path:
    """Write the scores (and the config that produced them) as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"definition": "usn_robust_keypoints project definition (docs/method.md, section 'USN score')",
           "config": asdict(config) if config else None, "layers": [s.to_dict() for s in scores]}
    path.write_text(json.dumps(doc, indent=1))
    return path


def plot_scores(scores: list[LayerScores], path: str | Path) -> Path:
    """PNG with the per-layer distributions of log10 USN score, signal and smoothness."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    terms = [("score", "USN score (layer-median normalised)"), ("signal", "signal T"),
             ("smoothness", "smoothness S (Var over theta)")]
    fig, axes = plt.subplots(1, len(terms), figsize=(5 * len(terms), 4))
    for ax, (key, title) in zip(axes, terms):
        data = [torch.log10(getattr(s, key).clamp_min(1e-12)).numpy() for s in scores]
        ax.boxplot(data)
        ax.set_xticks(range(1, len(scores) + 1), [s.name.removeprefix("net.") for s in scores])
        ax.set_title(title)
        ax.set_xlabel("conv layer (net index)")
        ax.set_ylabel("log10")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
