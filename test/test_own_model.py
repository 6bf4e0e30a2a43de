"""A user's own network (torch.fx import): exact traced forward, sound bounds of every supported op
by sampling, certificates through the same engine, refusals with clear messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from usn_robust_keypoints.certify import Status, certify
from usn_robust_keypoints.certify.backward import backward_margins
from usn_robust_keypoints.certify.bounds import bound_layers, concrete_max, concrete_min, propagate
from usn_robust_keypoints.model import KeypointModel, load_model
from usn_robust_keypoints.model.graph import ModelSpec, import_module
from usn_robust_keypoints.model.preprocess import decode_heatmaps
from usn_robust_keypoints.perturbation import apply_perturbation

from own_nets import ResNetLike, UNetLike, zoo

torch.set_num_threads(1)
NETS = zoo(0)


def _x0(spec: ModelSpec, seed: int) -> torch.Tensor:
    x = torch.rand(1, spec.in_channels, spec.input_height, spec.input_width, generator=torch.Generator().manual_seed(seed))
    x[..., :3, :] = 0.0  # pixels at the clip limits
    x[..., -3:, :] = 1.0
    return x


def _thetas(box: list[float], n: int, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` (c, b) in the box: the 4 corners, a quarter on the c edges, a quarter on the b edges."""
    gen = torch.Generator().manual_seed(seed)
    cl, cu, bl, bu = box
    c = cl + (cu - cl) * torch.rand(n, generator=gen)
    b = bl + (bu - bl) * torch.rand(n, generator=gen)
    c[: n // 4] = torch.where(torch.rand(n // 4, generator=gen) < 0.5, cl, cu)
    b[n // 4: n // 2] = torch.where(torch.rand(n // 2 - n // 4, generator=gen) < 0.5, bl, bu)
    c[:4], b[:4] = torch.tensor([cl, cl, cu, cu]), torch.tensor([bl, bu, bl, bu])
    return c, b


def _outputs(net: nn.Module, x0: torch.Tensor, c: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([net(apply_perturbation(x0.expand(len(ci), -1, -1, -1), ci, bi))
                          for ci, bi in zip(c.split(2000), b.split(2000))])


@pytest.mark.parametrize("name", sorted(NETS))
def test_traced_forward_exact(name: str) -> None:
    """The imported graph computes the module (after the spec's normalisation), and its bound
    layers over a zero-width box give the same heatmaps (the lowering is exact)."""
    module, spec = NETS[name]
    det = import_module(module, spec)
    x = torch.rand(3, spec.in_channels, spec.input_height, spec.input_width)
    xn = x if spec.mean is None else (x - torch.tensor(spec.mean).view(1, -1, 1, 1)) / torch.tensor(spec.std).view(1, -1, 1, 1)
    with torch.no_grad():
        ref, got = module(xn), det(x)
        f = propagate(bound_layers(det), x[:1], torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
    assert torch.allclose(ref, got, atol=1e-5), float((ref - got).abs().max())
    assert torch.allclose(f.lower[:, 0], got[:1], atol=1e-5) and torch.allclose(f.upper[:, 0], got[:1], atol=1e-5)


@pytest.mark.parametrize("name", sorted(NETS))
def test_bounds_sound_by_sampling(name: str) -> None:
    """10^4 sampled theta per box (corners, edges): every heatmap value lies within the forward
    bounds and every sampled H_q - H_s above its backward lower bound, for a small box, a box where
    the clip bends and a large one."""
    module, spec = NETS[name]
    det = import_module(module, spec)
    layers = bound_layers(det)
    x0 = _x0(spec, 1)
    gen = torch.Generator().manual_seed(2)
    for box in ([0.98, 1.02, -0.02, 0.02], [0.9, 1.1, -0.1, 0.1], [0.5, 1.5, -0.5, 0.5]):
        trace: list = []
        with torch.no_grad():
            f = propagate(layers, x0, torch.tensor([box]), trace)
        lo, hi = concrete_min(f.lower)[0], concrete_max(f.upper)[0]
        y = _outputs(det, x0, *_thetas(box, 10_000))
        tol = 1e-5 * (1 + float(y.abs().max()))
        assert (y >= lo - tol).all() and (y <= hi + tol).all(), (box, float((lo - y).max()), float((y - hi).max()))
        k, h, w = lo.shape
        q = torch.randint(0, h * w, (300,), generator=gen)
        s = (q + 1 + torch.randint(0, h * w - 1, (300,), generator=gen)) % (h * w)
        rows = torch.stack([torch.zeros_like(q), torch.randint(0, k, (300,), generator=gen), q, s], dim=1)
        with torch.no_grad():
            lb = backward_margins(layers, x0, torch.tensor([box]), trace, rows)
        yf = y.flatten(2)
        true = (yf[:, rows[:, 1], rows[:, 2]] - yf[:, rows[:, 1], rows[:, 3]]).amin(dim=0)
        assert (lb <= true + tol).all(), (box, float((lb - true).max()))


def _image(spec: ModelSpec, seed: int) -> np.ndarray:
    """A smooth random frame (blobs: distinct argmax cells) of the spec's size and colour."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (5, 5, spec.in_channels)).astype(np.uint8)
    img = cv2.resize(small, (spec.input_width, spec.input_height), interpolation=cv2.INTER_CUBIC)
    return img.reshape(spec.input_height, spec.input_width, -1)[..., 0] if spec.in_channels == 1 else img


def test_certificates_of_imported_nets_sound() -> None:
    """Certify every net of the zoo through the native engine; every certified keypoint keeps its
    argmax within the radius for 10^4 sampled theta (corners and edges), and some are certified."""
    certified = 0
    for name, (module, spec) in sorted(NETS.items()):
        model = KeypointModel(import_module(module, spec), device="cpu")
        for seed in (0, 1):
            image = _image(spec, seed)
            eps, radius = 0.004, 6.0
            fc = certify(model, image, eps, eps, radius=radius, margins=False)
            x0, geo = model.preprocess(image)
            c, b = _thetas([1 - eps, 1 + eps, -eps, eps], 10_000, seed)
            rows, cols, _ = decode_heatmaps(_outputs(model.detector, x0, c, b))
            s = model.config.output_stride
            xs = geo.input_to_frame(np.stack([(cols.numpy() + 0.5) * s - 0.5, (rows.numpy() + 0.5) * s - 0.5], -1))
            for kc in fc.keypoints:
                if kc.status is Status.CERTIFIED:
                    certified += 1
                    d = np.hypot(xs[:, kc.index, 0] - kc.x, xs[:, kc.index, 1] - kc.y)
                    assert d.max() <= radius + 1e-6, (name, seed, kc.index, d.max())
    assert certified > 0


def test_imported_shipped_default_same_statuses() -> None:
    """The shipped default passed as an nn.Module lowers to the same layers and certifies with the
    same statuses and radii as the native model."""
    native = load_model(device="cpu")
    c = native.config
    imported = load_model(native.detector, device="cpu", spec=ModelSpec(c.input_width, c.input_height,
                                                                          keypoint_names=c.keypoint_names))
    assert [type(l) for l in bound_layers(native.detector)] == [type(l) for l in bound_layers(imported.detector)]
    image = (np.indices((96, 128)).sum(0) // 16 % 2 * 200 + 20).astype(np.uint8)
    a = certify(native, image, 0.01, 0.01, 4.0, margins=False)
    b = certify(imported, image, 0.01, 0.01, 4.0, margins=False)
    assert [k.status for k in a.keypoints] == [k.status for k in b.keypoints]
    assert [k.certified_radius for k in a.keypoints] == pytest.approx([k.certified_radius for k in b.keypoints])


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        if x.mean() > 0.5:
            return self.c(x)
        return -self.c(x)


class _Mul(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        return self.a(x) * self.b(x)


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3, padding=1)
        self.h = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        f = self.c(x)
        q = f.flatten(2)
        a = torch.softmax(q.transpose(1, 2) @ q, dim=-1)
        return self.h((q @ a).view_as(f))


class _Fn(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.c, self.fn, self.h = nn.Conv2d(1, 2, 3, padding=1), fn, nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return self.h(self.fn(self.c(x)))


def _seq(*mods) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), *mods, nn.Conv2d(2, 2, 1))


REFUSED = {
    "softmax inside": (_Fn(lambda t: torch.softmax(t, dim=1)), "move the softmax out of the network"),
    "sigmoid": (_seq(nn.Sigmoid()), "sigmoid"),
    "tanh": (_seq(nn.Tanh()), "ReLU or LeakyReLU"),
    "gelu": (_Fn(F.gelu), "ReLU or LeakyReLU"),
    "attention": (_Attention(), "flatten"),
    "multihead attention module": (_seq(nn.MultiheadAttention(2, 1)), "MultiheadAttention"),
    "product of activations": (_Mul(), "not linear"),
    "data-dependent control flow": (_Branchy(), "control flow"),
    "even kernel same padding": (nn.Sequential(nn.Conv2d(1, 2, 4, padding="same"), nn.Conv2d(2, 2, 1)), "padding='same'"),
    "explicit pad": (_Fn(lambda t: F.pad(t, (1, 1, 1, 1))[..., 1:-1, 1:-1]), "padding"),
    "linear head": (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 32 * 32, 2)), "Flatten"),
    "layer norm": (_seq(nn.GroupNorm(1, 2)), "BatchNorm2d"),
    "leaky slope > 1": (_seq(nn.LeakyReLU(2.0)), "slope"),
    "tuple output": (_Fn(lambda t: t), None),
}


class _TwoOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(1, 2, 1)

    def forward(self, x):
        y = self.c(x)
        return y, y


REFUSED["tuple output"] = (_TwoOut(), "return the heatmap tensor")


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_unsupported_ops_refused_clearly(name: str) -> None:
    """Every unsupported construct is a ValueError naming the node and its op, why, and what to
    change, raised by the import (before any bound computation)."""
    module, needle = REFUSED[name]
    with pytest.raises(ValueError) as e:
        import_module(module.eval(), ModelSpec(32, 32))
    msg = str(e.value)
    assert "cannot certify this network" in msg, msg
    assert needle.lower() in msg.lower(), msg


def test_example_architectures_have_graph_layers() -> None:
    """The ResNet-like and UNet-like nets lower to residual / concat graph layers (not flattened)."""
    for module in (ResNetLike(), UNetLike()):
        layers = bound_layers(import_module(module.eval(), ModelSpec(32, 32)))
        assert any(type(l).__name__ == "GraphLayer" for l in layers)


def test_color_input_and_perturbation_as_predict() -> None:
    """A colour model reads the frame in the spec's channel order; ``predict(theta=...)`` applies
    one (c, b) to every channel before the normalisation, which is what the bounds assume: the
    bound layers at a zero-width box at theta reproduce the perturbed prediction."""
    from usn_robust_keypoints.model.preprocess import preprocess

    module, spec = NETS["color_normalised"]
    model = load_model(module, device="cpu", spec=spec)
    frame = np.random.default_rng(0).integers(0, 256, (40, 40, 3)).astype(np.uint8)
    x, _ = preprocess(frame, 40, 40, "rgb")
    assert torch.equal(x[0, 0], torch.from_numpy(frame[..., 2]).float() / 255)  # BGR frame -> R first
    gray_in = preprocess(frame[..., 0], 32, 32, "rgb")[0]
    assert gray_in.shape == (1, 3, 32, 32) and torch.equal(gray_in[:, 0], gray_in[:, 2])
    image = _image(spec, 3)
    pred = model.predict(image, theta=(1.1, -0.05))
    x0, _ = model.preprocess(image)
    with torch.no_grad():
        f = propagate(bound_layers(model.detector), x0, torch.tensor([[1.1, 1.1, -0.05, -0.05]]))
    assert np.allclose(f.lower[0, 0].numpy(), pred.heatmaps, atol=1e-5)
    with pytest.raises(ValueError, match="needs spec"):
        load_model(module)
