"""The dose registry at work: each closed series is read once, off the ingest path, and its study's
examination judged again.

`DoseRegistry.read_one` takes one closed series version (a job of the ledger, `radtriage.db.dose.unread`):
a dose SR (RDSR) is read by `radtriage.dose.rdsr` (image pipelines never select it: its Modality is SR), a
CT image series gives a header estimate from its first and last instances (`radtriage.dose.header`) and the
patient's water-equivalent diameter from the pixels of evenly spaced slices (`radtriage.dose.size`), a
CR/DX series its header values. The report is kept whether or not the study's images came, and the
study's examination is made again from all its reports (`judge.examination_of`: the RDSR wins over
estimates), so an RDSR that came before or without its images is joined to them when they come. The RIS's
pregnancy status for the study's accession or patient (`radtriage.dose.ris`) is read at each judgement, and
a status that comes later has the examinations it names judged again (`apply_ris_statuses`). New flags are
kept, audited and told (`radtriage.dose.notify`), all in one transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pydicom

from radtriage.db import Database, audit
from radtriage.db import dose as rows
from radtriage.db.clock import utcnow
from radtriage.dose.config import DoseConfig
from radtriage.dose.drl import DrlSet
from radtriage.dose.header import common_fields, ct_estimate, projection_values
from radtriage.db import ris_pregnancy as ris_rows
from radtriage.dose.judge import Examination, Flag, examination_of, judge, with_ris_status
from radtriage.dose.model import (CT_IMAGE_CLASSES, PROJECTION_MODALITIES, RDSR_CLASSES, DoseReport,
                                  report_from_json, report_json)
from radtriage.dose.rdsr import NotADoseReport, read_rdsr_file
from radtriage.dose.size import sample, series_diameter

log = logging.getLogger("radtriage.dose")
ACTOR = "dose-registry"


def read_series(files: list[dict[str, Any]], modality: str | None) -> tuple[str, list[DoseReport]]:
    """(outcome, reports) of one series' files (`radtriage.db.dose.series_files`); reads headers only."""
    rdsr = [f for f in files if f["sop_class_uid"] in RDSR_CLASSES]
    if rdsr:
        out = []
        for f in rdsr:
            try:
                out.append(read_rdsr_file(f["path"]))
            except (NotADoseReport, OSError, ValueError, AttributeError) as exc:
                log.warning("dose SR not read: %s", type(exc).__name__)
        return ("rdsr" if out else "none"), out
    images = [f for f in files if not f["is_localizer"]]
    if images and images[0]["sop_class_uid"] in CT_IMAGE_CLASSES:
        return ct_series([pydicom.dcmread(f["path"]) for f in sample(images)])
    if images and (modality or "").upper() in PROJECTION_MODALITIES:
        report = projection_values([pydicom.dcmread(f["path"], stop_before_pixels=True) for f in images[:20]])
        return ("xr_header", [report]) if report else ("none", [])
    return "none", []


def ct_series(images: list[Any]) -> tuple[str, list[DoseReport]]:
    """(outcome, reports) of a CT image series from evenly spaced slices (`radtriage.dose.size.sample`, first
    and last included): the header estimate from its ends, and the patient's water-equivalent diameter from
    their pixels (a report of the size alone where the headers give no CTDIvol)."""
    report = ct_estimate([images[0], images[-1]] if len(images) > 1 else images)
    try:
        measured = series_diameter(images)
    except (ValueError, AttributeError, RuntimeError, NotImplementedError) as exc:  # pixels it cannot decode
        log.warning("dose: patient size not measured: %s", type(exc).__name__)
        measured = None
    if measured is None:
        return ("ct_header", [report]) if report else ("none", [])
    if report is None:
        report = DoseReport(modality="CT", source="header", estimated=True, **common_fields(images[0]))
    return "ct_header", [replace(report, water_diameter_cm=round(measured[0], 3), size_slices=measured[1])]


class DoseRegistry:
    """Reads closed series into the registry and judges their examinations (``notify``: a
    `radtriage.dose.notify.DoseNotices`, or None to keep flags on the page and in the audit only)."""

    def __init__(self, db: Database, config: DoseConfig, drl: DrlSet, notify: Any = None) -> None:
        self.db, self.config, self.drl, self.notify = db, config, drl, notify

    def read_pending(self, limit: int = 20) -> int:
        """Read up to ``limit`` unread closed series, then apply up to ``limit`` new RIS pregnancy statuses; how
        many of both."""
        with self.db.read() as conn:
            pending = rows.unread(conn, limit)
        for item in pending:
            self.read_one(item)
        return len(pending) + self.apply_ris_statuses(limit)

    def apply_ris_statuses(self, limit: int = 20, now: dt.datetime | None = None) -> int:
        """Judge again the examinations each new RIS pregnancy status names (`radtriage.dose.ris`: one that came
        before its examination was judged is read when it is), each status in one transaction; how many."""
        with self.db.read() as conn:
            pending = ris_rows.unapplied(conn, limit)
        for status in pending:
            when = now or utcnow()
            with self.db.write() as conn:
                for uid in ris_rows.judged_studies(conn, status["accession_number"], status["patient_key"]):
                    self.judge_study(conn, uid, when)
                ris_rows.mark_applied(conn, status["id"], when)
        return len(pending)

    def read_one(self, item: rows.ClosedSeries, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Read one closed series, keep its reports and judge its study; the new flags."""
        now = now or utcnow()
        with self.db.read() as conn:
            files = rows.series_files(conn, item.series_id)
        try:
            outcome, reports = read_series(files, item.modality)
        except Exception as exc:  # noqa: BLE001 - one unreadable series stops no other
            log.warning("dose: series not read: %s", type(exc).__name__)
            outcome, reports = "error", []
        with self.db.write() as conn:
            rows.mark_read(conn, item.job_id, item.study_uid, outcome, now)
            changed = [rows.add_report(conn, report_json(r), now) for r in reports]
            if not any(changed):
                return []
            return self.judge_study(conn, item.study_uid, now)

    def add_reports(self, reports: list[DoseReport], now: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Keep reports read elsewhere (a benchmark, an import) and judge their studies; the new flags."""
        now = now or utcnow()
        new: list[dict[str, Any]] = []
        with self.db.write() as conn:
            for r in reports:
                rows.add_report(conn, report_json(r), now)
            for uid in dict.fromkeys(r.study_uid for r in reports):
                new += self.judge_study(conn, uid, now)
        return new

    def judge_study(self, conn: Any, study_uid: str, now: dt.datetime) -> list[dict[str, Any]]:
        """Make the study's examination again from its reports, judge it, keep and tell its new flags."""
        exam = examination_of([report_from_json(r) for r in rows.reports_of(conn, study_uid)], self.config,
                              self.drl, now)
        if exam is None:
            return []
        key = rows.patient_key(conn, study_uid)
        exam = with_ris_status(exam, ris_rows.status_for(conn, rows.accession_of(conn, study_uid), key,
                                                         exam.performed_at))
        rows.save_exam(conn, {**exam.row(), "patient_key": key}, now)
        earlier = (rows.earlier_times(conn, key, exam.examination, study_uid, exam.performed_at,
                                      dt.timedelta(hours=self.config.repeat_window_h))
                   if key and exam.examination else [])
        new = rows.add_flags(conn, study_uid, [_flag_row(f, exam) for f in judge(exam, self.config, self.drl,
                                                                                  earlier)], now)
        for f in new:
            audit.record(conn, "dose_flagged", actor=ACTOR, role="system", study_uid=study_uid,
                         detail={k: f[k] for k in ("reason", "quantity", "value", "level", "unit", "urgent")})
        if new and self.notify is not None:
            self.notify.urgent(conn, exam, [f for f in new if f["urgent"]], now)
        return new


def _flag_row(flag: Flag, exam: Examination) -> dict[str, Any]:
    return {**asdict(flag), "drl_set": exam.drl_set}


def load_registry(db: Database, path: Path, notify: Any = None) -> DoseRegistry:
    """The registry from the site's dose file: its DRL files imported when new, the chosen set loaded from the
    database and the mapping checked against it (`DrlError` stops start-up, naming the problem)."""
    from radtriage.dose.config import load_dose_config
    from radtriage.dose.drl import DrlError, parse_set

    config, files = load_dose_config(path)
    now = utcnow()
    with db.write() as conn:
        for drl, sha in files:
            if rows.import_set(conn, drl.name, drl.version, sha, drl.model_dump(mode="json"), ACTOR, now) == "imported":
                audit.record(conn, "drl_imported", actor=ACTOR, role="system",
                             detail={"name": drl.name, "version": drl.version, "sha256": sha})
        doc = rows.get_set(conn, config.drl_set.name, config.drl_set.version)
    if doc is None:
        raise DrlError(f"{path}: drl_set: {config.drl_set.name} v{config.drl_set.version} is not imported "
                       "(radtriage dose drl import FILE, or name it in drl_files)")
    drl = parse_set(doc, f"{config.drl_set.name} v{config.drl_set.version}")
    config.check_against(drl, str(path))
    return DoseRegistry(db, config, drl, notify)
