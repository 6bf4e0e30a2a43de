"""``usn-keypoints bench-ros``: end-to-end ROS benchmark of dense vs pruned models.

Per model: camera_source -> keypoint_detector + certifier as separate processes; after a warm-up,
measures image->KeypointArray and image->CertifiedKeypoints latency (receive time - image stamp,
same clock), detector and certifier output rates, and the certifier's skip rate."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .pipeline import running_pipeline


def _latencies_ms(records, t_from: float) -> np.ndarray:
    return np.array([(r.t - (r.msg.header.stamp.sec + r.msg.header.stamp.nanosec * 1e-9)) * 1e3
                     for r in records if r.t >= t_from])


def bench_model(model: Path, source: str, rate: float, warmup: float, seconds: float, out: Path,
                budget_ms: float | None = None) -> dict:
    """Measure one model; returns the row of the table."""
    overrides = {"camera_source": {"source": source, "rate": float(rate)},
                 "keypoint_detector": {"model_path": str(model), "publish_debug_image": False},
                 "certifier": {"model_path": str(model)}}
    if budget_ms is not None:
        overrides["certifier"]["budget_ms"] = float(budget_ms)
    with running_pipeline("demo.yaml", out / "logs" / model.stem, overrides) as (procs, mon):
        deadline = time.time() + 60.0
        while not mon.certificates and time.time() < deadline and not procs.dead():
            time.sleep(0.1)
        time.sleep(warmup)
        t_start = time.time()
        c0 = mon.counts("certifier")
        d0 = mon.counts("keypoint_detector")
        time.sleep(seconds)
        t_end = time.time()
        c1 = mon.counts("certifier")
        d1 = mon.counts("keypoint_detector")
        kp = [r for r in list(mon.keypoints) if t_start <= r.t < t_end]
        ce = [r for r in list(mon.certificates) if t_start <= r.t < t_end]
        dead = procs.dead()
    if dead:
        raise RuntimeError(f"a node exited during the benchmark: {dead} (logs in {out / 'logs'})")
    det_lat = _latencies_ms(kp, t_start)
    cert_lat = _latencies_ms(ce, t_start)
    received = c1.get("received", 0) - c0.get("received", 0)
    skipped = c1.get("skipped", 0) - c0.get("skipped", 0)
    cert_ms = [r.msg.time_ms for r in ce]
    kps = [k for r in ce for k in r.msg.keypoints]

    def pct(a: np.ndarray, q: float) -> float:
        return float(np.percentile(a, q)) if a.size else float("nan")

    return {"model": model.name, "params": _param_count(model),
            "camera_hz": rate, "seconds": t_end - t_start,
            "detector_fps": len(kp) / (t_end - t_start), "certifier_fps": len(ce) / (t_end - t_start),
            "detector_latency_p50_ms": pct(det_lat, 50), "detector_latency_p95_ms": pct(det_lat, 95),
            "e2e_latency_p50_ms": pct(cert_lat, 50), "e2e_latency_p95_ms": pct(cert_lat, 95),
            "certify_ms_mean": float(np.mean(cert_ms)) if cert_ms else float("nan"),
            "skip_rate": skipped / received if received else float("nan"),
            "certified_rate": sum(k.certified for k in kps) / max(len(kps), 1),
            "detector_rejected": d1.get("rejected", 0), "certifier_rejected": c1.get("rejected", 0)}


def _param_count(model: Path) -> int:
    from ..model import load_model

    return sum(p.numel() for p in load_model(model, device="cpu").detector.parameters())


def markdown_table(rows: list[dict]) -> str:
    """The benchmark rows as a markdown table (pruned/dense ratios in the last row when both)."""
    cols = [("model", "model", "{}"), ("params", "params", "{:,}"), ("camera Hz", "camera_hz", "{:.0f}"),
            ("detector fps", "detector_fps", "{:.1f}"), ("certifier fps", "certifier_fps", "{:.1f}"),
            ("skip rate", "skip_rate", "{:.0%}"), ("certify ms", "certify_ms_mean", "{:.0f}"),
            ("image→keypoints p50/p95 ms", None, None), ("image→certificate p50/p95 ms", None, None),
            ("certified", "certified_rate", "{:.0%}")]
    lines = ["| " + " | ".join(c[0] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for title, key, fmt in cols:
            if key is None:
                pre = "detector" if "keypoints" in title else "e2e"
                cells.append(f"{r[pre + '_latency_p50_ms']:.0f} / {r[pre + '_latency_p95_ms']:.0f}")
            else:
                cells.append(fmt.format(r[key]))
        lines.append("| " + " | ".join(cells) + " |")
    if len(rows) == 2:
        d, p = rows
        lines.append(f"\npruned/dense: params {p['params'] / d['params']:.2f}x, detector fps "
                     f"{p['detector_fps'] / max(d['detector_fps'], 1e-9):.2f}x, certifier fps "
                     f"{p['certifier_fps'] / max(d['certifier_fps'], 1e-9):.2f}x, e2e p95 "
                     f"{p['e2e_latency_p95_ms'] / max(d['e2e_latency_p95_ms'], 1e-9):.2f}x")
    return "\n".join(lines)


def run_bench(dense: str | None = None, pruned: str | None = None, source: str = "synthetic",
              rate: float = 30.0, warmup: float = 3.0, seconds: float = 15.0,
              out_dir: str | Path = "results/bench_ros", budget_ms: float | None = None) -> int:
    """Benchmark the dense and the pruned model (the shipped dense and the nodes' default by
    default) one after the other."""
    from ..weights import DEFAULT_DENSE, WEIGHTS_DIR, default_model_path
    from .demo import resolve_source

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    source = resolve_source(source)
    models = [Path(m) for m in (dense or WEIGHTS_DIR / DEFAULT_DENSE, pruned or default_model_path())]
    missing = [str(m) for m in models if not m.is_file()]
    for m in missing:
        print(f"[bench-ros] skipping missing model {m}", flush=True)
    rows = []
    for m in models:
        if not m.is_file():
            continue
        print(f"[bench-ros] {m.name}: {source!r} at {rate:g} Hz, {warmup:g} s warm-up + {seconds:g} s", flush=True)
        rows.append(bench_model(m.resolve(), source, rate, warmup, seconds, out, budget_ms))
    if not rows:
        raise FileNotFoundError("no model to benchmark: " + ", ".join(missing))
    table = markdown_table(rows)
    print(table, flush=True)
    (out / "bench_ros.md").write_text(table + "\n")
    (out / "bench_ros.json").write_text(json.dumps(rows, indent=2))
    print(f"[bench-ros] written {out / 'bench_ros.md'}", flush=True)
    return 0
