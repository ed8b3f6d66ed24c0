"""The types that travel through radtriage. Pure data: no I/O here."""

from radtriage.domain.case import (
    Finding,
    Priority,
    StageTimes,
    TaskResult,
    TriageCase,
)

__all__ = ["Finding", "Priority", "StageTimes", "TaskResult", "TriageCase"]
