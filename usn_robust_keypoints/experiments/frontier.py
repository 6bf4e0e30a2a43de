"""One picture of the accuracy / certification trade-off of every certifiably trained model.

Reads ``tradeoff`` results (``results.json``, same frames and ε columns, decided without a time
budget), keeps each checkpoint once (its first row; the certified outcomes of a checkpoint do not
depend on the run), and writes a markdown table and a plot of real PCK (``left*``) against
certified accuracy at each ε, numbered like the table, with the issue's targets as dashed lines.

    usn-keypoints frontier RESULTS.json [...] --out results/certifiability_subbox/frontier
"""

from __future__ import annotations

import json
from pathlib import Path

REAL_PCK_TARGET = 0.75
CERT_TARGET = 0.8


def load_rows(files: list[str]) -> tuple[list[dict], tuple[float, ...], int]:
    """Rows of ``files``, one per checkpoint path; raises on mixed frames or ε columns."""
    rows, seen, eps, frames = [], set(), None, None
    for f in files:
        d = json.loads(Path(f).read_text())
        c = d["config"]
        if c.get("thorough") or (c.get("budget_ms") is not None and c["budget_ms"] < 1e8):
            raise ValueError(f"{f}: needs results decided without a time budget and without --thorough")
        if eps is None:
            eps, frames = tuple(c["eps"]), c["frames"]
        elif (tuple(c["eps"]), c["frames"]) != (eps, frames):
            raise ValueError(f"{f}: other frames or ε columns than {files[0]}")
        for r in d["rows"]:
            if r["path"] not in seen:
                seen.add(r["path"])
                if "/weights/" in r["path"]:  # a shipped model: its file name (run labels go stale)
                    r = {**r, "model": f"shipped {Path(r['path']).stem}"}
                rows.append(r)
    return rows, eps, frames


def write_frontier(results: list[str], out: str | Path) -> str:
    """Write ``frontier.md`` and ``frontier.png`` of the ``tradeoff`` files ``results`` to ``out``;
    returns the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, eps, frames = load_rows(results)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["| # | model | checkpoint | PCK@3px synthetic | PCK@3px real left | "
             + " | ".join(f"cert. acc. ε={e:g}" for e in eps) + " |", "|---" * (5 + len(eps)) + "|"]
    for i, r in enumerate(rows, 1):
        lines.append(f"| {i} | {r['model']} | `{r['path']}` | {r['pck_synthetic']:.3f} | {r['pck_real_left']:.3f} | "
                     + " | ".join(f"{r[f'cert_acc@{e:g}']:.3f}" for e in eps) + " |")
    head = (f"Every checkpoint of the inputs once; certified accuracy on the first {frames} synthetic test frames "
            f"({4 * frames} keypoints), no time budget; real PCK on the 52 `left*` keypoints.\n\n")
    (out / "frontier.md").write_text(head + "\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, len(eps), figsize=(4.4 * len(eps), 4.0), squeeze=False)
    for ax, e in zip(axes[0], eps):
        xs = [r[f"cert_acc@{e:g}"] for r in rows]
        ys = [r["pck_real_left"] for r in rows]
        ax.scatter(xs, ys, s=18)
        for i, (x, y) in enumerate(zip(xs, ys), 1):
            ax.annotate(str(i), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.axhline(REAL_PCK_TARGET, ls="--", color="gray", lw=0.8)
        ax.axvline(CERT_TARGET, ls="--", color="gray", lw=0.8)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(0.2, 1.0)
        ax.set_xlabel(f"certified accuracy, α=β={e:g}")
        ax.set_ylabel("PCK@3px, real left")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "frontier.png", dpi=120)
    plt.close(fig)
    return head + "\n".join(lines)
