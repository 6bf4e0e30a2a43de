"""Width of the first round's forward bound at each keypoint's peak cell (max over the first tiles), ±0.02, the
default model, on the 13 real left* photos: as is, with the input capped at 0.95 (no pixel near the clip's upper
kink) and with levels 0.95..1 moved to 1 (saturated). Diagnosis only (the capped inputs are not the photos).
usage: python results/bright_levels/peak_width.py [MODEL]   (results/bright_levels/README.md)"""
import torch, sys
torch.set_num_threads(1)
from usn_robust_keypoints.experiments.real_frontier import labelled_left_photos
from usn_robust_keypoints.model import load_model
from usn_robust_keypoints.certify.native import frame_context, _search_coords
from usn_robust_keypoints.certify.bounds import propagate, input_clamp, concrete_min, concrete_max
eps = 0.02
m = load_model(sys.argv[1] if len(sys.argv) > 1 else "usn_robust_keypoints/weights/chessboard_usn_node.safetensors")
imgs, _, _ = labelled_left_photos()
def peak_lb(x0, geo):
    ctx = frame_context(m.detector, x0, geo)
    box = (1 - eps, 1 + eps, -eps, eps)
    coords = _search_coords(ctx.x0, input_clamp(ctx.plan.layers)[0], box)
    tiles = coords.maps(coords.clip(coords.initial())).to(x0.dtype)
    with torch.no_grad():
        f = propagate(ctx.plan.layers, x0, tiles)
    lo = concrete_min(f.lower).flatten(2); hi = concrete_max(f.upper).flatten(2)
    out = []
    for k in range(4):
        p = int(ctx.cells[k, 0] * ctx.heatmap_size[1] + ctx.cells[k, 1])
        out.append(round(float((hi[:, k, p] - lo[:, k, p]).max()), 2))
    return out
for i, im in enumerate(imgs):
    x0, geo = m.preprocess(im)
    a = peak_lb(x0, geo)
    b = peak_lb(x0.clamp(max=0.95), geo)
    c = peak_lb(torch.where((x0 >= 0.95) & (x0 < 1), torch.full_like(x0, 1.0), x0), geo)
    print(i, "peak width: as is", a, " x0<=0.95", b, " near-sat -> 1", c)
