"""COCO-keypoints JSON io, so users can train and evaluate on their own labelled data.

Coordinates are stored as given, in OpenCV's pixel-centre convention (centre of pixel (0, 0) at
(0.0, 0.0)). Visibility ``v`` follows COCO: 0 not labelled, 1 labelled but hidden, 2 visible.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass
class LabelledImage:
    """One image file with one keypoint instance."""

    file: Path
    keypoints: np.ndarray  # (K, 2) float
    visibility: np.ndarray  # (K,) int
    width: int
    height: int

    def load(self) -> np.ndarray:
        """The image as uint8 gray or BGR."""
        img = cv2.imread(str(self.file), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f"cannot read image {self.file}")
        return img


def save_coco(path: str | Path, records: list[LabelledImage], keypoint_names: list[str],
              category: str, symmetries: list[list[int]] | None = None) -> Path:
    """Write ``records`` as COCO-keypoints JSON; file names are stored relative to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i, r in enumerate(records, start=1):
        try:
            name = str(Path(r.file).resolve().relative_to(path.parent.resolve()))
        except ValueError:
            name = str(Path(r.file).resolve())
        images.append({"id": i, "file_name": name, "width": int(r.width), "height": int(r.height)})
        kps = np.asarray(r.keypoints, np.float64)
        vis = np.asarray(r.visibility, int)
        flat = [v for (x, y), vi in zip(kps, vis) for v in (float(x), float(y), int(vi))]
        shown = kps[vis > 0]
        x0, y0 = shown.min(0) if len(shown) else (0.0, 0.0)
        x1, y1 = shown.max(0) if len(shown) else (0.0, 0.0)
        annotations.append({"id": i, "image_id": i, "category_id": 1, "keypoints": flat,
                            "num_keypoints": int((vis > 0).sum()), "iscrowd": 0,
                            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                            "area": float((x1 - x0) * (y1 - y0))})
    category_entry = {"id": 1, "name": category, "keypoints": list(keypoint_names), "skeleton": []}
    if symmetries:
        category_entry["symmetries"] = symmetries
    doc = {"images": images, "annotations": annotations, "categories": [category_entry]}
    path.write_text(json.dumps(doc, indent=1))
    return path


def load_coco(path: str | Path) -> tuple[list[LabelledImage], list[str], list[list[int]]]:
    """Read COCO-keypoints JSON: records (one per annotation), keypoint names, symmetries."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        cat = doc["categories"][0]
        names = list(cat["keypoints"])
        images = {im["id"]: im for im in doc["images"]}
        records = []
        for ann in doc["annotations"]:
            im = images[ann["image_id"]]
            arr = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)
            if arr.shape[0] != len(names):
                raise ValueError(f"annotation {ann['id']} has {arr.shape[0]} keypoints, expected {len(names)}")
            file = Path(im["file_name"])
            records.append(LabelledImage(file if file.is_absolute() else path.parent / file,
                                         arr[:, :2].copy(), arr[:, 2].astype(int), int(im["width"]), int(im["height"])))
    except (OSError, KeyError, IndexError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a COCO-keypoints file: {e}") from e
    k = len(names)
    symmetries = cat.get("symmetries") or [list(range(k))]
    return records, names, symmetries
