"""Synthetic worklist content, written in bulk: for tests and `scripts/bench_api.py` only.

Every study is synthetic (patient names ``SYNTHETIC^PATIENT<n>``); nothing
here is used by the service. Rows go through the same tables and the same
`radtriage.triage.triage_study` as real studies, so the worklist they make is
the one the service would make.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from radtriage.db.clock import utcnow
from radtriage.db.engine import Database
from radtriage.db.tables import jobs, results, series, studies, worklist
from radtriage.triage.priority import triage_study

ROOT = "1.2.826.0.1.3680043.10.1234"  # a synthetic UID root for seeded rows

# (task, pipeline, modality, positive finding text, priority when positive)
KINDS = (
    ("ich", "stroke_ich", "CT", "ICH - intraparenchymal, ~12 mL", "STAT"),
    ("lvo", "stroke_lvo", "CT", "LVO - left M1", "STAT"),
    ("nodule", "lung_nodule", "CT", "Lung-RADS 4B, 14 mm", "URGENT"),
    ("bone_age", "bone_age", "CR", "bone age +26 mo, z +2.3 (advanced)", "URGENT"),
)


def result_doc(task: str, positive: bool, text: str, key_image: str | None = None) -> dict[str, Any]:
    """A TaskResult document as the dispatcher stores it."""
    findings = [{"code": task, "text": text, "probability": 0.97, "measurements": {}, "key_image": key_image}]
    return {"task": task, "model_id": f"{task}-synthetic", "model_version": "0.0.0", "pipeline_version": "1.0.0",
            "positive": positive, "scores": {task: 0.97 if positive else 0.03}, "labels": {},
            "findings": findings if positive else [], "timings_ms": {"load": 100.0, "inference": 200.0}}


def seed(db: Database, n: int, seed: int = 0, now: datetime | None = None, start: int = 0,
         pending_fraction: float = 0.05, positive_fraction: float = 0.1, calling_aes: tuple[str, ...] = ("CT_ED_1",)
         ) -> list[str]:
    """Write ``n`` synthetic studies with one series, one job and (unless pending) one result each.

    Returns their study UIDs. ``start`` offsets the numbering so calls can add more.
    """
    rng = random.Random(seed)
    now = now or utcnow()
    uids: list[str] = []
    with db.write() as conn:
        for k in range(start, start + n):
            task, pipeline, modality, text, stat = KINDS[k % len(KINDS)]
            received = now - timedelta(minutes=rng.uniform(0, 3 * 24 * 60))
            study_uid, series_uid = f"{ROOT}.{k + 1}", f"{ROOT}.{k + 1}.1"
            sid = conn.execute(studies.insert().values(
                study_uid=study_uid, accession_number=f"SYN{k + 1:07d}", patient_id=f"SYN{k + 1:07d}",
                patient_name=f"SYNTHETIC^PATIENT{k + 1}", patient_sex=rng.choice("FM"), study_date=received.strftime("%Y%m%d"),
                study_time=received.strftime("%H%M%S"), study_description=f"SYNTHETIC {task.upper()}",
                created_at=received)).inserted_primary_key[0]
            ser = conn.execute(series.insert().values(
                study_id=sid, series_uid=series_uid, modality=modality, series_number=1, series_description="AXIAL",
                header={"Modality": modality}, header_from_localizer=False, state="ready", version=1,
                first_received_at=received, last_received_at=received, closed_at=received,
                storage_dir="")).inserted_primary_key[0]
            pending = rng.random() < pending_fraction
            state = "ready" if pending else "done"
            job = conn.execute(jobs.insert().values(
                case_id=f"{series_uid}#1", series_id=ser, series_version=1, state=state, attempts=0 if pending else 1,
                case={"calling_ae": calling_aes[k % len(calling_aes)]}, created_at=received,
                updated_at=received)).inserted_primary_key[0]
            rows: list[dict[str, Any]] = []
            if not pending:
                positive = rng.random() < positive_fraction
                prio = stat if positive else "ROUTINE"
                doc = result_doc(task, positive, text)
                rid = conn.execute(results.insert().values(
                    job_id=job, pipeline_id=pipeline, pipeline_version="1.0.0", study_uid=study_uid,
                    series_uid=series_uid, task=task, model_id=doc["model_id"], model_version="0.0.0",
                    positive=positive, priority=prio, result=doc, created_at=received)).inserted_primary_key[0]
                rows.append({"id": rid, "pipeline_id": pipeline, "task": task, "priority": prio, "positive": positive,
                             "result": doc})
            t = triage_study([(state, None)], rows)
            conn.execute(worklist.insert().values(
                study_id=sid, study_uid=study_uid, priority=t.priority, priority_rank=t.rank,
                priority_reason=t.reason, ai_state=t.ai_state, status="unread", modalities=modality,
                tasks="," + ",".join(t.tasks) + "," if t.tasks else "", calling_ae=calling_aes[k % len(calling_aes)],
                flags=t.flags, received_at=received, updated_at=received, revision=1))
            uids.append(study_uid)
    return uids
