"""The silent trial: readers' truths for a shadow pipeline's results, and the evidence they make.

While a pipeline runs in shadow, a commissioning reader (or an admin) records for each of its results
what the study holds, in the task's own terms (`radtriage.validation.truth`): `record_truth` checks that
the result is a shadow result of that task and that the truth fits it (a nodule read names each of the
AI's nodules), and keeps the read with its audit entry. `shadow_evidence` turns the newest read of each
result recorded for the model the pipeline runs now into a ``metrics.json`` document, through the same
code as `radtriage validate` (`radtriage.validation.run.document`), so a promotion can take it as its
evidence (``radtriage models promote --evidence shadow``) and the same cases give the same numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from radtriage.config import Settings
from radtriage.db import reads as rows
from radtriage.db.engine import Database
from radtriage.db.errors import ActionRefused, Refusal
from radtriage.governance.decide import pipelines
from radtriage.governance.state import fingerprint
from radtriage.inference.card import load_card
from radtriage.validation.evaluate import TARGET_SENSITIVITY
from radtriage.validation.run import CaseResult, ValidationError, document
from radtriage.validation.site import pipeline_threshold
from radtriage.validation.truth import TRUTHS, Truth, TruthError, groups_of, label_of, prediction_of

SHADOW = "shadow"  # the word a promotion names this evidence by


def record_truth(db: Database, result_id: int, truth: Truth, user_id: int, username: str, role: str,
                 client: str | None = None) -> dict[str, Any]:
    """Keep a reader's truth for a shadow result; returns ``{"id", "result_id", "label"}``, or raises
    `ActionRefused` (no such result: missing; a live result or another task: conflict; a truth that does
    not fit the result: conflict, naming why)."""
    result = rows.shadow_result(db, result_id)
    if result is None:
        raise ActionRefused(Refusal.MISSING, f"no result {result_id}")
    if result["state"] != "shadow":
        raise ActionRefused(Refusal.CONFLICT, f"result {result_id} was recorded {result['state']}: truth is "
                            "recorded for the results of a pipeline in shadow (the silent trial)")
    if truth.task != result["task"]:
        raise ActionRefused(Refusal.CONFLICT, f"result {result_id} is a {result['task']} result, the truth "
                            f"given is for {truth.task}")
    try:
        label = label_of(truth, result["result"])
    except TruthError as exc:
        raise ActionRefused(Refusal.CONFLICT, f"the truth does not fit result {result_id}: {exc}") from None
    rid = rows.record_read(db, result, truth.model_dump(mode="json"), user_id, username, role, client)
    return {"id": rid, "result_id": result_id, "label": label}


def shadow_cases(db: Database, pipeline_id: str, model_id: str, model_version: str) -> list[CaseResult]:
    """Each read shadow result of the pipeline's model (id and version), as a case of `document`."""
    out = []
    for r in rows.read_cases(db, pipeline_id):
        if (r["model_id"], r["model_version"]) != (model_id, model_version):
            continue
        case = CaseResult(id=r["accession_number"] or r["study_uid"], label={},
                          groups=groups_of(r["header"] or {}, r["patient_sex"]))
        try:
            truth = TRUTHS[r["task"]].model_validate(r["truth"])
            case.label = label_of(truth, r["result"])  # nodules: those confirmed of the AI's, and those added
            case.prediction = prediction_of(r["task"], r["result"])
        except (TruthError, ValueError, KeyError) as exc:
            case.error = f"read {r['read_id']}: {exc}"[:300]
        out.append(case)
    return out


def shadow_evidence(db: Database, settings: Settings, pipeline_id: str, rounds: int = 1000,
                    target_sensitivity: float = TARGET_SENSITIVITY) -> dict[str, Any]:
    """The ``metrics.json`` of the pipeline's silent trial so far, for the model and threshold it runs now;
    `ValidationError` when no read case can be measured yet."""
    specs = pipelines(settings)
    if pipeline_id not in specs:
        raise ValidationError(f"no pipeline {pipeline_id!r}; there: {', '.join(sorted(specs))}")
    spec = specs[pipeline_id]
    fp = fingerprint(spec, settings.inference.models_dir)
    folder = Path(settings.inference.models_dir) / spec.model
    card = load_card(folder)
    cases = shadow_cases(db, pipeline_id, fp.model_id, fp.model_version)
    if not cases:
        raise ValidationError(f"no reads yet of {pipeline_id}'s shadow results for model {fp.model_id} "
                              f"{fp.model_version}")
    source = {"path": f"silent trial of {pipeline_id}", "layout": "shadow-reads", "kind": "prospective",
              "pipeline": pipeline_id, "reads": len(cases)}
    return document(card, folder, cases, pipeline_threshold(spec, card), rounds, target_sensitivity, source)
