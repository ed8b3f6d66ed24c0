"""The README and docs/ stand alone: every link and every repository path they name is in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TOP = ("scripts/", "docs/", "src/", "tests/", "configs/", "pipelines/", "models/", ".ci/")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
CODE = re.compile(r"`([^`\s]+)`")


def _named_paths(doc: Path) -> list[str]:
    text = doc.read_text(encoding="utf-8")
    links = [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]
    code = [t for t in CODE.findall(text) if t.startswith(TOP) and not re.search(r"[<>{}*$]|\.\.\.", t)]
    return links + code


@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(REPO).as_posix() for d in DOCS])
def test_every_path_a_doc_names_is_in_the_repository(doc: Path) -> None:
    named = _named_paths(doc)
    base = doc.parent if doc.parent != REPO else REPO
    missing = [p for p in named if not ((base / p).exists() or (REPO / p).exists())]
    assert not missing, f"{doc.name} names paths that are not in the repository: {missing}"
    outside = [p for p in named if (base / p).resolve().is_relative_to(REPO) is False]
    assert not outside, f"{doc.name} points outside the repository: {outside}"


@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(REPO).as_posix() for d in DOCS])
def test_no_doc_sends_the_reader_to_notes_they_do_not_have(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8").lower()
    for phrase in ("../shared", "shared/design.md", "stack-notes", "issue notes", "the issue's notes"):
        assert phrase not in text, f"{doc.name} mentions {phrase!r}"
