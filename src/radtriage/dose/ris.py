"""The pregnancy status the site's RIS sends for an order or a patient, for the dose registry.

`RisPregnancy` is what the RIS's integration engine posts (`POST /api/v1/dose/pregnancy`), validated strictly:
the order's accession number (DICOM Accession Number, SH: at most 16 characters) and/or the patient's ID with
its issuer (LO: at most 64), the status (``pregnant``, ``not_pregnant``, ``unknown``), when the RIS recorded it
(with its UTC offset) and the sending system. A status for an order counts for the examinations of that
accession; one for a patient alone, for the patient's examinations near its time
(`radtriage.db.ris_pregnancy.status_for`). The patient's ID is kept only as the registry's one-way key.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from radtriage.db.dose import key_of

STATUSES = ("pregnant", "not_pregnant", "unknown")
Status = Literal["pregnant", "not_pregnant", "unknown"]
_TEXT = r"^[\x20-\x5b\x5d-\x7e]*[\x21-\x5b\x5d-\x7e][\x20-\x5b\x5d-\x7e]*$"  # printable ASCII, no backslash, not blank
FUTURE_SLACK = dt.timedelta(minutes=10)  # the RIS's clock may run a little ahead


class RisPregnancy(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    accession_number: str | None = Field(None, max_length=16, pattern=_TEXT)
    patient_id: str | None = Field(None, max_length=64, pattern=_TEXT)
    issuer_of_patient_id: str | None = Field(None, max_length=64, pattern=_TEXT)
    status: Status
    recorded_at: AwareDatetime
    source: str = Field(max_length=64, pattern=_TEXT)

    @model_validator(mode="after")
    def _names_someone(self) -> RisPregnancy:
        if not self.accession_number and not self.patient_id:
            raise ValueError("give accession_number, or patient_id (with issuer_of_patient_id where the site has one)")
        if self.issuer_of_patient_id and not self.patient_id:
            raise ValueError("issuer_of_patient_id without patient_id")
        if self.recorded_at > dt.datetime.now(dt.UTC) + FUTURE_SLACK:
            raise ValueError("recorded_at is in the future")
        return self

    def row(self, by: str, now: dt.datetime) -> dict[str, Any]:
        """The ``ris_pregnancy`` row: the patient as the registry's one-way key, times in UTC."""
        key = key_of(self.issuer_of_patient_id, self.patient_id) if self.patient_id else None
        return dict(accession_number=self.accession_number or None, patient_key=key, status=self.status,
                    recorded_at=self.recorded_at.astimezone(dt.UTC), source=self.source, received_at=now,
                    received_by=by[:64])
