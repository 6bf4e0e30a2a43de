"""Backward (CROWN-style) lower bounds of spec rows ``H[k, q] - H[k, s]`` over theta sub-boxes.

The forward pass (:func:`.bounds.propagate` with a ``trace``) gives every ReLU's concrete input
bounds ``[lo, hi]`` per sub-box. For a batch of rows ``(box n, keypoint k, cell q, cell s)`` we
start from the row vector ``e_{k,q} - e_{k,s}`` on the output and go backward to the input:

- Conv2d (BN folded): ``lambda <- conv_transpose(lambda)``, constant ``+= <lambda, bias>``;
- ReLU with input in ``[lo, hi]``: the standard linear relaxation (stable neurons exact; unstable:
  upper = chord ``hi (z - lo) / (hi - lo)``, lower = ``z`` if ``hi > -lo`` else ``0``), upper
  relaxation where the coefficient is negative, lower where it is positive;
- nearest Upsample by an integer factor ``s``: its adjoint, the sum over ``s x s`` blocks;
- PixelShuffle (from :func:`.bounds.fuse_upsample`): its inverse permutation, pixel_unshuffle;
- the input clip ``clip(z, 0, 1)`` of ``z = c * x0 + b`` (exactly affine in theta; with the
  network's input clamp, ``clip(z, tau, 1 - tau)``): a linear relaxation of the clip over each
  pixel's exact range of ``z`` on the sub-box.

The result is an affine function of the normalised sub-box parameters ``e in [-1, 1]^2`` that is
``<= H_q - H_s`` on the whole sub-box (:func:`backward_forms`; :func:`backward_margins` returns its
minimum, at a corner). Every row of the batch
is independent (one tensor batch, no per-row Python loop).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .bounds import _PAD_FLOOR, FoldedConv, GraphLayer, MaxPool, input_clamp, input_terms, pool_windows

ROW_CHUNK = 256


def _relu_relaxation(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lower slope, upper slope, upper intercept) of ``relu`` on ``[lo, hi]`` (elementwise): the
    upper chord ``su * (z - min(lo, 0))`` (slope 1 where ``lo >= 0``, 0 where ``hi <= 0``) and the
    lower slope 1 where ``hi > -lo`` else 0 (exact on stable neurons, sound for any slope in [0, 1])."""
    hi_pos, lo_neg = hi.clamp_min(0), lo.clamp_max(0)
    su = hi_pos / (hi_pos - lo_neg).clamp_min(1e-30)
    return (hi > -lo).to(lo.dtype), su, -su * lo_neg


def _clip_relaxation(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(lower slope, lower intercept, upper slope, upper intercept) of ``clip(z, 0, 1)`` on
    ``z in [lo, hi]`` (elementwise; sound in every case, exact where ``[lo, hi]`` stays on one
    linear piece)."""
    one, zero = torch.ones_like(lo), torch.zeros_like(lo)
    span = (hi - lo).clamp_min(1e-30)
    low_kink = (lo < 0) & (hi > 0)  # crosses the kink at 0
    high_kink = (lo < 1) & (hi > 1)  # crosses the kink at 1
    # Defaults: identity on [0, 1], constants outside.
    const0, const1 = hi <= 0, lo >= 1
    a_l = torch.where(const0 | const1, zero, one)
    b_l = torch.where(const1, one, zero)
    a_u, b_u = a_l.clone(), b_l.clone()
    # Only the kink at 0 (relu-like): upper chord, lower adaptive slope 0/1.
    only0 = low_kink & ~high_kink
    chord0 = hi / span
    a_u = torch.where(only0, chord0, a_u)
    b_u = torch.where(only0, -lo * chord0, b_u)
    a_l = torch.where(only0, (hi > -lo).to(lo.dtype), a_l)
    # Only the kink at 1 (min(z, 1), concave): lower chord, upper z or 1.
    only1 = high_kink & ~low_kink
    chord1 = (1 - lo) / span
    a_l = torch.where(only1, chord1, a_l)
    b_l = torch.where(only1, lo - chord1 * lo, b_l)
    use_z = (1 - lo) > (hi - 1)
    a_u = torch.where(only1, use_z.to(lo.dtype), a_u)
    b_u = torch.where(only1, (~use_z).to(lo.dtype), b_u)
    # Both kinks: lower z / hi (through 0 and (hi, 1)), upper (z - lo) / (1 - lo) (through (lo, 0), (1, 1)).
    both = low_kink & high_kink
    a_l = torch.where(both, 1 / hi.clamp_min(1e-30), a_l)
    b_l = torch.where(both, zero, b_l)
    a_u = torch.where(both, 1 / (1 - lo), a_u)
    b_u = torch.where(both, -lo / (1 - lo), b_u)
    return a_l, b_l, a_u, b_u


def _clamp_relaxation(lo: torch.Tensor, hi: torch.Tensor, tau: float) -> tuple[torch.Tensor, ...]:
    """:func:`_clip_relaxation` of ``clip(z, tau, 1 - tau) = tau + s * clip((z - tau) / s, 0, 1)``,
    ``s = 1 - 2 tau``: the relaxation of the inner clip at ``(z - tau) / s``, mapped back to ``z``."""
    if tau == 0:
        return _clip_relaxation(lo, hi)
    s = 1.0 - 2.0 * tau
    a_l, b_l, a_u, b_u = _clip_relaxation((lo - tau) / s, (hi - tau) / s)
    # tau + s * (a * (z - tau) / s + b) = a * z + tau * (1 - a) + s * b
    return a_l, tau * (1 - a_l) + s * b_l, a_u, tau * (1 - a_u) + s * b_u


def _conv_adjoint(lam: torch.Tensor, conv: FoldedConv, in_shape: tuple[int, int, int]) -> torch.Tensor:
    if conv.padding_mode == "zeros":
        return torch.nn.grad.conv2d_input((lam.shape[0], *in_shape), conv.weight, lam, conv.stride, conv.padding,
                                          conv.dilation, conv.groups)
    # Replicate padding: adjoint of the convolution on the padded input, then of the padding
    # (each padded pixel's coefficient goes back to the edge pixel it copies).
    ph, pw = conv.padding
    padded = (in_shape[0], in_shape[1] + 2 * ph, in_shape[2] + 2 * pw)
    lam = torch.nn.grad.conv2d_input((lam.shape[0], *padded), conv.weight, lam, conv.stride, 0,
                                     conv.dilation, conv.groups)
    with torch.enable_grad():
        x = torch.zeros(lam.shape[0], *in_shape, dtype=lam.dtype, device=lam.device, requires_grad=True)
        (adj,) = torch.autograd.grad(conv.pad(x)[0], x, lam)
    return adj


def _upsample_adjoint(lam: torch.Tensor, up: nn.Upsample, in_shape: tuple[int, int, int]) -> torch.Tensor:
    fh, fw = lam.shape[-2] // in_shape[-2], lam.shape[-1] // in_shape[-1]
    if up.mode != "nearest" or fh * in_shape[-2] != lam.shape[-2] or fw * in_shape[-1] != lam.shape[-1]:
        return _linear_adjoint(up, lam, in_shape)  # bilinear: the adjoint of the linear map
    return F.avg_pool2d(lam, (fh, fw)) * (fh * fw)


def _linear_adjoint(op, lam: torch.Tensor, in_shape: tuple[int, int, int]) -> torch.Tensor:
    """``lam`` through the adjoint of a linear map without offset (bilinear interpolation): the
    vector-Jacobian product at 0."""
    with torch.enable_grad():
        x = torch.zeros(lam.shape[0], *in_shape, dtype=lam.dtype, device=lam.device, requires_grad=True)
        (adj,) = torch.autograd.grad(op(x), x, lam)
    return adj


def _relu_update(lam, const, sl, su, bu):
    neg = lam.clamp_max(0)
    return lam.clamp_min(0) * sl + neg * su, const + (neg * bu).flatten(1).sum(dim=1)


def _max_pool_backward(m: MaxPool, lo: torch.Tensor, hi: torch.Tensor, lam: torch.Tensor,
                       const: torch.Tensor, per_row) -> tuple[torch.Tensor, torch.Tensor]:
    """Max pool with inputs in ``[lo, hi]``: ``y >= z_i`` (``i`` the element with the largest
    ``lo``) where the coefficient is positive; where it is negative ``y = z_i`` if ``lo_i`` is at
    least every other ``hi`` in the window, else ``y <= max hi``."""
    n, c, h, w = lo.shape
    wl, wh = pool_windows(lo, m, _PAD_FLOOR), pool_windows(hi, m, _PAD_FLOOR)  # (N, C, K, L)
    jl = wl.argmax(dim=2, keepdim=True)
    top2 = wh.topk(min(2, wh.shape[2]), dim=2).values
    hi_i = wh.gather(2, jl)
    hi_other = torch.where(hi_i >= top2[:, :, :1], top2[:, :, -1:], top2[:, :, :1])  # max hi of the others
    exact = (wl.gather(2, jl) >= hi_other) | (wh.shape[2] == 1)
    jl, exact, maxhi = per_row(jl), per_row(exact), per_row(top2[:, :, :1])
    b = lam.shape[0]
    lam = lam.reshape(b, c, 1, -1)
    pos, neg = lam.clamp_min(0), lam.clamp_max(0)
    coef = pos + torch.where(exact, neg, torch.zeros_like(neg))
    const = const + torch.where(exact, torch.zeros_like(neg), neg * maxhi).flatten(1).sum(dim=1)
    onehot = torch.zeros(b, c, wl.shape[2], lam.shape[-1], dtype=lam.dtype, device=lam.device)
    onehot.scatter_(2, jl.expand(b, -1, -1, -1), coef)
    (ph, pw) = m.padding
    hp, wp = h + 2 * ph, w + 2 * pw
    adj = F.fold(onehot.reshape(b * c, -1, lam.shape[-1]), (hp, wp), m.kernel_size, dilation=m.dilation)
    return adj.reshape(b, c, hp, wp)[:, :, ph:ph + h, pw:pw + w], const


def _relax(m, t):
    """A layer's trace entry prepared for the backward pass (ReLU relaxations computed once)."""
    if isinstance(m, nn.ReLU):
        return _relu_relaxation(*t)
    if isinstance(m, GraphLayer):
        return [[_relax(l, e) for l, e in zip(step.layers, entry)] if step.kind == "layers" else entry
                for step, entry in zip(m.steps, t)]
    return t


def _backward_layers(layers: list, relax: list, lam: torch.Tensor, const: torch.Tensor,
                     per_row) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lam, const)`` taken backward through ``layers`` (their prepared trace entries ``relax``)."""
    for m, t in zip(reversed(layers), reversed(relax)):
        if isinstance(m, FoldedConv):
            if m.bias is not None:
                const = const + (lam.sum(dim=(2, 3)) * m.bias).sum(dim=1)
            lam = _conv_adjoint(lam, m, t)
        elif isinstance(m, nn.ReLU):
            lam, const = _relu_update(lam, const, *(per_row(v) for v in t))
        elif isinstance(m, nn.LeakyReLU):
            a = float(m.negative_slope)
            sl, su, bu = (per_row(v) for v in _relu_relaxation(*t))
            lam, const = _relu_update(lam, const, a + (1 - a) * sl, a + (1 - a) * su, (1 - a) * bu)
        elif isinstance(m, MaxPool):
            lam, const = _max_pool_backward(m, *t, lam, const, per_row)
        elif isinstance(m, nn.Upsample):
            lam = _upsample_adjoint(lam, m, t)
        elif isinstance(m, nn.PixelShuffle):
            lam = F.pixel_unshuffle(lam, m.upscale_factor)
        elif isinstance(m, GraphLayer):
            lam, const = _graph_backward(m, t, lam, const, per_row)
        elif not isinstance(m, (nn.Identity, nn.Dropout)):
            raise ValueError(f"backward bounds: unsupported layer {type(m).__name__}")
    return lam, const


def _graph_backward(g: GraphLayer, relax: list, lam: torch.Tensor, const: torch.Tensor,
                    per_row) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward through a :class:`GraphLayer`: the coefficients of a value are the sum over its
    consumers; an add passes its coefficients to every input, a concat splits them by channel."""
    lams: list = [None] * (len(g.steps) + 1)
    lams[-1] = lam
    for i in range(len(g.steps) - 1, -1, -1):
        step, t, out = g.steps[i], relax[i], lams[i + 1]
        if out is None:
            continue
        if step.kind == "add":
            parts = [out] * len(step.inputs)
        elif step.kind == "cat":
            parts = list(torch.split(out, t, dim=1))
        else:
            part, const = _backward_layers(step.layers, t, out, const, per_row)
            parts = [part]
        for j, p in zip(step.inputs, parts):
            lams[j] = p if lams[j] is None else lams[j] + p
    return lams[0], const


def backward_margins(layers: list[nn.Module], x0: torch.Tensor, boxes: torch.Tensor, trace: list,
                     rows: torch.Tensor) -> torch.Tensor:
    """Lower bounds ``(B,)`` of ``min over sub-box n of [H[k, q] - H[k, s]]`` for ``rows (B, 4) =
    (n, k, q, s)`` (``q``, ``s`` flat cell indices of the output), given the ``trace`` of the
    forward pass of ``layers`` over ``boxes`` (``(N, 4)`` or parallelograms ``(N, 2, 3)``, see
    :func:`.bounds.theta_maps`) on the input ``x0 (1, 1, H, W)``."""
    f = backward_forms(layers, x0, boxes, trace, rows)
    return f[:, 0] - f[:, 1].abs() - f[:, 2].abs()


def backward_forms(layers: list[nn.Module], x0: torch.Tensor, boxes: torch.Tensor, trace: list,
                   rows: torch.Tensor) -> torch.Tensor:
    """Affine lower bounds ``(B, 3)`` (constant, coefficients of ``e1``, ``e2``: the normalised
    parameters of the row's sub-box) of ``H[k, q] - H[k, s]`` for ``rows (B, 4) = (n, k, q, s)``;
    :func:`backward_margins` is their minimum over the sub-box."""
    tau, layers = input_clamp(layers)
    relax = [_relax(m, t) for m, t in zip(layers, trace)]
    z_mid, z_e1, z_e2 = input_terms(x0, boxes)  # z = z_mid + z_e1 e1 + z_e2 e2 (exact)
    spread = z_e1.abs() + z_e2.abs()
    clip = _clamp_relaxation(z_mid - spread, z_mid + spread, tau)
    inputs = (z_mid, z_e1, z_e2) + clip
    out = [_backward_chunk(layers, relax, inputs, rows[i:i + ROW_CHUNK], boxes.shape[0])
           for i in range(0, rows.shape[0], ROW_CHUNK)]
    return torch.cat(out) if out else torch.zeros(0, 3, dtype=x0.dtype, device=x0.device)


def _backward_chunk(layers, relax, inputs, rows, n_boxes) -> torch.Tensor:
    n_rows = rows.shape[0]
    nb = rows[:, 0]

    def per_row(t: torch.Tensor) -> torch.Tensor:  # (N, ...) -> (B, ...) (broadcast for one box)
        return t if n_boxes == 1 else t.index_select(0, nb)

    last = layers[-1]
    dtype, device = inputs[0].dtype, inputs[0].device
    k_out = last.weight.shape[0]
    h, w = _out_hw(last, relax[-1])
    lam = torch.zeros(n_rows, k_out * h * w, dtype=dtype, device=device)
    ar = torch.arange(n_rows, device=device)
    lam[ar, rows[:, 1] * h * w + rows[:, 2]] += 1.0
    lam[ar, rows[:, 1] * h * w + rows[:, 3]] -= 1.0
    lam = lam.view(n_rows, k_out, h, w)
    const = torch.zeros(n_rows, dtype=dtype, device=device)
    lam, const = _backward_layers(layers, relax, lam, const, per_row)
    # Input: x = clip(z), z = z_mid + z_e1 e1 + z_e2 e2 (exact), relaxed linearly in z per pixel.
    z_mid, z_e1, z_e2, a_l, b_l, a_u, b_u = (per_row(v) for v in inputs)
    pos, neg = lam.clamp_min(0), lam.clamp_max(0)
    mu = pos * a_l + neg * a_u
    const = const + (pos * b_l + neg * b_u).flatten(1).sum(dim=1)
    a0 = const + (mu * z_mid).flatten(1).sum(dim=1)
    a1 = (mu * z_e1).flatten(1).sum(dim=1)
    a2 = (mu * z_e2).flatten(1).sum(dim=1)
    return torch.stack([a0, a1, a2], dim=1)


def _out_hw(head: FoldedConv, in_shape: tuple[int, int, int]) -> tuple[int, int]:
    """Output (h, w) of the head conv for its input shape."""
    kh, kw = head.kernel_size
    h = (in_shape[1] + 2 * head.padding[0] - head.dilation[0] * (kh - 1) - 1) // head.stride[0] + 1
    w = (in_shape[2] + 2 * head.padding[1] - head.dilation[1] * (kw - 1) - 1) // head.stride[1] + 1
    return h, w
