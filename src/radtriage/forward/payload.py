"""An edge's AI result on its way to a radtriage hub: the body of ``POST /api/v1/forward/results``.

The edge builds it (`body_of`) from a result row in the transaction that records the result; the hub
validates it strictly (`EdgeResult`: known fields only, sizes capped, UIDs checked) and keeps it once per
``(site, result_id)``. A finding's key image is a file at the edge: it stays there (the hub shows the
finding's words). `said` is how the hub names an edge result wherever it shows one:
"AI at <site> (edge), <pipeline> <version>, <state>: <findings>".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from radtriage.config.forward import SITE_PATTERN
from radtriage.domain import Priority

UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"
Uid = Annotated[str, StringConstraints(pattern=UID_PATTERN, max_length=64)]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_:.+-]{1,64}$")]  # codes, score and label names
Version = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.+-]{1,32}$")]
Text = Annotated[str, StringConstraints(max_length=500)]


def _few(limit: int):
    def check(value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > limit:
            raise ValueError(f"at most {limit} entries")
        return value
    return AfterValidator(check)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EdgeFinding(_Strict):
    code: Name
    text: Text
    probability: float | None = Field(default=None, ge=0.0, le=1.0)
    measurements: Annotated[dict[Name, float], _few(32)] = {}


class EdgeTaskResult(_Strict):
    """`radtriage.domain.TaskResult` as it travels: without key images, within the hub's limits."""

    task: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    model_id: Name
    model_version: Version
    pipeline_version: Version
    positive: bool
    scores: Annotated[dict[Name, float], _few(64)] = {}
    labels: Annotated[dict[Name, Annotated[str, StringConstraints(max_length=64)]], _few(64)] = {}
    findings: list[EdgeFinding] = Field(default=[], max_length=64)
    timings_ms: Annotated[dict[Name, float], _few(32)] = {}
    provider: Annotated[str, StringConstraints(max_length=64)] | None = None


class EdgeResult(_Strict):
    """One result an edge recorded: where, what ran, in which governance state there, and what it found."""

    site: Annotated[str, StringConstraints(pattern=SITE_PATTERN)]
    result_id: int = Field(ge=1)  # the edge's own result id: with the site, what makes a delivery the same
    study_uid: Uid
    series_uid: Uid
    pipeline_id: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    pipeline_version: Version
    state: Literal["live", "shadow"]  # the pipeline's state at the edge when it ran (never suspended: not run)
    priority: Priority  # what the edge's own rules made of it
    recorded_at: AwareDatetime
    result: EdgeTaskResult

    @model_validator(mode="after")
    def _one_pipeline_version(self) -> "EdgeResult":
        if self.result.pipeline_version != self.pipeline_version:
            raise ValueError("result.pipeline_version differs from pipeline_version")
        return self


def body_of(site: str, row: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The body for one recorded result row (`radtriage.db.ledger.record_results`' ``recorded``), as JSON
    values: the key images' paths (files at the edge) left out."""
    result = dict(row["result"])
    result["findings"] = [{k: v for k, v in f.items() if k != "key_image"} for f in result.get("findings", [])]
    return {"site": site, "result_id": int(row["id"]), "study_uid": row["study_uid"], "series_uid": row["series_uid"],
            "pipeline_id": row["pipeline_id"], "pipeline_version": row["pipeline_version"], "state": row["state"],
            "priority": row["priority"], "recorded_at": now.isoformat(), "result": result}


def said(edge: Mapping[str, Any]) -> str:
    """An edge result (a body or a kept row: site, pipeline_id, pipeline_version, state, result) in words:
    "AI at kwc (edge), stroke_ich 1.2.0, live: Intracranial haemorrhage (p 0.91)"."""
    result = edge["result"]
    words = [f["text"] + (f" (p {f['probability']:.2f})" if f.get("probability") is not None else "")
             for f in result.get("findings", [])]
    found = "; ".join(words) or ("positive, no finding named" if result.get("positive") else "nothing found")
    return f"AI at {edge['site']} (edge), {edge['pipeline_id']} {edge['pipeline_version']}, {edge['state']}: {found}"
