"""Per-frame branch-and-bound figures on the real ``left*`` photos (shipped default model).

For every photo: keypoints proven / refuted / open / unknown, seconds per frame and the peak
resident memory above the process's baseline while the frame was certified, at one budget.

    python -m usn_robust_keypoints.experiments.bab_frames --budget-ms 1000 --out results/bab/left_1s.md
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import cv2
import torch

from ..certify import Status, certify
from ..data.opencv_doc import opencv_doc_data
from ..model import load_model


class PeakRSS:
    """Peak resident set size (MB) of this process while the context is open (sampled every 2 ms)."""

    def __enter__(self) -> "PeakRSS":
        self.peak = self.base = _rss_mb()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_mb())


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def left_photos() -> list[Path]:
    """The 13 ``left*.jpg`` evaluation photos (sorted)."""
    return sorted(p for p in opencv_doc_data().glob("left[0-9]*.jpg"))


def run(budget_ms: float | None, eps: float = 0.02, radius: float = 4.0, model_path: str | None = None,
        warm: bool = False) -> list[dict]:
    """One row per photo: counts per status, seconds, peak MB above the baseline."""
    torch.set_num_threads(1)
    model = load_model(model_path, device="cpu") if model_path else load_model(device="cpu")
    certify(model, cv2.imread(str(left_photos()[0]), cv2.IMREAD_GRAYSCALE), eps, eps, radius, margins=False,
            budget_ms=50)  # warm-up (plan folding, allocator)
    rows = []
    for p in left_photos():
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        with PeakRSS() as mem:
            t = time.perf_counter()
            fc = certify(model, img, eps, eps, radius, budget_ms=budget_ms, margins=False)
            dt = time.perf_counter() - t
        counts = {s.value: sum(k.status is s for k in fc.keypoints) for s in Status}
        rows.append({"frame": p.stem, **counts, "seconds": dt, "peak_mb": mem.peak - mem.base,
                     "keypoints": [k.to_dict() for k in fc.keypoints]})
        print(f"{p.stem}: {counts} {dt:.2f} s {mem.peak - mem.base:.0f} MB", flush=True)
    return rows


def markdown(rows: list[dict], title: str) -> str:
    lines = [f"## {title}", "", "| frame | proven | refuted | open | unknown | s/frame | peak MB |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['frame']} | {r['certified']} | {r['refuted']} | {r['open']} | {r['unknown']} | "
                     f"{r['seconds']:.2f} | {r['peak_mb']:.0f} |")
    tot = {s: sum(r[s] for r in rows) for s in ("certified", "refuted", "open", "unknown")}
    secs = sorted(r["seconds"] for r in rows)
    lines.append(f"| **all** | {tot['certified']} | {tot['refuted']} | {tot['open']} | {tot['unknown']} | "
                 f"mean {sum(secs) / len(secs):.2f}, max {secs[-1]:.2f} | max {max(r['peak_mb'] for r in rows):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-ms", type=float, default=None, help="per-frame budget (default: none)")
    ap.add_argument("--eps", type=float, default=0.02)
    ap.add_argument("--radius", type=float, default=4.0)
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", type=Path, required=True, help="markdown file (a .json beside it)")
    a = ap.parse_args(argv)
    rows = run(a.budget_ms, a.eps, a.radius, a.model)
    title = (f"left* photos, ±{a.eps:g}, r = {a.radius:g} px, budget "
             f"{'none' if a.budget_ms is None else f'{a.budget_ms:g} ms'}, 1 CPU thread")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(markdown(rows, title))
    a.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print(markdown(rows, title))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
