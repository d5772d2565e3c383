"""The README and the manual under docs/: the README stays short, and every relative link resolves.

A link is Markdown's ``[text](target)`` outside code; a relative target must name a file or folder of
the repository, and its ``#anchor``, where it has one, a heading of the Markdown file it points to
(GitHub's heading ids).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "study" / "README.md"]
README_MAX_LINES = 200
TEST_COMMAND = "pip install torch==2.13.0 && pip install -e '.[test]' && python -m pytest"

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def links(path: Path) -> list[str]:
    """The targets of the Markdown links in the prose of ``path``."""
    return LINK.findall(prose(path.read_text()))


def anchors(path: Path) -> set[str]:
    """The heading ids GitHub gives the headings of a Markdown file: lower case, punctuation dropped,
    spaces as hyphens, ``-1``, ``-2``, ... after repeats."""
    seen: dict[str, int] = {}
    ids = set()
    for title in HEADING.findall(FENCE.sub("", path.read_text())):
        slug = re.sub(r"[^\w\- ]", "", title.replace("`", "").strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.add(slug if count == 0 else f"{slug}-{count}")
    return ids


def test_the_heading_ids_are_githubs(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Findings of the study\n## Committed results: `study/<sweep>/`\n## A, b\n## A, b\n"
                    "```\n# a comment, not a heading\n```\n")
    assert anchors(page) == {"findings-of-the-study", "committed-results-studysweep", "a-b", "a-b-1"}


def test_links_skip_code() -> None:
    assert LINK.findall(prose("[a](b.md) `[c](d.md)`\n```\n[e](f.md)\n```\n[g](h.md#i)")) == ["b.md", "h.md#i"]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(document: Path) -> None:
    broken = []
    for target in links(document):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not a file of the repository
            continue
        file, _, anchor = target.partition("#")
        resolved = (document.parent / file).resolve() if file else document
        if not resolved.exists() or not resolved.is_relative_to(ROOT):
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert not broken, broken


def test_the_readme_is_short_and_opens_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    blocks = re.findall(r"^```bash\n(.*?)```", text, re.S | re.M)
    run, tests = blocks[0].strip(), blocks[1].strip()
    assert run.endswith("pip install -e . && snakemake --cores all")
    assert tests.endswith(TEST_COMMAND)
    assert text.index(blocks[1]) < text.index("\n## ")  # both before the first section
    assert TEST_COMMAND in (ROOT / ".ci" / "run").read_text()


def test_every_document_of_docs_is_linked_from_the_readme() -> None:
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(ROOT / "README.md")}
    assert set((ROOT / "docs").glob("*.md")) <= linked
