"""What the worklist API takes and gives: separate models in and out, never a table row."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from radtriage.api.auth import Role
from radtriage.domain import Finding, Priority, TaskResult

UidPattern = r"^[0-9]+(\.[0-9]+)*$"
Uid = Annotated[str, StringConstraints(pattern=UidPattern, max_length=64)]
Verdict = Literal["agree", "disagree", "unsure"]
ReadStatus = Literal["unread", "claimed", "reported"]


class Flag(BaseModel):
    """One AI finding, in words, as the worklist shows it."""

    task: str
    pipeline: str
    result_id: int
    code: str
    text: str
    probability: float | None = None
    positive: bool
    priority: Priority


class WorklistItem(BaseModel):
    study_uid: str
    priority: Priority
    priority_reason: str | None
    overdue: bool
    due_at: datetime
    waiting_min: float
    ai_state: str
    status: ReadStatus
    claimed_by: str | None
    claimed_at: datetime | None
    reported_by: str | None
    reported_at: datetime | None
    modalities: list[str]
    tasks: list[str]
    calling_ae: str | None
    flags: list[Flag]
    received_at: datetime
    updated_at: datetime
    accession_number: str | None
    patient_id: str | None
    patient_name: str | None
    patient_sex: str | None
    patient_birth_date: str | None
    study_date: str | None
    study_time: str | None
    study_description: str | None
    site: str | None = None  # the site of origin at a hub (radtriage.forward); None: this site
    # at a hub: the live AI results of the edge the study came from, each said with its origin (never counted
    # for this priority: docs/forwarding.md)
    edge_ai: list[str] = []


class MonitorNotice(BaseModel):
    """A pipeline the model monitor warns about or demoted (`radtriage.monitor.status`): the worklist's banner."""

    pipeline_id: str
    level: Literal["warning", "demoted"]
    text: str
    since: datetime


class WorklistPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[WorklistItem]
    monitor: list[MonitorNotice] = []


class SeriesOut(BaseModel):
    series_uid: str
    modality: str | None
    series_number: int | None
    series_description: str | None
    body_part: str | None
    state: str
    version: int


class FindingOut(Finding):
    """A finding as the API shows it: its key image by URL, never by the server's file path."""

    key_image: str | None = Field(default=None, exclude=True)
    key_image_url: str | None = None


class ResultOut(TaskResult):
    """A stored result of a pipeline: the `TaskResult` and where and when it was recorded."""

    id: int
    pipeline_id: str
    series_uid: str
    priority: Priority
    findings: tuple[FindingOut, ...] = ()
    created_at: datetime


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    result_id: int = Field(ge=1)
    finding_code: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_:.-]+$")]
    verdict: Verdict
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None


class FeedbackOut(BaseModel):
    id: int
    result_id: int
    finding_code: str
    verdict: Verdict
    comment: str | None
    username: str
    created_at: datetime


class PriorityChangeOut(BaseModel):
    old_priority: Priority | None
    new_priority: Priority
    reason: str | None
    changed_at: datetime


class EdgeResultOut(BaseModel):
    """An AI result recorded at an edge gateway and kept at this hub (`radtriage.forward.payload`)."""

    id: int
    said: str  # "AI at <site> (edge), <pipeline> <version>, <state>: <findings>"
    site: str
    state: str  # the pipeline's state at the edge when it ran: live | shadow
    pipeline_id: str
    pipeline_version: str
    series_uid: str
    task: str
    model_id: str
    model_version: str
    positive: bool
    priority: Priority  # the edge's own priority for it; this hub's priority is its own
    scores: dict[str, float]
    labels: dict[str, str]
    findings: list[dict[str, Any]]
    recorded_at: datetime
    received_at: datetime


class StudyDetail(BaseModel):
    entry: WorklistItem
    series: list[SeriesOut]
    results: list[ResultOut]
    edge_results: list[EdgeResultOut] = []  # at a hub: AI results from the edge the study came from
    feedback: list[FeedbackOut]
    priority_history: list[PriorityChangeOut]
    disclaimer: str = "AI results are an aid, not a diagnosis."


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str
    role: str | None
    action: str
    study_uid: str | None
    detail: dict[str, Any]
    client: str | None


class AuditPage(BaseModel):
    total: int
    items: list[AuditEntryOut]


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
    role: Role
    display_name: Annotated[str, StringConstraints(max_length=128)] | None = None
    password: Annotated[str, StringConstraints(min_length=12, max_length=256)] | None = None


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    display_name: str | None
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None


class Me(BaseModel):
    username: str
    role: str
    display_name: str | None
    csrf_token: str | None = None
