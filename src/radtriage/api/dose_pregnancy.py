"""``POST /api/v1/dose/pregnancy``: the site's RIS (its integration engine, a ``service`` account's token, or an
admin) says a patient is or is not pregnant for an order: as JSON (`radtriage.dose.ris.RisPregnancy`, validated
strictly), or as an HL7 v2 message sent as ``text/plain`` (ORM^O01 or ADT^A08 with an OBX pregnancy status,
`radtriage.dose.ris_hl7`). The status is kept and audited; the dose registry's worker judges again the
examinations it names (an urgent notice to the physicists for a pregnant patient's abdomen or pelvis, "per the
RIS"), and one not yet judged reads it when it is. The answer is 202: kept, applied by the registry shortly.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from radtriage.api.auth import client_of, require_roles
from radtriage.api.bodies import bounded_body, json_body, validated
from radtriage.api.deps import Db
from radtriage.api.problems import ProblemError
from radtriage.db import audit
from radtriage.db import ris_pregnancy as rows
from radtriage.db.clock import utcnow
from radtriage.dose.ris import RisPregnancy
from radtriage.dose.ris_hl7 import Hl7StatusError, fields_of

router = APIRouter(prefix="/api/v1/dose", tags=["dose"])
Ris = Annotated[object, Depends(require_roles("service", "admin"))]
MAX_BODY_BYTES = 16 * 1024  # a status is a few hundred bytes


class RisPregnancyKept(BaseModel):
    id: int


HL7_TYPES = ("text/plain", "x-application/hl7-v2+er7")


async def _body(request: Request) -> RisPregnancy:
    """The body, read up to `MAX_BODY_BYTES` (413 beyond, before it is parsed): JSON, or an HL7 v2 message
    (`radtriage.dose.ris_hl7`), as a `RisPregnancy` (422 naming the field, never its value)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        return await json_body(request, RisPregnancy, MAX_BODY_BYTES, "a pregnancy status")
    if kind not in HL7_TYPES:
        raise ProblemError(415, "Unsupported Media Type",
                           f"send the status as application/json, or an HL7 v2 message as {' or '.join(HL7_TYPES)}")
    raw = await bounded_body(request, MAX_BODY_BYTES, "a pregnancy status")
    try:
        return validated(RisPregnancy, fields_of(raw.decode("utf-8")))
    except (Hl7StatusError, UnicodeDecodeError) as exc:
        reason = str(exc) if isinstance(exc, Hl7StatusError) else "not UTF-8 (or ASCII) text"
        raise ProblemError(422, "Unprocessable HL7 message", reason) from None


@router.post("/pregnancy", status_code=202, response_model=RisPregnancyKept,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": RisPregnancy.model_json_schema()},
                 **{t: {"schema": {"type": "string"}} for t in HL7_TYPES}}}})
async def receive_pregnancy(request: Request, user: Ris, db: Db) -> RisPregnancyKept:
    """Keep one pregnancy status from the RIS, audited (the order's accession, never the patient's ID)."""
    body = await _body(request)

    def run() -> RisPregnancyKept:
        with db.write() as conn:
            sid = rows.keep(conn, body.row(user.username, utcnow()))
            audit.record(conn, "ris_pregnancy_received", user.username, user.role, client=client_of(request),
                         detail={"id": sid, "status": body.status, "accession_number": body.accession_number,
                                 "patient_named": body.patient_id is not None, "source": body.source,
                                 "recorded_at": body.recorded_at.isoformat()})
        return RisPregnancyKept(id=sid)

    return await run_in_threadpool(run)
