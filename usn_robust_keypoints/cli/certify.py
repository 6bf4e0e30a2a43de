"""``usn-keypoints certify``: per-keypoint table, summary, JSON and margin plots."""

from __future__ import annotations

import argparse
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("certify", help="certify keypoints of images against brightness/contrast changes")
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped default model)")
    p.add_argument("--images", help="image file or folder")
    p.add_argument("--coco", help="COCO-keypoints JSON (its images are certified)")
    p.add_argument("--alpha", type=float, default=0.02, help="contrast c in [1-alpha, 1+alpha]")
    p.add_argument("--beta", type=float, default=0.02, help="brightness b in [-beta, beta]")
    p.add_argument("--radius", type=float, default=4.0, help="radius in frame pixels")
    p.add_argument("--backend", default="native", choices=["native", "auto_lirpa"])
    p.add_argument("--method", default="CROWN",
                   help="auto_LiRPA method, one of certify.request.LIRPA_METHODS (IBP, CROWN, ...)")
    p.add_argument("--budget-ms", type=float, default=None, help="time budget per frame (undecided -> unknown)")
    p.add_argument("--no-margins", action="store_true", help="skip the beta*/alpha* bisection")
    p.add_argument("--limit", type=int, default=0, help="certify at most this many images (0 = all)")
    p.add_argument("--json", help="write every per-keypoint result to this JSON file")
    p.add_argument("--plot", help="PNG with the margins drawn on the image (one file per frame)")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.set_defaults(func=run_certify)


def read_frames(images: str | None, coco: str | None, limit: int = 0) -> list[tuple[str, "np.ndarray"]]:
    """(file, uint8 gray/BGR frame) of an image file or folder, or of a COCO file's images."""
    import cv2
    import numpy as np

    if bool(images) == bool(coco):
        raise ValueError("give exactly one of --images DIR and --coco JSON")
    if images:
        d = Path(images)
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if d.is_dir() else [d]
        if not files:
            raise ValueError(f"no images in {d}")
    else:
        from ..data.coco import load_coco

        records, _, _ = load_coco(coco)
        files = list(dict.fromkeys(r.file for r in records))
    out = []
    for f in files[:limit] if limit else files:
        img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f"cannot read image {f}")
        if img.dtype != np.uint8:
            img = cv2.convertScaleAbs(img, alpha=255.0 / max(float(img.max()), 1.0))
        if img.ndim == 3 and img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        out.append((str(f), img))
    return out


def run_certify(args: argparse.Namespace) -> int:
    """Certify every frame, print the table and the summary."""
    import json
    import math

    import cv2
    import numpy as np
    import torch
    from tqdm import tqdm

    from ..certify import CertifyOptions, certify, validate_request
    from ..draw import draw_certificate
    from ..model import load_model

    torch.set_num_threads(args.threads)
    box = validate_request((args.alpha, args.beta), args.radius, args.backend, args.budget_ms)  # before any loading
    options = CertifyOptions(margins=not args.no_margins, method=args.method)
    model = load_model(args.model, device=args.device)
    frames = read_frames(args.images, args.coco, args.limit)
    certs = []
    for name, img in tqdm(frames, desc="certify", unit="frame"):
        fc = certify(model, img, box=box, radius=args.radius, backend=args.backend, budget_ms=args.budget_ms,
                     options=options)
        certs.append((name, fc))
        if args.plot:
            out = Path(args.plot)
            if len(frames) > 1:
                out = out.with_name(f"{out.stem}_{Path(name).stem}{out.suffix or '.png'}")
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), draw_certificate(img, fc, min_size=480))
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
