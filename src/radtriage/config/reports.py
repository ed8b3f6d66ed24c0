"""Report drafting (`radtriage.reports`): where a site's own templates are, and whether drafts may leave."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict


class ReportSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A folder laid out like radtriage/reports/templates (<language>/report.j2, <language>/<task>.j2,
    # <language>/language.yaml, glossary.yaml): a file there replaces the shipped one of the same name, a new
    # language or task is added. Every template is rendered against sample data at start-up.
    templates_dir: Path | None = None
    # Off: a draft never leaves radtriage. On: a radiologist may send a draft, as preliminary (OBX-11 P,
    # DiagnosticReport preliminary, an unverified SR). A signed report is always sent as final.
    send_drafts: bool = False
