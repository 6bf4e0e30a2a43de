"""The real-frame rows of ``bench-certify`` for one box, without the synthetic bench table (for
running the boxes as separate processes); budgets and times on the certifying thread's CPU time.

    python -m usn_robust_keypoints.experiments.bab_bench --eps 0.02 --cap-s 60 --out results/bab/real_0.02.md
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import torch

from ..certify import native
from .bench_certify import real_table, run_real
from ..data.synthetic import generate_split
from ..model import load_model
from .bab_frames import left_photos


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eps", type=float, required=True)
    ap.add_argument("--cap-s", type=float, default=60.0)
    ap.add_argument("--derived", type=float, nargs="*", default=[10000.0])
    ap.add_argument("--synthetic", type=int, default=4)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    native.clock = time.thread_time
    model = load_model(device="cpu")
    sets = [("left* photos (13)", [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in left_photos()]),
            (f"synthetic scenes ({a.synthetic})", list(generate_split("test", a.synthetic, progress=False)[0]))]
    rows = run_real(model, sets, epsilons=(a.eps,), derived=tuple(d for d in a.derived if d < 1000 * a.cap_s),
                    cap_s=a.cap_s, progress=False)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(real_table(rows) + "\n")
    a.out.with_suffix(".json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    print(real_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
