"""Task results to a study priority and a worklist entry (`triage_study`), kept live by `Triage`."""

from radtriage.triage.priority import RANK, StudyTriage, triage_study

__all__ = ["RANK", "StudyTriage", "triage_study"]
