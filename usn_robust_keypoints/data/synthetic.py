"""Synthetic scenes with exact labels: the chessboard target warped by a random perspective pose
onto a real background photo, with blur, noise, lighting gradients, gamma and brightness/contrast
jitter. Scenes are rendered at ``render_scale`` times the output size and reduced with
``cv2.INTER_AREA``, like camera frames are by the detector's pre-processing. With
``SceneConfig.photo`` set, the board is rendered as a printed, photographed object instead
(:mod:`.photo`: ink/paper levels, occlusion, uneven light, glare, blur, lens distortion, sensor noise
and JPEG at the camera resolution).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from tqdm import tqdm

from .backgrounds import load_backgrounds
from . import photo as ph
from .opencv_doc import cache_dir
from .target import CHESSBOARD_9X6, ChessboardTarget

GENERATOR_VERSION = 1
SPLIT_SEEDS = {"train": 1000, "val": 2000, "test": 3000}


@dataclass(frozen=True)
class SceneConfig:
    """Ranges of the random scene parameters."""

    width: int = 128
    height: int = 96
    render_scale: int = 3
    board_width: tuple[float, float] = (0.35, 0.95)  # projected board width / image width
    max_tilt_deg: float = 50.0
    blur_sigma: tuple[float, float] = (0.0, 1.5)  # at render scale
    noise_sigma: tuple[float, float] = (0.0, 6.0)  # gray levels, at output scale
    gamma: tuple[float, float] = (0.6, 1.6)
    contrast: tuple[float, float] = (0.6, 1.3)
    brightness: tuple[float, float] = (-0.2, 0.2)
    gradient: float = 0.4  # lighting gradient amplitude (multiplier 1 +- gradient)
    photo: ph.PhotoConfig | None = None  # printed/photographed appearance (None: the original scenes)


@dataclass
class Scene:
    """One synthetic image with its labels in output pixels (OpenCV pixel-centre convention)."""

    image: np.ndarray  # (H, W) uint8
    keypoints: np.ndarray  # (K, 2) named keypoints
    corners: np.ndarray  # (rows*cols, 2) all inner corners, canonical order


class SceneGenerator:
    """Draws random :class:`Scene` s of ``target`` on ``backgrounds``."""

    def __init__(self, backgrounds: list[np.ndarray], config: SceneConfig = SceneConfig(),
                 target: ChessboardTarget = CHESSBOARD_9X6) -> None:
        if not backgrounds:
            raise ValueError("need at least one background photo")
        self.backgrounds = backgrounds
        self.config = config
        self.target = target
        self.square = 32
        self.board, self.board_corners = target.render(self.square, self.square // 3)

    def _background(self, rng: np.random.Generator, w: int, h: int) -> np.ndarray:
        bg = self.backgrounds[rng.integers(len(self.backgrounds))]
        bh, bw = bg.shape
        frac = rng.uniform(0.3, 1.0)
        cw = max(int(bw * frac), 16)
        ch = max(min(int(cw * h / w), bh), 16)
        cw = min(cw, bw)
        x0, y0 = rng.integers(0, bw - cw + 1), rng.integers(0, bh - ch + 1)
        crop = cv2.resize(bg[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_AREA)
        return crop[:, ::-1] if rng.random() < 0.5 else crop

    def _homography(self, rng: np.random.Generator, w: int, h: int) -> np.ndarray | None:
        """Board-image pixels -> canvas pixels for a random pose; None if the corners do not fit."""
        cfg = self.config
        bh, bw = self.board.shape
        tilt = np.deg2rad(cfg.max_tilt_deg)
        ax, ay = rng.uniform(-tilt, tilt, 2)
        az = rng.uniform(-np.pi, np.pi)
        rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
        ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
        rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
        rot = rz @ ry @ rx
        f = w * rng.uniform(0.8, 1.6)
        dist = 2.5 * bw * f / w
        # board pixel (u, v) -> plane (u - bw/2, v - bh/2, 0) -> camera -> image
        plane = np.array([[1, 0, -bw / 2], [0, 1, -bh / 2], [0, 0, 1]], np.float64)
        ext = np.column_stack([rot[:, 0], rot[:, 1], [0, 0, dist]])
        kmat = np.array([[f, 0, 0], [0, f, 0], [0, 0, 1]], np.float64)
        hom = kmat @ ext @ plane
        pts = cv2.perspectiveTransform(self.board_corners.reshape(-1, 1, 2), hom).reshape(-1, 2)
        span = pts.max(0) - pts.min(0)
        scale = rng.uniform(*cfg.board_width) * w / max(span[0], 1e-6)
        scale = min(scale, 0.9 * h / max(span[1], 1e-6), 0.9 * w / max(span[0], 1e-6))
        pts = pts * scale
        margin = 0.03 * w
        lo = margin - pts.min(0)
        hi = np.array([w, h]) - margin - pts.max(0)
        if np.any(hi < lo):
            return None
        shift = rng.uniform(lo, hi)
        sim = np.array([[scale, 0, shift[0]], [0, scale, shift[1]], [0, 0, 1]])
        return sim @ hom

    def generate(self, rng: np.random.Generator) -> Scene:
        """One random scene."""
        cfg = self.config
        s = cfg.render_scale
        w, h = cfg.width * s, cfg.height * s
        hom = None
        while hom is None:
            hom = self._homography(rng, w, h)
        if cfg.photo is not None:
            return self._photograph(rng, hom)
        canvas = self._background(rng, w, h).astype(np.float32)
        black, white = rng.uniform(0, 90), rng.uniform(150, 255)
        board = black + (white - black) * (self.board.astype(np.float32) / 255.0)
        warped = cv2.warpPerspective(board, hom, (w, h), flags=cv2.INTER_LINEAR)
        mask = cv2.warpPerspective(np.ones_like(board), hom, (w, h), flags=cv2.INTER_LINEAR)
        img = canvas * (1 - mask) + warped * mask
        # lighting gradient and gamma
        ang = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = ((xx / w - 0.5) * np.cos(ang) + (yy / h - 0.5) * np.sin(ang)) * 2
        img = img * (1 + cfg.gradient * rng.uniform(0, 1) * ramp)
        img = np.clip(img / 255.0, 0, 1) ** rng.uniform(*cfg.gamma)
        sigma = rng.uniform(*cfg.blur_sigma)
        if sigma > 0.3:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
        img = cv2.resize(img, (cfg.width, cfg.height), interpolation=cv2.INTER_AREA)
        img = img * rng.uniform(*cfg.contrast) + rng.uniform(*cfg.brightness)
        img = img * 255 + rng.normal(0, rng.uniform(*cfg.noise_sigma), img.shape)
        image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        corners = cv2.perspectiveTransform(self.board_corners.reshape(-1, 1, 2), hom).reshape(-1, 2)
        corners = (corners + 0.5) / s - 0.5
        return Scene(image, self.target.keypoints_from_corners(corners), corners)

    def _photograph(self, rng: np.random.Generator, hom: np.ndarray) -> Scene:
        """One scene of the board as a photographed print (``config.photo``); see :mod:`.photo`."""
        cfg, pc = self.config, self.config.photo
        s = cfg.render_scale
        w, h = cfg.width * s, cfg.height * s
        canvas = self._background(rng, w, h).astype(np.float32) * rng.uniform(0.5, 1.1)
        ink, paper = rng.uniform(*pc.ink), rng.uniform(*pc.paper)
        board = ink + (paper - ink) * (self.board.astype(np.float32) / 255.0)
        warped = cv2.warpPerspective(board, hom, (w, h), flags=cv2.INTER_LINEAR)
        mask = cv2.warpPerspective(np.ones_like(board), hom, (w, h), flags=cv2.INTER_LINEAR)
        img = canvas * (1 - mask) + warped * mask
        corners = cv2.perspectiveTransform(self.board_corners.reshape(-1, 1, 2), hom).reshape(-1, 2)
        square = float(np.median(np.linalg.norm(np.diff(corners.reshape(self.target.rows, -1, 2), axis=1), axis=-1)))
        if rng.random() < pc.occlusion_p:
            bh, bw = self.board.shape
            outline = cv2.perspectiveTransform(np.array([[[0, 0]], [[bw, 0]], [[bw, bh]], [[0, bh]]], np.float64),
                                               hom).reshape(-1, 2)
            arm = ph.occluder(rng, outline, corners, square, (h, w))
            if arm is not None:
                level = rng.uniform(60, 210)
                ramp = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(1.0, 1.2), w, dtype=np.float32)[None, :]
                img = img * (1 - arm) + level * ramp * arm
        img = img * ph.light_field(rng, pc, (h, w))
        if rng.random() < pc.glare_p:
            img = img + ph.glare(rng, pc, mask, corners, square)
        ang = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = ((xx / w - 0.5) * np.cos(ang) + (yy / h - 0.5) * np.sin(ang)) * 2
        img = img * (1 + 0.5 * cfg.gradient * rng.uniform(0, 1) * ramp)
        img = 255.0 * np.clip(img / 255.0, 0, 1) ** rng.uniform(*cfg.gamma)
        img = ph.blur(rng, pc, img)
        k1 = rng.uniform(-pc.distortion, pc.distortion)
        if k1 != 0.0:
            mx, my = ph.distortion_maps(k1, (h, w))
            img = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            corners = ph.distort_points(corners, k1, (h, w))
        img = ph.jpeg(rng, pc, ph.sensor_noise(rng, pc, img))
        img = cv2.resize(img, (cfg.width, cfg.height), interpolation=cv2.INTER_AREA)
        image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        corners = (corners + 0.5) / s - 0.5
        return Scene(image, self.target.keypoints_from_corners(corners), corners)


def generate_split(split: str, n: int, config: SceneConfig = SceneConfig(), use_cache: bool = True,
                   progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split of ``n`` scenes: images (n, H, W) uint8 and keypoints (n, K, 2) float32.

    Splits ``train``, ``val`` and ``test`` use disjoint seeds. Cached as .npz under the cache folder.
    """
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split must be one of {sorted(SPLIT_SEEDS)}, got {split!r}")
    fields = asdict(config)
    if config.photo is None:
        del fields["photo"]  # the original scenes keep their cache key
    key = json.dumps([GENERATOR_VERSION, split, n, fields], sort_keys=True)
    path = cache_dir() / "synthetic" / f"{split}_{n}_{hashlib.sha1(key.encode()).hexdigest()[:10]}.npz"
    if use_cache and path.is_file():
        with np.load(path) as z:
            return z["images"], z["keypoints"]
    gen = SceneGenerator(load_backgrounds(), config)
    rng = np.random.default_rng(SPLIT_SEEDS[split])
    images = np.empty((n, config.height, config.width), np.uint8)
    keypoints = np.empty((n, len(gen.target.keypoint_grid), 2), np.float32)
    for i in tqdm(range(n), desc=f"synthetic {split}", disable=not progress, unit="img"):
        scene = gen.generate(rng)
        images[i], keypoints[i] = scene.image, scene.keypoints
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, images=images, keypoints=keypoints)
    return images, keypoints
