"""`TriageCase`, the one type that travels (DESIGN.md section 4).

One `TriageCase` per assembled series. It carries identifiers, a small header
of DICOM keywords needed for routing and display, and where the instances are.
Pixel data never rides inside it. It is written into its job's row in the
ledger (`radtriage.db.ledger`), and the job row is what travels from there:
its state, attempts and `TaskResult` rows.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    """The domain's values are immutable once made."""

    model_config = ConfigDict(frozen=True)



class Priority(str, enum.Enum):
    """Worklist priority of a study."""

    STAT = "STAT"
    URGENT = "URGENT"
    ROUTINE = "ROUTINE"
    PENDING_AI = "PENDING_AI"


class Finding(Frozen):
    """One thing a model found, said in words and numbers."""


    code: str
    text: str
    probability: float | None = None
    measurements: dict[str, float] = Field(default_factory=dict)
    key_image: str | None = None


class TaskResult(Frozen):
    """The result of one task pipeline on one case."""


    task: str
    model_id: str
    model_version: str
    pipeline_version: str
    positive: bool
    scores: dict[str, float] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)  # categorical outputs: subtype, side, Lung-RADS...
    findings: tuple[Finding, ...] = ()
    timings_ms: dict[str, float] = Field(default_factory=dict)
    provider: str | None = None  # where the model ran: an ONNX Runtime execution provider, or torch:cpu / torch:cuda

    def fields(self) -> dict[str, Any]:
        """The flat view that pipeline priority rules test: positive, scores and labels by name."""
        return {"positive": self.positive, "task": self.task, **self.scores, **self.labels}


class StageTimes(Frozen):
    """Wall-clock timestamps of the stages a case went through."""


    first_received: datetime | None = None
    last_received: datetime | None = None
    assembled: datetime | None = None


class TriageCase(Frozen):
    """One assembled series on its way through the pipelines."""


    case_id: str
    study_uid: str
    series_uid: str
    series_version: int = 1
    accession: str | None = None
    calling_ae: str | None = None
    received_at: datetime
    header: dict[str, Any] = Field(default_factory=dict)
    instances_uri: str
    instance_count: int
    stage_times: StageTimes = Field(default_factory=StageTimes)
