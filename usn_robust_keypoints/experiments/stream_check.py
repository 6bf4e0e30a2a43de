"""Diagnostic: certify frames of camera_source's built-in synthetic stream (640×480, the bench-ros and
demo source) offline, with no time budget, at several radii. Separates what the live certifier's
budget costs from what the model and its bounds cannot prove on this stream. The same frames with
their gray levels mapped linearly onto 20..235 (no pixel at 0 or 255, so the perturbation's clip
never acts at ±0.02) show what the clip at pure black / white costs. Returns a markdown table.

    usn-keypoints stream-check --frames 10 --radii 4 20
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from ..certify import CertifyOptions, PerturbationBox, certify
from ..model import load_model
from ..weights import DEFAULT_CERTIFIED, shipped_model_path


def stream_check(model: str | None = None, frames: int = 15, eps: float = 0.02,
                 radii: tuple[float, ...] = (4.0, 20.0, 40.0)) -> str:
    """The table of the module docstring (every 4th of the first ``4 * frames`` stream frames;
    default model: the shipped certified one)."""
    from ..nodes.frame_sources import synthetic_frames  # no ROS import: plain frame generators

    torch.set_num_threads(1)
    path = model or str(shipped_model_path(DEFAULT_CERTIFIED))
    km = load_model(path, device="cpu")
    stream = list(itertools.islice(synthetic_frames(), 0, 4 * frames, 4))
    box, options = PerturbationBox(eps, eps), CertifyOptions(margins=False)
    lines = [f"{len(stream)} frames of the synthetic stream (640×480; the network sees 128×96, so 5 frame px = 1 "
             f"input px), α = β = {eps:g}, no budget, margins off, `{path}`.", "",
             "| frames | radius (frame px) | certified | median r* (frame px) |", "|---|---|---|---|"]
    remapped = [np.rint(20 + f.astype(np.float32) * (215 / 255)).astype(np.uint8) for f in stream]
    for name, fs in (("as rendered", stream), ("levels 20..235", remapped)):
        for r in radii:
            cert, rstar = [], []
            for f in fs:
                fc = certify(km, f, box=box, radius=r, options=options)
                cert += [k.certified for k in fc.keypoints]
                rstar += [k.certified_radius for k in fc.keypoints]
            lines.append(f"| {name} | {r:g} | {sum(cert)}/{len(cert)} | {np.median(rstar):.0f} |")
    return "\n".join(lines)
