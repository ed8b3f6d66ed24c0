"""Building a share's sealed copy: the study's stored instances (or the chosen key images) marked as a shared
copy, the signed report, and a manifest the recipient page reads, sealed with a fresh key."""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from radtriage.db import dicomweb as dw
from radtriage.db import reports as report_rows
from radtriage.db.engine import Database
from radtriage.reports.sections import exported_sections
from radtriage.sharing.copy import shared_copy_bytes
from radtriage.sharing.crypto import new_key
from radtriage.sharing.store import write_sealed


class NothingToShare(ValueError):
    """The study is not here, or a chosen key image is not one of its instances."""


def _text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "")


def _first(value: Any) -> float | None:
    """The first of a (possibly multi-valued) number, or None."""
    if value is None or value == "":
        return None
    return float(value[0]) if isinstance(value, MultiValue) else float(value)


def _instance_entry(name: str, ds: Dataset) -> dict[str, Any]:
    centre, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    return {"file": name, "sop": _text(ds, "SOPInstanceUID"), "number": int(ds.get("InstanceNumber") or 0),
            "ts": str(ds.file_meta.TransferSyntaxUID),
            "image": "Rows" in ds, "frames": int(ds.get("NumberOfFrames") or 1),
            "window": [centre, width] if centre is not None and width else None}


def _series_entry(ds: Dataset) -> dict[str, Any]:
    return {"uid": _text(ds, "SeriesInstanceUID"), "number": int(ds.get("SeriesNumber") or 0),
            "modality": _text(ds, "Modality"), "description": _text(ds, "SeriesDescription"), "instances": []}


def _study_entry(ds: Dataset) -> dict[str, Any]:
    return {"uid": _text(ds, "StudyInstanceUID"), "date": _text(ds, "StudyDate"),
            "description": _text(ds, "StudyDescription"), "accession": _text(ds, "AccessionNumber"),
            "patient": {"name": _text(ds, "PatientName").replace("^", " ").strip(), "id": _text(ds, "PatientID"),
                        "birth_date": _text(ds, "PatientBirthDate"), "sex": _text(ds, "PatientSex")}}


def signed_report(db: Database, study_uid: str) -> dict[str, Any] | None:
    """The study's signed report as the page shows it (each signed language, then the addenda), or None."""
    with db.read() as conn:
        report = report_rows.get(conn, study_uid)
    if report is None or report["state"] != "signed":
        return None
    return {"signed_by": report["signed_by"], "signed_at": report["signed_at"].isoformat(),
            "sections": [list(s) for s in exported_sections(report, "final")]}


def chosen_files(db: Database, study_uid: str, key_images: list[str]) -> list[dw.InstanceFile]:
    """The study's stored instances, or only ``key_images`` (each must be one of them)."""
    files = dw.instance_files(db, dw.Scope(study_uid))
    if not files:
        raise NothingToShare(f"no study {study_uid} is stored here")
    if not key_images:
        return files
    by_sop = {f.sop_instance_uid: f for f in files}
    missing = [uid for uid in key_images if uid not in by_sop]
    if missing:
        raise NothingToShare(f"key_images: {', '.join(missing)} not in study {study_uid}")
    return [by_sop[uid] for uid in dict.fromkeys(key_images)]


def build_sealed(db: Database, spool_root: Path, root: Path, study_uid: str, key_images: list[str],
                 meta: dict[str, Any], issued_at: datetime, system: str) -> tuple[str, bytes, int, int]:
    """Seal the shared copy under ``root``: (folder, key, instances, bytes written)."""
    files = chosen_files(db, study_uid, key_images)
    manifest: dict[str, Any] = {"version": 1, **meta, "study": None, "series": [],
                                "report": signed_report(db, study_uid)}
    by_series: dict[str, dict[str, Any]] = {}

    def instances():  # the manifest is filled as the instances are sealed, and sealed after them
        for n, f in enumerate(files):
            path = Path(f.path).resolve()
            if not path.is_relative_to(spool_root) or not path.is_file():
                raise NothingToShare(f"instance {f.sop_instance_uid} is not available")
            ds, data = shared_copy_bytes(path, issued_at, system)
            name = f"i{n:05d}"
            manifest["study"] = manifest["study"] or _study_entry(ds)
            by_series.setdefault(f.series_uid, _series_entry(ds))["instances"].append(_instance_entry(name, ds))
            yield name, data
        manifest["series"] = sorted(by_series.values(), key=lambda s: (s["number"], s["uid"]))
        for s in manifest["series"]:
            s["instances"].sort(key=lambda i: (i["number"], i["file"]))

    folder, key = secrets.token_hex(16), new_key()
    size = write_sealed(root, folder, key, manifest, instances())
    return folder, key, len(files), size
