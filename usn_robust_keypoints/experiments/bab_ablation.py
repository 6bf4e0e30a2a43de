"""Engine knobs on a few left* photos (shipped default, ±0.02, r = 4, no budget, CPU time of the
certifying thread): per frame, proven keypoints and seconds.

    python -m usn_robust_keypoints.experiments.bab_ablation left01 left03 left04 left07 --set MAX_ROWS=4
    python -m usn_robust_keypoints.experiments.bab_ablation left01 left03 --no-backward
    python -m usn_robust_keypoints.experiments.bab_ablation left01 left03 --warm   # a repeated frame, warm-started
"""

from __future__ import annotations

import argparse
import time

import cv2
import torch

from ..certify import WarmStart, certify, native
from ..data.opencv_doc import opencv_doc_data
from ..model import load_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", nargs="+")
    ap.add_argument("--set", action="append", default=[], help="native module constant, e.g. MAX_BATCH=2")
    ap.add_argument("--no-backward", action="store_true")
    ap.add_argument("--eps", type=float, default=0.02)
    ap.add_argument("--warm", action="store_true",
                    help="certify each photo twice, the second time warm-started from the first (its time is reported)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    native.clock = time.thread_time
    for kv in a.set:
        k, v = kv.split("=")
        setattr(native, k, type(getattr(native, k))(v))
    model = load_model(device="cpu")
    cells, total, secs = [], 0, 0.0
    for name in a.photos:
        img = cv2.imread(str(opencv_doc_data() / f"{name}.jpg"), cv2.IMREAD_GRAYSCALE)
        warm = WarmStart() if a.warm else None
        if warm is not None:
            certify(model, img, a.eps, a.eps, 4.0, margins=False, backward=not a.no_backward, warm_start=warm)
        t = time.thread_time()
        fc = certify(model, img, a.eps, a.eps, 4.0, margins=False, backward=not a.no_backward, warm_start=warm)
        dt = time.thread_time() - t
        n = sum(k.certified for k in fc.keypoints)
        total, secs = total + n, secs + dt
        cells.append(f"{name} {n}/{len(fc.keypoints)} {dt:.2f} s")
    print(f"{' '.join(a.set) or 'defaults'}{' no backward' if a.no_backward else ''}{' warm' if a.warm else ''}: "
          f"{total} proven, "
          f"{secs:.1f} s | " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
