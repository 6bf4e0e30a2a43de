"""CLI handler of ``usn-keypoints certify``: per-keypoint table, summary, JSON and margin plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

from .results import FrameCertificate, Status

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff"}
COLORS = {Status.CERTIFIED: (60, 180, 60), Status.NOT_CERTIFIED: (40, 40, 220), Status.REFUTED: (40, 40, 220),
          Status.OPEN: (0, 140, 255), Status.UNKNOWN: (0, 190, 230)}


def _frames(args) -> list[tuple[str, np.ndarray]]:
    if bool(args.images) == bool(args.coco):
        raise ValueError("give exactly one of --images DIR and --coco JSON")
    if args.images:
        d = Path(args.images)
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if d.is_dir() else [d]
        if not files:
            raise ValueError(f"no images in {d}")
    else:
        from ..data.coco import load_coco

        records, _, _ = load_coco(args.coco)
        files = list(dict.fromkeys(r.file for r in records))
    out = []
    for f in files[: args.limit] if args.limit else files:
        img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f"cannot read image {f}")
        if img.dtype != np.uint8:
            img = cv2.convertScaleAbs(img, alpha=255.0 / max(float(img.max()), 1.0))
        if img.ndim == 3 and img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        out.append((str(f), img))
    return out


def draw_margins(image: np.ndarray, cert: FrameCertificate) -> np.ndarray:
    """BGR copy of ``image`` with each keypoint, its r* circle (colour = status) and label."""
    img = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    scale = max(1, int(round(480 / max(img.shape[:2]))))
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    for k in cert.keypoints:
        c = (int(round((k.x + 0.5) * scale - 0.5)), int(round((k.y + 0.5) * scale - 0.5)))
        color = COLORS[k.status]
        cv2.circle(img, c, 2, color, -1)
        if math.isfinite(k.certified_radius) and k.status is Status.CERTIFIED:
            cv2.circle(img, c, max(1, int(round(k.certified_radius * scale))), color, 1)
        cv2.circle(img, c, max(1, int(round(cert.radius * scale))), (200, 200, 200), 1, lineType=cv2.LINE_AA)
        label = f"{k.name} r*={k.radius_label}" + (f" b*={k.beta_star:.3f}" if math.isfinite(k.beta_star) else "")
        cv2.putText(img, label, (c[0] + 4, c[1] - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * max(1, scale / 2), color, 1)
    return img


def cmd_certify(args) -> int:
    """``usn-keypoints certify``: certify every frame, print the table and the summary."""
    import torch
    from tqdm import tqdm

    from ..model import load_model
    from .api import certify

    torch.set_num_threads(args.threads)
    model = load_model(args.model, device=args.device)
    frames = _frames(args)
    certs: list[tuple[str, FrameCertificate]] = []
    for name, img in tqdm(frames, desc="certify", unit="frame"):
        fc = certify(model, img, alpha=args.alpha, beta=args.beta, radius=args.radius, backend=args.backend,
                     budget_ms=args.budget_ms, margins=not args.no_margins, method=args.method)
        certs.append((name, fc))
        if args.plot:
            out = Path(args.plot)
            if len(frames) > 1:
                out = out.with_name(f"{out.stem}_{Path(name).stem}{out.suffix or '.png'}")
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), draw_margins(img, fc))
    print(f"model {model.path}  α={args.alpha} β={args.beta} radius={args.radius}px backend={args.backend}")
    print(f"{'frame':<28} {'keypoint':<14} {'status':<14} {'r* px':>7} {'β*':>7} {'α*':>7} {'ms':>7}")
    for name, fc in certs:
        for k in fc.keypoints:
            print(f"{Path(name).name[:28]:<28} {k.name[:14]:<14} {k.status.value:<14} {k.radius_label:>7} "
                  f"{k.beta_star:7.4f} {k.alpha_star:7.4f} {k.time_ms:7.1f}")
    kps = [k for _, fc in certs for k in fc.keypoints]
    cert = [k for k in kps if k.certified]
    betas = [k.beta_star for k in kps if math.isfinite(k.beta_star)]
    summary = {
        "frames": len(certs), "keypoints": len(kps),
        "certified_rate": len(cert) / max(len(kps), 1),
        "mean_certified_radius_px": float(np.mean([k.certified_radius for k in cert])) if cert else math.nan,
        "mean_beta_star": float(np.mean(betas)) if betas else math.nan,
        "ms_per_frame": float(np.mean([fc.time_ms for _, fc in certs])) if certs else math.nan,
    }
    print(f"certified {len(cert)}/{len(kps)} ({summary['certified_rate']:.1%}), mean r* "
          f"{summary['mean_certified_radius_px']:.2f} px, mean β* {summary['mean_beta_star']:.4f}, "
          f"{summary['ms_per_frame']:.1f} ms/frame")
    if args.json:
        doc = {"model": str(model.path), "summary": summary,
               "frames": [{"file": name, **fc.to_dict()} for name, fc in certs]}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1, default=lambda v: None))
        print(f"wrote {args.json}")
    return 0
