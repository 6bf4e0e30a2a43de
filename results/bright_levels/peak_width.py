"""Width of the first round's forward bound at each keypoint's peak cell (max over the first tiles), ±0.02, the
default model, on the 13 real left* photos: as is, with the input capped at 0.95 (no pixel near the clip's upper
kink) and with levels 0.95..1 moved to 1 (saturated). Diagnosis only (the capped inputs are not the photos).
usage: python results/bright_levels/peak_width.py [MODEL]   (results/bright_levels/README.md)"""
import sys

import torch

from usn_robust_keypoints.certify.bounds import concrete_max, concrete_min, input_clamp, propagate
from usn_robust_keypoints.certify.native import _search_coords, frame_context


def peak_widths(ctx, x0: torch.Tensor, tiles: torch.Tensor) -> torch.Tensor:
    """Width (T, K) of the forward bound at each keypoint's nominal peak cell on each tile (θ maps)."""
    with torch.no_grad():
        f = propagate(ctx.plan.layers, x0, tiles)
    lo, hi = concrete_min(f.lower).flatten(2), concrete_max(f.upper).flatten(2)
    p = torch.as_tensor(ctx.cells[:, 0] * ctx.heatmap_size[1] + ctx.cells[:, 1]).view(1, -1, 1).expand(len(tiles), -1, 1)
    return (hi.gather(2, p) - lo.gather(2, p)).squeeze(2)


def first_tiles_width(model, x0: torch.Tensor, geo, eps: float = 0.02) -> list[float]:
    """Per keypoint: the widest peak-cell bound over the search's first tiles."""
    ctx = frame_context(model.detector, x0, geo)
    box = (1 - eps, 1 + eps, -eps, eps)
    coords = _search_coords(ctx.x0, input_clamp(ctx.plan.layers)[0], box)
    tiles = coords.maps(coords.clip(coords.initial())).to(x0.dtype)
    return [round(float(v), 2) for v in peak_widths(ctx, x0, tiles).amax(0)]


if __name__ == "__main__":
    from usn_robust_keypoints.experiments.real_frontier import labelled_left_photos
    from usn_robust_keypoints.model import load_model

    torch.set_num_threads(1)
    m = load_model(sys.argv[1] if len(sys.argv) > 1 else "usn_robust_keypoints/weights/chessboard_usn_node.safetensors")
    imgs, _, _ = labelled_left_photos()
    for i, im in enumerate(imgs):
        x0, geo = m.preprocess(im)
        a = first_tiles_width(m, x0, geo)
        b = first_tiles_width(m, x0.clamp(max=0.95), geo)
        c = first_tiles_width(m, torch.where((x0 >= 0.95) & (x0 < 1), torch.full_like(x0, 1.0), x0), geo)
        print(i, "peak width: as is", a, " x0<=0.95", b, " near-sat -> 1", c)
