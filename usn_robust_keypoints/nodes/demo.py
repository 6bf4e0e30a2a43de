"""``usn-keypoints demo``: camera_source -> keypoint_detector + certifier on the shipped model,
a live per-frame table, and an annotated PNG (optionally MP4) with certified radii."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import cv2
import numpy as np

from ..draw import draw_certificate
from .messages import msg_to_certificate
from .monitor import PipelineMonitor, stamp_ns
from .pipeline import running_pipeline

HEADER = (f"{'t[s]':>5} {'frame':>6} {'cam fps':>7} {'det fps':>7} {'cert fps':>8} {'kps':>4} "
          f"{'cert.rate':>9} {'mean r*':>8} {'mean b*':>8} {'skipped':>7} {'rejected':>8} {'ms':>6}")


def resolve_source(source: str) -> str:
    """``opencv-doc:...`` is fetched now (once, into ``$USN_CACHE``); when that is impossible the
    demo falls back to the synthetic stream."""
    if source.startswith("opencv-doc:"):
        from ..data.opencv_doc import opencv_doc_data

        try:
            print(f"[demo] real chessboard photos: {opencv_doc_data()}", flush=True)
        except RuntimeError as e:
            print(f"[demo] {e}\n[demo] falling back to the synthetic stream", flush=True)
            return "synthetic"
    return source


def resolve_model(model: str | None) -> Path:
    """``model`` or the shipped default (the pruned model when shipped)."""
    from ..weights import default_model_path

    path = Path(model) if model else default_model_path()
    if not path.is_file():
        raise FileNotFoundError(f"model {path} not found")
    return path.resolve()


def _row(t: float, mon: PipelineMonitor, rec, skipped: int, rejected: int) -> str:
    msg = rec.msg
    r = [k.certified_radius for k in msg.keypoints if math.isfinite(k.certified_radius)]
    b = [k.beta_star for k in msg.keypoints if math.isfinite(k.beta_star)]
    rate = sum(k.certified for k in msg.keypoints) / max(len(msg.keypoints), 1)
    cam = PipelineMonitor.rate(mon.image_times_recent())
    return (f"{t:5.1f} {len(mon.certificates):6d} {cam:7.1f} {mon.rate(mon.recent_kp_times):7.1f} "
            f"{mon.rate(mon.recent_cert_times):8.1f} {len(msg.keypoints):4d} {rate:9.0%} "
            f"{(np.mean(r) if r else float('inf')):8.2f} {(np.mean(b) if b else float('nan')):8.3f} "
            f"{skipped:7d} {rejected:8d} {msg.time_ms:6.0f}")


def run_demo(duration: float = 20.0, source: str = "opencv-doc:left[0-9]*.jpg", model: str | None = None,
             rate: float = 15.0, out_dir: str | Path = "results/demo", video: bool = False,
             config: str = "demo.yaml", device: str = "auto") -> int:
    """Run the demo for ``duration`` seconds; returns 0 when certificates were published."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model_path = resolve_model(model)
    source = resolve_source(source)
    print(f"[demo] model {model_path.name}, source {source!r} at {rate:g} Hz, {duration:g} s; "
          f"results in {out}", flush=True)
    overrides = {"camera_source": {"source": source, "rate": float(rate)},
                 "keypoint_detector": {"model_path": str(model_path), "device": device},
                 "certifier": {"model_path": str(model_path), "device": device}}
    writer = None
    last_png = None
    summary: dict = {}
    with running_pipeline(config, out / "logs", overrides) as (procs, mon):
        t0 = time.time()
        shown = 0
        print(HEADER, flush=True)
        while time.time() - t0 < duration:
            time.sleep(0.05)
            if procs.dead():
                print(f"[demo] a node exited: {procs.dead()} (logs in {out / 'logs'})", flush=True)
                break
            certs = mon.certificates
            counts = mon.counts("certifier")
            for rec in certs[shown:]:
                print(_row(time.time() - t0, mon, rec, counts.get("skipped", 0), counts.get("rejected", 0)),
                      flush=True)
                frame = mon.image(stamp_ns(rec.msg.header))
                if frame is None:
                    continue
                annotated = draw_certificate(frame, msg_to_certificate(rec.msg))
                last_png = annotated
                if video:
                    if writer is None:
                        h, w = annotated.shape[:2]
                        writer = cv2.VideoWriter(str(out / "demo_certified.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                                                 max(1.0, mon.rate(mon.recent_cert_times) or 5.0), (w, h))
                    writer.write(annotated)
            shown = len(certs)
        summary = _summary(mon, time.time() - t0, model_path, source)
    if writer is not None:
        writer.release()
    if last_png is not None:
        cv2.imwrite(str(out / "demo_certified.png"), last_png)
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    print(f"[demo] {summary['certified_frames']} certified frames, {summary['detector_frames']} detector "
          f"frames in {summary['seconds']:.1f} s; certified rate {summary['certified_rate']:.0%}, "
          f"skipped {summary['certifier']['skipped'] if summary['certifier'] else 'n/a'}", flush=True)
    if last_png is not None:
        print(f"[demo] annotated frame: {out / 'demo_certified.png'}"
              + (f", video: {out / 'demo_certified.mp4'}" if writer is not None else ""), flush=True)
    return 0 if summary["certified_frames"] else 1


def _summary(mon: PipelineMonitor, seconds: float, model: Path, source: str) -> dict:
    kps = [k for rec in mon.certificates for k in rec.msg.keypoints]
    r = [k.certified_radius for k in kps if math.isfinite(k.certified_radius)]
    b = [k.beta_star for k in kps if math.isfinite(k.beta_star)]
    return {"model": model.name, "source": source, "seconds": seconds,
            "camera_frames": mon.image_count, "detector_frames": len(mon.keypoints),
            "certified_frames": len(mon.certificates),
            "certified_rate": sum(k.certified for k in kps) / max(len(kps), 1),
            "mean_certified_radius": float(np.mean(r)) if r else None,
            "mean_beta_star": float(np.mean(b)) if b else None,
            "detector": mon.counts("keypoint_detector"), "certifier": mon.counts("certifier")}
