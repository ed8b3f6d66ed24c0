"""The types that travel through radtriage. Pure data: no I/O here."""

from radtriage.domain.case import (
    CaseStatus,
    Finding,
    Priority,
    StageTimes,
    TaskResult,
    TriageCase,
)

__all__ = ["CaseStatus", "Finding", "Priority", "StageTimes", "TaskResult", "TriageCase"]
