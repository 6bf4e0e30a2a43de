"""The board as a printed, photographed object: appearance effects composed into the synthetic scenes.

:class:`PhotoConfig` holds the ranges of every effect; :class:`SceneGenerator` applies them when
``SceneConfig.photo`` is set. The effects and where they act (render scale = the camera frame):

- ``ink`` / ``paper``: printed black and paper white levels (gray levels, paper may exceed 255 and
  saturate, as overexposed paper does in the opencv-doc photos);
- ``occlusion``: an arm-like capsule with a hand-like ellipse entering from the image border and
  reaching the board's edge, never covering an inner corner (so every label stays visible and exact);
- ``uneven`` / ``vignetting``: a smooth random multiplicative light field, radial fall-off;
- ``glare``: additive Gaussian specular patches on the board;
- ``defocus`` (disk kernel) / ``motion`` (line kernel) blur;
- ``distortion``: radial lens distortion (a remap; the labels go through the same map);
- ``shot`` / ``read``: Poisson-Gaussian sensor noise; ``jpeg``: JPEG re-encoding.

Every geometric change also maps the labels, so labels stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FAMILIES = ("levels", "occlusion", "light", "glare", "blur", "distortion", "noise", "jpeg")


@dataclass(frozen=True)
class PhotoConfig:
    """Ranges of the photographic effects (uniform draws; probabilities in [0, 1])."""

    ink: tuple[float, float] = (12.0, 50.0)  # printed black, gray levels
    paper: tuple[float, float] = (170.0, 290.0)  # paper white before saturation
    occlusion_p: float = 0.5
    uneven: float = 0.35  # amplitude of the smooth light field (multiplier 1 +- uneven)
    vignetting: tuple[float, float] = (0.0, 0.45)  # fall-off at the image corners
    glare_p: float = 0.5
    glare_gain: tuple[float, float] = (20.0, 140.0)  # peak gray levels added
    defocus_p: float = 0.3
    defocus_radius: tuple[float, float] = (1.0, 3.5)  # render px
    motion_p: float = 0.3
    motion_length: tuple[float, float] = (2.0, 8.0)  # render px
    distortion: float = 0.12  # |k1| (radius normalised by the half diagonal)
    shot: tuple[float, float] = (0.0, 0.6)  # variance gain: var = shot * level + read**2
    read: tuple[float, float] = (0.0, 3.0)
    jpeg_p: float = 0.7
    jpeg_quality: tuple[int, int] = (35, 95)

    def only(self, family: str) -> "PhotoConfig":
        """This config with every effect family but ``family`` switched off (``levels`` stays
        realistic, as printing is part of every photo); for tests and ablations."""
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        off = dict(occlusion_p=0.0, uneven=0.0, vignetting=(0.0, 0.0), glare_p=0.0, defocus_p=0.0, motion_p=0.0,
                   distortion=0.0, shot=(0.0, 0.0), read=(0.0, 0.0), jpeg_p=0.0)
        keep = {"levels": (), "occlusion": ("occlusion_p",), "light": ("uneven", "vignetting"),
                "glare": ("glare_p",), "blur": ("defocus_p", "motion_p"), "distortion": ("distortion",),
                "noise": ("shot", "read"), "jpeg": ("jpeg_p",)}[family]
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        fields.update({k: v for k, v in off.items() if k not in keep})
        return PhotoConfig(**fields)


def occluder(rng: np.random.Generator, board_outline: np.ndarray, corners: np.ndarray, square: float,
             shape: tuple[int, int], tries: int = 6) -> np.ndarray | None:
    """Mask (H, W) float32 of an arm reaching the board's edge from outside, or None when every try
    would cover an inner corner (kept clear by half a square) or miss the image."""
    h, w = shape
    centre = board_outline.mean(0)
    for _ in range(tries):
        i = rng.integers(len(board_outline))
        p = board_outline[i] + rng.uniform(0, 1) * (board_outline[(i + 1) % len(board_outline)] - board_outline[i])
        out = p - centre
        out /= max(np.linalg.norm(out), 1e-6)
        ang = np.arctan2(out[1], out[0]) + rng.uniform(-0.6, 0.6)
        d = np.array([np.cos(ang), np.sin(ang)])
        width = rng.uniform(0.6, 1.4) * square
        tip = p - d * rng.uniform(0.0, 0.4) * square
        mask = np.zeros((h, w), np.uint8)
        far = tip + d * 2.0 * (h + w)
        cv2.line(mask, tuple(np.int32(tip)), tuple(np.int32(far)), 1, max(int(width), 1), cv2.LINE_AA)
        cv2.ellipse(mask, tuple(np.int32(tip)), (max(int(0.8 * width), 1), max(int(0.55 * width), 1)),
                    float(np.degrees(ang)), 0, 360, 1, -1, cv2.LINE_AA)
        clear = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=max(int(0.5 * square), 1))
        xy = np.clip(np.rint(corners).astype(int), 0, [w - 1, h - 1])
        if mask.any() and not clear[xy[:, 1], xy[:, 0]].any():
            return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.0)
    return None


def light_field(rng: np.random.Generator, cfg: PhotoConfig, shape: tuple[int, int]) -> np.ndarray:
    """Multiplicative light (H, W): smooth random field times vignetting."""
    h, w = shape
    coarse = rng.uniform(-1, 1, (3, 4)).astype(np.float32)
    field = 1 + cfg.uneven * cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
    return field * (1 - rng.uniform(*cfg.vignetting) * r2)


def glare(rng: np.random.Generator, cfg: PhotoConfig, board_mask: np.ndarray, corners: np.ndarray,
          square: float) -> np.ndarray:
    """Additive specular patches (H, W) on the board (1-2 Gaussian blobs)."""
    h, w = board_mask.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(1, 3)):
        c = corners[rng.integers(len(corners))] + rng.normal(0, square, 2)
        s = rng.uniform(0.5, 2.5) * square
        out += rng.uniform(*cfg.glare_gain) * np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * s * s))
    return out * board_mask


def blur(rng: np.random.Generator, cfg: PhotoConfig, img: np.ndarray) -> np.ndarray:
    """Defocus (disk) and/or motion (line) blur."""
    if rng.random() < cfg.defocus_p:
        r = rng.uniform(*cfg.defocus_radius)
        n = 2 * int(np.ceil(r)) + 1
        yy, xx = np.mgrid[0:n, 0:n] - n // 2
        k = (xx**2 + yy**2 <= r * r).astype(np.float32)
        img = cv2.filter2D(img, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT)
    if rng.random() < cfg.motion_p:
        length = rng.uniform(*cfg.motion_length)
        n = 2 * int(np.ceil(length / 2)) + 1
        k = np.zeros((n, n), np.float32)
        ang = rng.uniform(0, np.pi)
        d = 0.5 * length * np.array([np.cos(ang), np.sin(ang)])
        c = np.array([n // 2, n // 2], np.float64)
        cv2.line(k, tuple(np.int32(np.rint(c - d))), tuple(np.int32(np.rint(c + d))), 1.0, 1, cv2.LINE_AA)
        img = cv2.filter2D(img, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT)
    return img


def distortion_maps(k1: float, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """remap() maps for radial distortion: output pixel d reads source c + (d - c)(1 + k1 |d - c|^2 / R^2)."""
    h, w = shape
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    r2max = c[0] ** 2 + c[1] ** 2
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    dx, dy = xx - c[0], yy - c[1]
    f = 1 + k1 * (dx * dx + dy * dy) / r2max
    return (c[0] + dx * f).astype(np.float32), (c[1] + dy * f).astype(np.float32)


def distort_points(points: np.ndarray, k1: float, shape: tuple[int, int]) -> np.ndarray:
    """Where source points land after :func:`distortion_maps` (inverse of the radial map, by fixed point)."""
    h, w = shape
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    r2max = c[0] ** 2 + c[1] ** 2
    p = np.asarray(points, np.float64) - c
    d = p.copy()
    for _ in range(50):
        d = p / (1 + k1 * (d**2).sum(-1, keepdims=True) / r2max)
    return d + c


def sensor_noise(rng: np.random.Generator, cfg: PhotoConfig, img: np.ndarray) -> np.ndarray:
    """Poisson-Gaussian noise on gray levels: variance shot * level + read^2."""
    var = rng.uniform(*cfg.shot) * np.clip(img, 0, None) + rng.uniform(*cfg.read) ** 2
    return img + rng.standard_normal(img.shape).astype(np.float32) * np.sqrt(var)


def jpeg(rng: np.random.Generator, cfg: PhotoConfig, img: np.ndarray) -> np.ndarray:
    """JPEG re-encoding of a float image in gray levels (returns float, clipped to 0..255)."""
    u8 = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if rng.random() >= cfg.jpeg_p:
        return u8.astype(np.float32)
    q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, q])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32)
