"""Every relative link of README.md and docs/*.md leads somewhere.

A link to a file must name a file of the checkout; a link with ``#anchor`` to a
Markdown page must name one of that page's headings, as GitHub turns a heading into an
anchor (lower case, punctuation dropped, spaces to hyphens, ``-1``, ``-2`` for repeats),
or an explicit ``<a id="...">``. Links inside code (fenced blocks, inline spans) are
text, not links, and are left alone; so are links with a scheme (``https:``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCED = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\]\(([^()\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
EXPLICIT = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def prose(text: str) -> str:
    """``text`` without its fenced code blocks."""
    return FENCED.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    heading = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return heading.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors a link may name on ``page``."""
    text = prose(page.read_text(encoding="utf-8"))
    found, seen = set(), {}
    for match in HEADING.finditer(text):
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    found.update(EXPLICIT.findall(text))
    return found


def broken_links(page: Path) -> list[str]:
    """``page``'s relative links whose file or anchor does not exist."""
    text = INLINE_CODE.sub("", prose(page.read_text(encoding="utf-8")))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[A-Za-z][\w+.-]*:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target} (no file {os.path.relpath(linked, ROOT)})")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no heading #{anchor} in {linked.name})")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(page):
    assert broken_links(page) == [], f"{page.relative_to(ROOT)}: broken links"


def test_the_checker_finds_broken_files_and_anchors(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## State: safe by default (`reset`)\n")
    page.write_text(
        "# Top\n\n## Top\n\n[ok](other.md#state-safe-by-default-reset) [self](#top-1)\n"
        "[bad file](missing.md) [bad anchor](other.md#state) [web](https://x.org/a#b)\n"
        "`[in code](missing.md)`\n\n```\n[in a block](missing.md)\n```\n"
    )
    found = broken_links(page)
    assert len(found) == 2
    assert found[0].startswith("missing.md (no file") and "no heading #state in" in found[1]
