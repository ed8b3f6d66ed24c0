"""An `ExportedResult` from the index: the result an outbox row names, at the row's status and revision."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from radtriage.db import exports as rows
from radtriage.domain import TaskResult
from radtriage.pipelines import PipelineSpec
from radtriage.exports.model import (
    PRELIMINARY, ExportedReport, ExportedResult, Patient, ReportSection, SourceInstance,
)


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
        patient=_patient(st),
        series_uid=ctx["series_uid"], series_number=se.get("series_number"), series_version=ctx["series_version"],
        modality=_text(se.get("modality")), header=header,
        instances=tuple(SourceInstance(i["sop_class_uid"], i["sop_instance_uid"], i["instance_number"], i["path"])
                        for i in ctx["instances"]),
        status=str(payload.get("status", PRELIMINARY)), revision=int(payload.get("revision", 0)),
        replaces=payload.get("replaces"), notes={k: payload[k] for k in ("replaces_revision", "reason") if k in payload},
    )


def _patient(st: Mapping[str, Any]) -> Patient:
    return Patient(patient_id=_text(st.get("patient_id")), issuer=_text(st.get("patient_id_issuer")),
                   name=_text(st.get("patient_name")), birth_date=_text(st.get("patient_birth_date")),
                   sex=_text(st.get("patient_sex")))


def exported_report(conn: Connection, payload: Mapping[str, Any],
                    about: Mapping[str, Mapping[str, Any]] | None = None) -> ExportedReport | None:
    """The report of ``payload["report_id"]`` as the report builders take it: the signed languages' sections
    (the draft's, for a preliminary send) and every addendum; the series its AI results were read from as
    evidence. None when it is gone."""
    from radtriage.db import reports as report_rows
    from radtriage.reports.sections import exported_sections

    report = report_rows.get_by_id(conn, int(payload["report_id"]))
    if report is None:
        return None
    evidence, pipelines = [], []
    for rid in report["result_ids"]:
        ctx = rows.result_context(conn, int(rid))
        if ctx is None:
            continue
        pipelines.append(ctx["pipeline_id"])
        if ctx["series_uid"] not in [uid for uid, _ in evidence]:
            evidence.append((ctx["series_uid"], tuple(SourceInstance(i["sop_class_uid"], i["sop_instance_uid"],
                                                                     i["instance_number"], i["path"])
                                                      for i in ctx["instances"])))
    st = rows.study_row(conn, report["study_uid"])
    status = str(payload.get("status", PRELIMINARY))
    sections = exported_sections(report, status)
    return ExportedReport(
        report_id=report["id"], study_uid=report["study_uid"], accession=_text(st.get("accession_number")),
        study_description=_text(st.get("study_description")), study_date=_text(st.get("study_date")),
        study_time=_text(st.get("study_time")), patient=_patient(st), modality=_text(st.get("modality")),
        sections=tuple(ReportSection(*s) for s in sections), languages=tuple(dict.fromkeys(s[0] for s in sections)),
        status=status, revision=int(payload.get("revision", 0)),
        created_at=report["signed_at"] or report["updated_at"], signed_by=report["signed_by"],
        signed_at=report["signed_at"], evidence=tuple(evidence), pipelines=tuple(dict.fromkeys(pipelines)))


def pipelines_about(specs: Iterable[PipelineSpec], models_dir: Path) -> dict[str, dict[str, Any]]:
    """Each pipeline's title and the thresholds it runs at (the pipeline's own, else its model card's)."""
    from radtriage.governance.state import fingerprint

    return {s.id: {"title": s.title or s.id, "thresholds": dict(fingerprint(s, models_dir).thresholds)} for s in specs}
