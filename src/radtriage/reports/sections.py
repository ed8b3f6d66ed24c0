"""A stored report's sections in the order they are sent: each signed language's sections (every drafted
language for a preliminary send), then each addendum with who signed it and when."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from radtriage.reports import SECTIONS

Section = tuple[str, str, str, str]  # language, section, heading, text


def body_of(language: Mapping[str, Any] | None) -> tuple[dict[str, str], dict[str, str]]:
    """A language's ``(sections, headings)`` in a report's body."""
    language = language or {}
    return dict(language.get("sections") or {}), dict(language.get("headings") or {})


def exported_sections(report: Mapping[str, Any], status: str) -> list[Section]:
    body = report["body"]
    languages = list(report["languages"]) if status != "preliminary" else list(body)
    out: list[Section] = []
    for lang in languages:
        sections, headings = body_of(body.get(lang))
        out += [(lang, s, headings.get(s, s), sections[s].strip()) for s in SECTIONS if (sections.get(s) or "").strip()]
    if status != "preliminary":
        for a in report.get("addenda", []):
            _, headings = body_of(body.get(a["language"]))
            when = a["signed_at"].strftime("%Y-%m-%d %H:%M UTC")
            out.append((a["language"], "addendum", headings.get("addendum", "Addendum"),
                        f"{a['text'].strip()}\n({a['signed_by']}, {when})"))
    return out
