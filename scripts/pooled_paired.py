"""Paired comparison pooled over seeds: several ``tradeoff`` results.json files (e.g. one per seed),
each with the same row order and certified on the same keypoints. Row i of every file is compared
with row 0 of the same file; the per-keypoint outcomes (``cert_correct@ε``) of all files are
concatenated and tested together (exact McNemar, :func:`usn_robust_keypoints.evaluate.paired_test`).
Prints a markdown table.

    .venv/bin/python scripts/pooled_paired.py results/pruning_3seed_paired/seed*/results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from usn_robust_keypoints.evaluate import paired_test


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="tradeoff results.json files, same row order")
    args = ap.parse_args()
    docs = [json.loads(Path(f).read_text()) for f in args.files]
    eps = docs[0]["config"]["eps"]
    n_rows = len(docs[0]["rows"])
    if any(len(d["rows"]) != n_rows or d["config"]["eps"] != eps for d in docs):
        raise SystemExit("every file needs the same rows and the same ε")
    head = ["row (first file's label)", "against"] + [f"ε={e:g}: only row / only first row (p)" for e in eps]
    lines = [f"Pooled over {len(docs)} files.", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i in range(1, n_rows):
        cells = []
        for e in eps:
            a, b = [], []
            for d in docs:
                a += d["rows"][i][f"cert_correct@{e:g}"]
                b += d["rows"][0][f"cert_correct@{e:g}"]
            only_a, only_b, p = paired_test(a, b)
            cells.append(f"+{only_a} / −{only_b} ({p:.2g})")
        lines.append(f"| {docs[0]['rows'][i]['model']} | {docs[0]['rows'][0]['model']} | " + " | ".join(cells) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
