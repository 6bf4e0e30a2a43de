"""Worked example (docs/own-model.md): your own heatmap network, from a COCO-keypoints file to a
certified, pruned checkpoint the ROS 2 nodes load.

    python examples/own_model.py --out /tmp/own_model [--steps 800]

1. writes a COCO-keypoints file of synthetic chessboard scenes (stand-in for your labelled data);
2. defines two heatmap networks as plain ``nn.Module`` s: ``UNetLike`` (encoder / decoder with
   concat skips) and ``ResNetLike`` (strided stem, residual blocks);
3. imports each with a ``ModelSpec`` (``load_model(module, spec=...)``), trains it with the
   package's training loop on the COCO file, certifies test frames;
4. prunes a quarter of the hidden channels with USN scores (Torch-Pruning surgery), fine-tunes,
   certifies again, saves a ``.safetensors`` checkpoint and an ONNX export;
5. prints the ``ros2 launch`` line that runs the nodes on it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

INPUT_W, INPUT_H = 64, 48


def cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class UNetLike(nn.Module):
    """Stride-2 stem, a two-level encoder (max pool) and a nearest-upsampling decoder with concat
    skips; heatmaps at output stride 2."""

    def __init__(self, keypoints: int = 4, w: int = 12) -> None:
        super().__init__()
        self.stem = cbr(1, w, 2)
        self.enc1 = cbr(w, w)
        self.enc2 = nn.Sequential(nn.MaxPool2d(2), cbr(w, 2 * w))
        self.bottom = nn.Sequential(nn.MaxPool2d(2), cbr(2 * w, 2 * w), cbr(2 * w, 2 * w))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec2 = cbr(4 * w, w)
        self.dec1 = cbr(2 * w, w)
        self.head = nn.Conv2d(w, keypoints, 1)

    def forward(self, x):
        s1 = self.enc1(self.stem(x))
        s2 = self.enc2(s1)
        y = self.dec2(torch.cat([self.up(self.bottom(s2)), s2], dim=1))
        return self.head(self.dec1(torch.cat([self.up(y), s1], dim=1)))


class Residual(nn.Module):
    def __init__(self, w: int, dilation: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(w, w, 3, 1, dilation, dilation, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                                  nn.Conv2d(w, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w))

    def forward(self, x):
        return torch.relu(x + self.body(x))


class ResNetLike(nn.Module):
    """Strided stem to stride 4, dilated residual blocks, a ConvTranspose2d back to stride 2, head."""

    def __init__(self, keypoints: int = 4, w: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(cbr(1, w // 2, 2), cbr(w // 2, w, 2))
        self.blocks = nn.Sequential(Residual(w), Residual(w, 2), Residual(w, 4))
        self.up = nn.Sequential(nn.ConvTranspose2d(w, w // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(w // 2), nn.ReLU())
        self.head = nn.Conv2d(w // 2, keypoints, 1)

    def forward(self, x):
        return self.head(self.up(self.blocks(self.stem(x))))


def write_coco(out: Path, n: int, split: str) -> Path:
    """A COCO-keypoints file of ``n`` synthetic scenes (your own labelled images go here)."""
    import cv2

    from usn_robust_keypoints.data import CHESSBOARD_9X6, SceneConfig, generate_split, save_coco
    from usn_robust_keypoints.data.coco import LabelledImage

    images, kps = generate_split(split, n, SceneConfig(INPUT_W * 2, INPUT_H * 2), progress=False)
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i, (img, kp) in enumerate(zip(images, kps)):
        f = folder / f"{i:05d}.png"
        cv2.imwrite(str(f), img)
        records.append(LabelledImage(f, kp, np.full(len(kp), 2), img.shape[1], img.shape[0]))
    return save_coco(out / f"{split}.json", records, CHESSBOARD_9X6.keypoint_names, "chessboard",
                     CHESSBOARD_9X6.symmetries)


def certified_rate(model, frames, eps: float = 0.02, radius: float = 4.0) -> tuple[int, int]:
    from usn_robust_keypoints.certify import Status, certify

    cert = total = 0
    for f in frames:
        fc = certify(model, f, eps, eps, radius, margins=False)
        cert += sum(k.status is Status.CERTIFIED for k in fc.keypoints)
        total += len(fc.keypoints)
    return cert, total


def run(out: Path, steps: int, train_n: int, test_n: int) -> None:
    from usn_robust_keypoints.data import load_coco
    from usn_robust_keypoints.evaluate import evaluate_model
    from usn_robust_keypoints.model import load_model
    from usn_robust_keypoints.model.graph import ModelSpec
    from usn_robust_keypoints.model.graph.checkpoint import save_graph_checkpoint
    from usn_robust_keypoints.model.graph.export import export_onnx
    from usn_robust_keypoints.prune.surgery import (UsnImportance, channel_importance, count_hidden_channels,
                                                     remove_channels, select_channels)
    from usn_robust_keypoints.prune.usn import usn_scores
    from usn_robust_keypoints.train import to_training_arrays, train_detector

    torch.set_num_threads(1)
    train_json, test_json = write_coco(out / "coco", train_n, "train"), write_coco(out / "coco", test_n, "test")
    records, names, symmetries = load_coco(train_json)
    test_records, _, _ = load_coco(test_json)
    test_frames = [r.load() for r in test_records]
    test_kps = np.stack([r.keypoints for r in test_records])
    for arch in (UNetLike, ResNetLike):
        torch.manual_seed(0)
        spec = ModelSpec(INPUT_W, INPUT_H, color="gray", keypoint_names=names, symmetries=symmetries)
        model = load_model(arch(len(names)), device="cpu", spec=spec)  # traced, checked, refused if unsupported
        images, kps = to_training_arrays([r.load() for r in records], np.stack([r.keypoints for r in records]),
                                         model.config)
        train_detector(model.detector, images, kps, steps=steps, batch_size=16, device="cpu", progress=False)
        pck = evaluate_model(model, test_frames, test_kps, symmetries, progress=False)
        cert = certified_rate(model, test_frames)
        n0 = count_hidden_channels(model.detector)
        calib = torch.from_numpy(images[:32]).float().div(255.0).unsqueeze(1)
        usn = UsnImportance.from_layer_scores(model.detector, usn_scores(model.detector, calib))
        remove_channels(model.detector, select_channels(channel_importance(model.detector, usn), n0 // 4))
        train_detector(model.detector, images, kps, steps=steps // 4, batch_size=16, device="cpu", progress=False)
        pck_p = evaluate_model(model, test_frames, test_kps, symmetries, progress=False)
        cert_p = certified_rate(model, test_frames)
        path = save_graph_checkpoint(model.detector, out / f"{arch.__name__}_pruned.safetensors",
                                     extra={"example": "examples/own_model.py", "steps": steps})
        onnx_path = export_onnx(model.detector, out / f"{arch.__name__}_pruned.onnx")
        params = sum(p.numel() for p in model.detector.parameters())
        print(f"| {arch.__name__} | {n0} -> {count_hidden_channels(model.detector)} | {params} | "
              f"{pck.pck(4.0):.3f} -> {pck_p.pck(4.0):.3f} | {cert[0]}/{cert[1]} -> {cert_p[0]}/{cert_p[1]} |")
        print(f"  saved {path} and {onnx_path}")
        print(f"  ros2 launch usn_robust_keypoints pipeline.launch.py model_path:={path}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/own_model"))
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--train-images", type=int, default=600)
    p.add_argument("--test-images", type=int, default=16)
    a = p.parse_args()
    print("| net | hidden channels | params (pruned) | PCK@4px dense -> pruned | certified ±0.02 dense -> pruned |")
    print("|---|---|---:|---|---|")
    run(a.out, a.steps, a.train_images, a.test_images)
