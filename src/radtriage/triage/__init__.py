"""Priority, owned here from a task result (`result_priority`) to a study and its worklist entry
(`triage_study`), kept live by `Triage`."""

from radtriage.triage.priority import RANK, StudyTriage, result_priority, triage_study

__all__ = ["RANK", "StudyTriage", "result_priority", "triage_study"]
