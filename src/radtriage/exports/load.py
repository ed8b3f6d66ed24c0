"""An `ExportedResult` from the index: the result an outbox row names, at the row's status and revision."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from radtriage.db import exports as rows
from radtriage.domain import TaskResult
from radtriage.pipelines import PipelineSpec
from radtriage.exports.model import PRELIMINARY, ExportedResult, Patient, SourceInstance


def _text(v: Any) -> str | None:
    return str(v) if v not in (None, "") else None


def exported_result(conn: Connection, payload: Mapping[str, Any],
                    about: Mapping[str, Mapping[str, Any]]) -> ExportedResult | None:
    """The result of ``payload["result_id"]`` as the builders take it; None when it is gone. ``about`` gives
    each pipeline's ``title`` and the ``thresholds`` it runs at (`pipelines_about`)."""
    ctx = rows.result_context(conn, int(payload["result_id"]))
    if ctx is None:
        return None
    st, se = ctx["study"], ctx["series"]
    header = dict(se.get("header") or {})
    return ExportedResult(
        result_id=ctx["id"], pipeline_id=ctx["pipeline_id"], pipeline_version=ctx["pipeline_version"],
        pipeline_title=str(about.get(ctx["pipeline_id"], {}).get("title") or ctx["pipeline_id"]),
        thresholds=dict(about.get(ctx["pipeline_id"], {}).get("thresholds") or {}),
        result=TaskResult.model_validate(ctx["result"]), priority=ctx["priority"], created_at=ctx["created_at"],
        study_uid=ctx["study_uid"], accession=_text(st.get("accession_number")),
        study_description=_text(st.get("study_description")), study_date=_text(st.get("study_date")),
        study_time=_text(st.get("study_time")),
        patient=Patient(patient_id=_text(st.get("patient_id")), issuer=_text(st.get("patient_id_issuer")),
                        name=_text(st.get("patient_name")), birth_date=_text(st.get("patient_birth_date")),
                        sex=_text(st.get("patient_sex"))),
        series_uid=ctx["series_uid"], series_number=se.get("series_number"), series_version=ctx["series_version"],
        modality=_text(se.get("modality")), header=header,
        instances=tuple(SourceInstance(i["sop_class_uid"], i["sop_instance_uid"], i["instance_number"], i["path"])
                        for i in ctx["instances"]),
        status=str(payload.get("status", PRELIMINARY)), revision=int(payload.get("revision", 0)),
        replaces=payload.get("replaces"), notes={k: payload[k] for k in ("replaces_revision", "reason") if k in payload},
    )


def pipelines_about(specs: Iterable[PipelineSpec], models_dir: Path) -> dict[str, dict[str, Any]]:
    """Each pipeline's title and the thresholds it runs at (the pipeline's own, else its model card's)."""
    from radtriage.governance.state import fingerprint

    return {s.id: {"title": s.title or s.id, "thresholds": dict(fingerprint(s, models_dir).thresholds)} for s in specs}
