"""Paired comparison pooled over seeds: several ``tradeoff`` results.json files (e.g. one per seed),
each with the same row order and certified on the same keypoints. Row i of every file is compared
with row 0 of the same file: the per-keypoint outcomes (``cert_correct@ε``) of all files are
concatenated row by row and compared as one run (:func:`usn_robust_keypoints.tradeoff.paired_lines`).
Prints the lines.

    .venv/bin/python scripts/pooled_paired.py results/pruning_3seed_paired/seed*/results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from usn_robust_keypoints.tradeoff import TradeoffConfig, paired_lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="tradeoff results.json files, same row order")
    args = ap.parse_args()
    docs = [json.loads(Path(f).read_text()) for f in args.files]
    eps = tuple(docs[0]["config"]["eps"])
    n_rows = len(docs[0]["rows"])
    if any(len(d["rows"]) != n_rows or tuple(d["config"]["eps"]) != eps for d in docs):
        raise SystemExit("every file needs the same rows and the same ε")
    pooled = [{"model": docs[0]["rows"][i]["model"],
               **{f"cert_correct@{e:g}": [x for d in docs for x in d["rows"][i][f"cert_correct@{e:g}"]] for e in eps}}
              for i in range(n_rows)]
    print(f"Pooled over {len(docs)} files (labels of the first).")
    print("\n".join(paired_lines(pooled, TradeoffConfig(eps=eps))))


if __name__ == "__main__":
    main()
