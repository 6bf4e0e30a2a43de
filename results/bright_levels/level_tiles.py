"""Forward bounds on the bright frames' w > 0 tile cut at both ends of every gray level's kink strip: the width of
each sub-tile's bound at the peak cell (k = 0 and 3). usage: python results/bright_levels/level_tiles.py 0.02"""
import sys
from pathlib import Path

import torch

from usn_robust_keypoints.experiments.real_frontier import labelled_left_photos
from usn_robust_keypoints.model import load_model
from usn_robust_keypoints.certify.native import frame_context, _search_coords

sys.path.insert(0, str(Path(__file__).parent))
from peak_width import peak_widths  # noqa: E402

torch.set_num_threads(1)
eps = float(sys.argv[1])
m = load_model("usn_robust_keypoints/weights/chessboard_usn_node.safetensors")
imgs, _, _ = labelled_left_photos()
for fi in [2, 3, 4, 7]:
    x0, geo = m.preprocess(imgs[fi])
    lv = (x0 * 255).round().flatten().long()
    hist = torch.bincount(lv, minlength=256)
    print("frame", fi, "levels 240..255:", hist[240:].tolist())
    ctx = frame_context(m.detector, x0, geo)
    box = (1 - eps, 1 + eps, -eps, eps)
    coords = _search_coords(ctx.x0, 0.0, box)
    w0, w1, b0, b1 = coords.root.tolist()
    # cut points: strips of levels whose kink (w = (1-x)(1-b)/x) lies in (0, w1)
    cuts = [0.0]
    for v in range(254, 0, -1):
        x = v / 255
        lo, hi = (1 - x) * (1 - b1) / x, (1 - x) * (1 - b0) / x
        if lo >= w1: break
        cuts += [lo, min(hi, w1)]
    cuts.append(w1)
    cuts = sorted(set(cuts))
    tiles_p = torch.tensor([[w0, 0.0, b0, b1]] + [[a, b, b0, b1] for a, b in zip(cuts[:-1], cuts[1:]) if b > a], dtype=torch.float64)
    tiles = coords.maps(coords.clip(tiles_p)).to(x0.dtype)
    ws = peak_widths(ctx, x0, tiles).T.tolist()
    ws = [[round(v, 2) for v in w] for w in ws]
    print(" tiles", len(tiles_p), "w-cuts", [round(c, 4) for c in cuts[:8]], "...")
    print(" peak widths per tile (k=0):", ws[0])
    print(" peak widths per tile (k=3):", ws[3])
