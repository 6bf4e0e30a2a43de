"""End to end: certified share of the 52 real left* keypoints within CPU-time marks, with the first tiles also cut
around the kink strips of levels held by >= N pixels (native.LEVEL_PIXELS; 0 = the engine as shipped).
Needs the experiment commit that has native.LEVEL_PIXELS (results/bright_levels/README.md).
usage: python results/bright_levels/level_cuts.py EPS CAP_S N1,N2,... [MODEL]"""
import time, torch, sys
torch.set_num_threads(1)
from usn_robust_keypoints.experiments.real_frontier import labelled_left_photos
from usn_robust_keypoints.model import load_model
from usn_robust_keypoints.certify import native
from usn_robust_keypoints.certify.native import frame_context, search
native.clock = time.thread_time
if not hasattr(native, "LEVEL_PIXELS"):
    raise SystemExit("native.LEVEL_PIXELS is not in this engine: check out the commit named in results/bright_levels/README.md")
eps = float(sys.argv[1]); cap = float(sys.argv[2]); settings = [int(v) for v in sys.argv[3].split(",")]
path = sys.argv[4] if len(sys.argv) > 4 else "usn_robust_keypoints/weights/chessboard_usn_node.safetensors"
imgs, _, _ = labelled_left_photos()
m = load_model(path)
marks = [0.12, 0.25, 0.5, 1.0, 3.0, 10.0, 30.0]
for n in settings:
    native.LEVEL_PIXELS = n
    got = {t: 0 for t in marks}; tot = 0.0; ref = 0
    for im in imgs:
        t0 = time.thread_time()
        x0, geo = m.preprocess(im)
        ctx = frame_context(m.detector, x0, geo)
        res = search(ctx, (1 - eps, 1 + eps, -eps, eps), 4.0, deadline=t0 + cap)
        tot += time.thread_time() - t0
        for r in res.values():
            ref += r.state == "refuted"
            if r.state == "proven":
                for t in marks:
                    got[t] += (r.decided_at - t0) <= t
    print(f"eps {eps} LEVEL_PIXELS {n}: certified within", {t: round(v / 52, 3) for t, v in got.items() if t <= cap}, "refuted", ref, f"s/frame {tot/13:.2f}", flush=True)
