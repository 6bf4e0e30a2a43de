"""Benchmark: the default model's certificate with the forward bounds (``certify/bounds.py``) of an
older git revision vs the working tree, alternating in one process (α = β = 0.02, r = 4, margins
off, no budget, one thread) on the first synthetic test scenes and the 13 real ``left*`` photos.
Checks that both give the same status and r* per keypoint. Prints a markdown table.

    .venv/bin/python scripts/bounds_speed_ab.py 939c7f6 --frames 20 --reps 3
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from usn_robust_keypoints.certify import bounds
from usn_robust_keypoints.certify.api import certify
from usn_robust_keypoints.data import SceneConfig, build_real_set, generate_split, load_coco
from usn_robust_keypoints.model import load_model
from usn_robust_keypoints.weights import DEFAULT_CERTIFIED, shipped_model_path


def old_bounds(rev: str):
    """``certify/bounds.py`` of git revision ``rev`` as a module."""
    src = subprocess.run(["git", "show", f"{rev}:usn_robust_keypoints/certify/bounds.py"], check=True,
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1]).stdout
    path = Path(tempfile.mkdtemp()) / "bounds_old.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("bounds_old", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bounds_old"] = mod
    spec.loader.exec_module(mod)
    return mod


def use(relu, conv) -> None:
    """Route the live bound propagation through ``relu`` / ``conv`` (forms handlers)."""
    bounds.HANDLERS[torch.nn.ReLU] = lambda f, _: relu(f)
    bounds.HANDLERS[bounds.FoldedConv] = conv
    bounds.relu_forms = relu  # also used by clip01_forms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rev", help="git revision of the 'before' bounds.py")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    old = old_bounds(args.rev)
    model = load_model(str(shipped_model_path(DEFAULT_CERTIFIED)), device="cpu")
    c = model.config
    sets = {f"synthetic test[:{args.frames}]": list(generate_split("test", args.frames, SceneConfig(
                c.input_width, c.input_height), progress=False)[0]),
            "real left (13)": [r.load() for r in load_coco(build_real_set("left"))[0]]}
    code = {f"before ({args.rev})": (old.relu_forms, lambda f, conv: old.conv_forms(old.Forms(f.lower, f.upper), conv)),
            "after": (bounds.relu_forms, bounds.conv_forms)}
    times = {(s, k): [] for s in sets for k in code}
    outs = {}
    certify(model, sets["real left (13)"][0], 0.02, 0.02, 4.0, margins=False)  # warm-up
    for _ in range(args.reps):
        for s, frames in sets.items():
            for k, fns in code.items():
                use(*fns)
                outs[(s, k)] = []
                for f in frames:
                    t0 = time.perf_counter()
                    fc = certify(model, f, 0.02, 0.02, 4.0, margins=False)
                    times[(s, k)].append((time.perf_counter() - t0) * 1000)
                    outs[(s, k)].append([(kc.status, round(kc.certified_radius, 4)) for kc in fc.keypoints])
    use(*code["after"])
    before = f"before ({args.rev})"
    print("| frames | code | mean ms | median ms | p90 ms | certified | identical certificates |\n"
          "|---|---|---|---|---|---|---|")
    for (s, k), v in times.items():
        o = outs[(s, k)]
        same = sum(a == b for a, b in zip(o, outs[(s, before)]))
        cert = sum(st == "certified" for fr in o for st, _ in fr)
        print(f"| {s} | {k} | {statistics.mean(v):.0f} | {statistics.median(v):.0f} | {np.percentile(v, 90):.0f} "
              f"| {cert}/{4 * len(o)} | {same}/{len(o)} frames |")


if __name__ == "__main__":
    main()
