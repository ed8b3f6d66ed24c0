"""`radtriage validate --pipeline P --truth site.csv`: a pipeline on studies already stored in radtriage.

The site's truth CSV names each study by its accession number and says what it holds in the task's
terms (`TRUTH_COLUMNS`). For each accession the stored study is found, the series the pipeline would
read (its ``select`` and ``prefer`` rules, as the dispatcher chooses), and the pipeline runs on it as the
service runs it (`radtriage.inference.runner.TaskRunner`: the input guard, the pipeline's ops and
thresholds); its `TaskResult` is read as the silent trial reads a stored one (`truth.prediction_of`), so
validation of stored studies and evidence from shadow-period reads give the same numbers on the same
cases. A study outside the model's validated range is counted as refused; an accession not stored, or
a study no series of which the pipeline applies to, is listed as failed.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError as BadTruth

from radtriage.datasets._tables import norm
from radtriage.db import Database
from radtriage.db import reads as rows
from radtriage.db.instances import instance_rows
from radtriage.db.series import assembled_series
from radtriage.inference.card import ModelCard, load_card
from radtriage.pipelines import PipelineSpec
from radtriage.routing import best_series
from radtriage.validation.run import THRESHOLD_KEYS, CaseResult, ValidationError, operating_threshold
from radtriage.validation.truth import TRUTHS, groups_of, label_of, prediction_of

ACCESSION = ("accession", "accession_number", "AccessionNumber", "acc")
TRUTH_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "ich": {"present": ("present", "ich", "positive", "label"), "subtypes": ("subtypes", "subtype")},
    "lvo": {"present": ("present", "lvo", "positive", "label"), "side": ("side",), "segment": ("segment",)},
    "nodule": {"x_mm": ("x_mm", "x"), "y_mm": ("y_mm", "y"), "z_mm": ("z_mm", "z"),
               "diameter_mm": ("diameter_mm", "diameter")},
    "bone_age": {"bone_age_months": ("bone_age_months", "bone_age", "boneage")},
}
"""Per task, each column of the truth CSV besides the accession: (canonical name, accepted spellings).
Nodules: one row per nodule (a row with no coordinates: a scan without nodules)."""
REQUIRED = {"ich": ("present",), "lvo": ("present",), "nodule": (), "bone_age": ("bone_age_months",)}
YES, NO = {"1", "true", "yes", "y", "present", "positive"}, {"0", "false", "no", "n", "absent", "negative"}


def pipeline_threshold(spec: PipelineSpec, card: ModelCard) -> float | None:
    """The operating threshold the pipeline runs at: its own over its model card's."""
    key = THRESHOLD_KEYS.get(spec.task)
    return operating_threshold(card, spec.thresholds.get(key) if key else None)


def _columns(header: list[str], task: str, path: Path) -> dict[str, int]:
    normed = [norm(h) for h in header]
    where: dict[str, int] = {}
    for canon, aliases in {"accession": ACCESSION, **TRUTH_COLUMNS[task]}.items():
        hit = next((normed.index(norm(a)) for a in aliases if norm(a) in normed), None)
        if hit is not None:
            where[canon] = hit
        elif canon == "accession" or canon in REQUIRED[task]:
            raise ValidationError(f"{path}: no column for {canon!r} (accepted: {', '.join(aliases)}); header {header}")
    return where


def _truth_row(task: str, row: dict[str, str], acc: dict[str, dict[str, Any]]) -> None:
    """Add one CSV row to the truth of its accession (``acc``: accession -> truth fields)."""
    if task == "nodule":
        got = acc.setdefault(row["accession"], {"task": task, "nodules": []})
        if any(row.get(k) for k in ("x_mm", "y_mm", "z_mm", "diameter_mm")):
            got["nodules"].append({"verdict": "added", "diameter_mm": row.get("diameter_mm"),
                                   "centre_mm": [row.get("x_mm"), row.get("y_mm"), row.get("z_mm")]})
        return
    if row["accession"] in acc:
        raise ValueError(f"accession {row['accession']} given twice")
    fields: dict[str, Any] = {"task": task, **{k: v for k, v in row.items() if k != "accession" and v != ""}}
    if "present" in fields:
        text = fields["present"].lower()
        fields["present"] = True if text in YES else False if text in NO else text
    if "subtypes" in fields:
        fields["subtypes"] = [s for s in re.split(r"[;|, ]+", fields["subtypes"].lower()) if s and s != "none"]
    acc[row["accession"]] = fields


def read_truths(path: Path, task: str) -> dict[str, Any]:
    """accession -> the truth (`radtriage.validation.truth`) a site's CSV gives, or `ValidationError` naming
    the line."""
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"truth file not found: {path}")
    fields: dict[str, dict[str, Any]] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        where = _columns(next(reader, []), task, path)
        for line, cells in enumerate(reader, start=2):
            row = {k: (cells[i].strip() if i < len(cells) else "") for k, i in where.items()}
            if not any(row.values()):
                continue
            try:
                if not row["accession"]:
                    raise ValueError("no accession number")
                _truth_row(task, row, fields)
            except ValueError as exc:
                raise ValidationError(f"{path} line {line}: {exc}") from None
    out = {}
    for accession, given in fields.items():
        try:
            out[accession] = TRUTHS[task].model_validate(given)
        except BadTruth as exc:
            first = exc.errors()[0]
            raise ValidationError(f"{path}: accession {accession}: {first['msg']} "
                                  f"({'.'.join(str(x) for x in first['loc'])})") from None
    if not out:
        raise ValidationError(f"{path}: no truth rows")
    return out


def _series_of(db: Database, spec: PipelineSpec, accession: str) -> tuple[str, dict[str, Any], str | None]:
    """(series UID, its header, the patient's sex) of the series the pipeline reads in the accession's study."""
    found = rows.studies_with_accession(db, accession)
    if len(found) != 1:
        raise LookupError("not stored in radtriage" if not found else f"{len(found)} stored studies have it")
    stored = {s.series_uid: s for s in assembled_series(db, found[0]["study_uid"])}
    uid = best_series(spec, [(s.series_uid, s.header, s.instance_count) for s in stored.values()])
    if uid is None:
        raise LookupError(f"no assembled series of the study that pipeline {spec.id} applies to")
    return uid, stored[uid].header, found[0]["patient_sex"]


def site_cases(db: Database, spec: PipelineSpec, models_dir: Path, truths: dict[str, Any], threads: int = 2,
               progress: Callable[[int, CaseResult], None] | None = None) -> list[CaseResult]:
    """Run the pipeline, as the service does, on the stored series of each accession in ``truths``."""
    from radtriage.inference.runner import OutsideValidatedRange, PipelineError, TaskRunner

    runner = TaskRunner(spec, models_dir, threads)
    out: list[CaseResult] = []
    for accession in sorted(truths):
        case = CaseResult(id=accession, label={}, groups={})
        try:
            uid, header, sex = _series_of(db, spec, accession)
            case.groups = groups_of(header, sex)
            paths = [r["path"] for r in instance_rows(db, uid) if not r["is_localizer"]]
            t0 = time.perf_counter()
            result = runner.run(paths).model_dump(mode="json")
            case.seconds = time.perf_counter() - t0
            case.prediction = prediction_of(spec.task, result)
            case.label = label_of(truths[accession], result if spec.task != "nodule" else None)
        except OutsideValidatedRange as exc:
            case.refused = str(exc)
        except (LookupError, PipelineError, ValueError) as exc:
            case.error = str(exc)[:300]
        out.append(case)
        if progress:
            progress(len(out), case)
    return out


def validate_site(db: Database, spec: PipelineSpec, models_dir: Path, truth_csv: Path, out: Path,
                  threads: int = 2, rounds: int = 1000, target_sensitivity: float | None = None,
                  progress: Callable[[int, CaseResult], None] | None = None):
    """`radtriage validate` on stored studies: ``metrics.json`` and ``report.html`` under ``out``."""
    from radtriage.validation.evaluate import TARGET_SENSITIVITY
    from radtriage.validation.run import finish

    folder = Path(models_dir) / spec.model
    card = load_card(folder)
    truths = read_truths(truth_csv, spec.task)
    results = site_cases(db, spec, models_dir, truths, threads, progress)
    source = {"path": str(truth_csv), "layout": "radtriage-site", "kind": "retrospective", "pipeline": spec.id}
    return finish(card, folder, results, Path(out), pipeline_threshold(spec, card), rounds,
                  target_sensitivity if target_sensitivity is not None else TARGET_SENSITIVITY, source)
