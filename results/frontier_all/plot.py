"""Every model measured on the real left* photos with the branch-and-bound engine and CPU-time budgets, on one
frontier: real PCK@3px against the share certified at ±0.02 within 120 ms (the node's budget) and within 1 s.
A model measured in several runs (the default is in most) is one point: the mean of its runs (their range in the
table). Reads the results.json files of the studies below; writes results.md and frontier.png next to this file.
usage: python results/frontier_all/plot.py   (docs/training.md, "The frontier on the real photos")"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STUDIES = {  # results.json -> study label
    "results/models_real/bab_engine_cpuclock/results.json": "photo scenes (κ 0.3–0.6)",
    "results/models_node/results.json": "node property, 600 steps",
    "results/models_node_long/results.json": "node property, 1000 steps",
    "results/models_node_long/continued/results.json": "node property, 1000 steps",
    "results/models_node_long/seeds/results.json": "node property, 1000 steps",
    "results/models_node_long/k0.25_d3/results.json": "node property, 1000 steps",
    "results/models_node_long/first_tiles/results.json": "node property, 1000 steps",
    "results/architecture/all/results.json": "architectures from scratch",
    "results/architecture/round5_stride4_chain/results.json": "architectures from scratch",
    "results/architecture/round6_stride4_longer/results.json": "architectures from scratch",
    "results/shallow_chain/w24/results.json": "4-block chain",
    "results/shallow_chain/w32/results.json": "4-block chain",
    "results/architecture/round7_input160/results.json": "architectures from scratch",
    "results/architecture/round8_input160_node/results.json": "architectures from scratch",
    "results/architecture/round9_input160_k1/results.json": "architectures from scratch",
    "results/architecture/round9_input160_k0.3/results.json": "architectures from scratch",
    "results/frontier_120ms/strict/results.json": "κ 1 chains from the default",
}
KEYS = ("0.02@120", "0.02@1000")
SHIPPED = "usn_robust_keypoints/weights"
DEFAULT = "chessboard_usn_node"
HERE = Path(__file__).parent


def _key(root: Path, row: dict) -> tuple:
    """A checkpoint by content (its file's hash, as the same file can be shipped under two names) and by
    its real PCK (a shipped name has held other models over time)."""
    f = root / row["path"]
    ident = hashlib.sha1(f.read_bytes()).hexdigest() if f.is_file() else row["path"]
    return ident, round(row["pck_real_left"], 4)


def collect(root: Path) -> list[dict]:
    """One record per checkpoint: label, study, PCK and the certified rates of every run."""
    recs: dict[tuple, dict] = {}
    default = hashlib.sha1((root / SHIPPED / f"{DEFAULT}.safetensors").read_bytes()).hexdigest()
    for f, study in STUDIES.items():
        for row in json.loads((root / f).read_text())["rows"]:
            key = _key(root, row)
            label = row["model"].removeprefix("default ")  # "default" of its time
            rec = recs.setdefault(key, {"label": label, "study": study, "pck": row["pck_real_left"],
                                        "runs": defaultdict(list)})
            if key[0] == default:
                rec["label"] = f"{DEFAULT} (the default)"
            for k in KEYS:
                rec["runs"][k].append(row["cert"][k]["rate"])
    return list(recs.values())


def mean(v: list[float]) -> float:
    return sum(v) / len(v)


def main() -> None:
    root = HERE.parents[1]
    recs = sorted(collect(root), key=lambda r: -r["pck"])
    lines = ["Real `left*` photos (52 keypoints), ±0.02, r = 4 frame px, native `certify()`, CPU-time budgets, one "
             "thread; a model measured in several runs: mean (range). Target region: PCK ≥ 0.85 and ≥ 0.70 "
             "certified within 120 ms. Runs before 2026-12-02 (all but the κ 1 chains' and the 160×120 "
             "rounds) counted keypoints proven by a first round that overran the budget.", "",
             "| # | model | study | real PCK@3px | certified, 120 ms | 1 s | runs |", "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(recs, 1):
        cells = []
        for k in KEYS:
            v = r["runs"][k]
            cells.append(f"{mean(v):.3f}" + (f" ({min(v):.3f}–{max(v):.3f})" if max(v) > min(v) else ""))
        lines.append(f"| {i} | {r['label']} | {r['study']} | {r['pck']:.3f} | {cells[0]} | {cells[1]} | {len(r['runs'][KEYS[0]])} |")
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    studies = list(dict.fromkeys(STUDIES.values()))
    colours = dict(zip(studies, plt.cm.tab10.colors))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), sharey=True)
    for ax, k, title in zip(axes, KEYS, ("within 120 ms (the node's budget)", "within 1 s")):
        for i, r in enumerate(recs, 1):
            ax.scatter(mean(r["runs"][k]), r["pck"], color=colours[r["study"]], s=28)
            ax.annotate(str(i), (mean(r["runs"][k]), r["pck"]), fontsize=7, xytext=(3, 2), textcoords="offset points")
        ax.axhline(0.85, ls="--", c="gray", lw=0.8)
        ax.axvline(0.70, ls="--", c="gray", lw=0.8)
        ax.fill_between([0.70, 1.02], 0.85, 1.0, color="green", alpha=0.08)
        ax.set(xlim=(-0.02, 1.02), ylim=(0.3, 0.92), xlabel="real left* certified rate, ±0.02", title=title)
    axes[0].set_ylabel("real left* PCK@3px")
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[s], label=s) for s in studies]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(HERE / "frontier.png", dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
