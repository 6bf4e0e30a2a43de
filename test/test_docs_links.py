"""The user documentation's relative links resolve: every markdown link or image in README.md,
CHANGELOG.md and docs/*.md points to a file or folder of the repository, and every ``#anchor``
into a markdown file names one of its headings. Also: nothing cites a method file the project
does not have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def _prose_lines(path: Path) -> list[str]:
    """Lines outside fenced code blocks, with inline code removed."""
    out, in_code = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_code = not in_code
            continue
        if not in_code:
            out.append(re.sub(r"`[^`]*`", "", line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces -> hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip()).lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return "".join(c for c in text if c.isalnum() or c in "-_ ").replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_code = not in_code
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_code or not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[str]:
    return [m.group(1) for line in _prose_lines(path) for m in LINK.finditer(line)]


def test_slug_matches_github() -> None:
    assert slug("Nodes, topics and messages") == "nodes-topics-and-messages"
    assert slug("Certifying at ±0.1") == "certifying-at-01"
    assert slug("`certify()` API") == "certify-api"


def test_link_parser_finds_links_and_skips_code(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    md.write_text("see [a](a.md) and ![p](img/p.png) `[not](code.md)`\n```\n[nor](this.md)\n```\n")
    assert links(md) == ["a.md", "img/p.png"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    assert doc.is_file(), f"{doc} is missing"
    broken = []
    for target in links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = doc if not file_part else (doc.parent / file_part).resolve()
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def cited_results(path: Path) -> list[str]:
    """``results/...`` paths cited in backticks in the prose of ``path`` (no globs, variables or
    ``<placeholders>``)."""
    return [m.group(1) for line in _raw_prose_lines(path) for span in re.findall(r"`([^`]+)`", line)
            if (m := re.match(r"^(results/[^\s*${}<>]+?)[.,]?$", span))]


def _raw_prose_lines(path: Path) -> list[str]:
    out, in_code = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_code = not in_code
        elif not in_code:
            out.append(line)
    return out


def test_cited_results_parser(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    md.write_text("in `results/a/b.md`, `results/x/*.json`, `results/<name>/`\n```\n`results/c`\n```\n")
    assert cited_results(md) == ["results/a/b.md"]


def test_cited_results_exist() -> None:
    """Every ``results/...`` path the prose cites exists (outputs that commands write on demand,
    such as the demo's, excepted): moving a result to results/archive/ must update its citations."""
    on_demand = ("results/demo/", "results/gpu/")  # written by ./scripts/demo.sh, scripts/gpu_check.sh
    missing = [f"{doc.relative_to(ROOT)}: {p}" for doc in DOCS for p in cited_results(doc)
               if not p.startswith(on_demand) and not (ROOT / p).exists()]
    assert not missing, f"cited results that do not exist: {missing}"


def test_every_doc_is_linked_from_readme() -> None:
    readme = set(links(ROOT / "README.md"))
    missing = [p.relative_to(ROOT).as_posix() for p in DOCS[2:] if p.relative_to(ROOT).as_posix() not in readme]
    assert not missing, f"docs not linked from README.md: {missing}"


def test_no_reference_to_missing_method_notes() -> None:
    """The method is defined in docs/method.md by heading; nobody cites numbered sections of a
    method file or "method notes" that the project does not contain."""
    pattern = re.compile(r"method\.md\s*§|method notes")
    files = [*DOCS, *(ROOT / "usn_robust_keypoints").rglob("*.py"), *(ROOT / "scripts").glob("*"),
             *(ROOT / "test").glob("*.py")]
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in files if p.is_file() and p.name != Path(__file__).name
            for i, line in enumerate(p.read_text(encoding="utf-8", errors="ignore").splitlines(), 1)
            if pattern.search(line)]
    assert not hits, f"references to a method file the project does not have: {hits}"
