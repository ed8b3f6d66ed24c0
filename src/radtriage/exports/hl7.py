"""HL7 v2.5.1 ORU^R01 for the RIS (IHE AI Results), and the MLLP client that delivers it.

`build_oru` is a pure function of an `ExportedResult` (built with hl7apy's message model and checked with
its strict validation): MSH, PID (PID-3 with the Issuer of Patient ID), PV1, ORC, OBR for the study
(OBR-25 ``P`` preliminary, ``C`` corrected or withdrawn), NTEs (the disclaimer, the model), and one OBX per
observation of `radtriage.exports.observations` (CWE coded values, NM numbers with UCUM units, ST words),
OBX-4 ``<result id>.<finding>`` so each finding's observations stay together and a correction replaces
exactly its own. OBX-11 is ``P`` for a first send, ``C`` for a correction and ``W`` for a withdrawal.

Why ``W`` and not ``D`` (HL7 2.5.1 table 0085): ``D`` deletes the OBX record, as if it had never been
sent, while ``W`` posts the original as wrong. An AI result that went out may already have been read, so
a withdrawal must stay visible as "this was wrong, do not use it" (as FHIR's entered-in-error does), not
disappear from the record.

`MllpClient.send` frames the message (0x0B ... 0x1C 0x0D), optionally over TLS, reads the ACK across as
many TCP reads as it takes, and raises `radtriage.outbox.SendError`: AE (or no ACK, a timeout, a
mismatched MSA-2) can be retried, AR cannot (``permanent``).
"""

from __future__ import annotations

import re
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Group as Hl7Group
from hl7apy.core import Message

from radtriage.exports.model import AMENDED, CORRECTED, FINAL, PRELIMINARY, WITHDRAWN, ExportedReport, ExportedResult
from radtriage.exports.observations import ALGORITHM_NAME, ALGORITHM_VERSION, Code, Item, groups, summary
from radtriage.outbox import SendError

VERSION = "2.5.1"
OBX_STATUS = {PRELIMINARY: "P", CORRECTED: "C", WITHDRAWN: "W"}  # table 0085
OBR_STATUS = {PRELIMINARY: "P", CORRECTED: "C", WITHDRAWN: "C"}  # table 0123: a withdrawal corrects the order's results
STATUS_NOTES = {CORRECTED: "Corrected AI result: replaces what was sent before.",
                WITHDRAWN: "AI result withdrawn: do not use it."}
ACCESSION_IN = ("both", "placer", "filler")
MAX_CONTROL_ID = 20  # MSH-10 is ST(20)
START, END = b"\x0b", b"\x1c\x0d"


@dataclass(frozen=True)
class Hl7Options:
    """What a site configures: who sends to whom, where the accession goes, the patient class."""

    sending_application: str = "RADTRIAGE"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: str = "P"  # MSH-11: P production, T training, D debugging
    accession_in: str = "both"  # OBR-2 placer, OBR-3 filler, or both
    patient_class: str = "U"  # PV1-2 (table 0004): unknown unless the site knows better


def escape(text: str) -> str:
    """Text made safe for an ER7 field (HL7 escape sequences for the separators)."""
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\")
    return out.replace("~", "\\R\\").replace("\r", " ").replace("\n", " ")


def _ts(when: datetime) -> str:
    return when.strftime("%Y%m%d%H%M%S") + (when.strftime("%z") if when.tzinfo else "")


def _study_ts(r: ExportedResult | ExportedReport) -> str:
    time = re.sub(r"\D", "", (r.study_time or "").split(".")[0])[:6]
    return (r.study_date or "") + time if r.study_date else ""


def _cwe(c: Code) -> str:
    return f"{escape(c.code)}^{escape(c.display)}^{c.system.hl7}"


def _number(v: float) -> str:
    return f"{v:.6f}".rstrip("0").rstrip(".") or "0"


def _pid3(r: ExportedResult | ExportedReport) -> str:
    """PID-3 CX: the ID with its assigning authority (an OID as universal ID, else a namespace), type MR."""
    pid, issuer = r.patient.patient_id, r.patient.issuer or ""
    if not pid:
        raise SendError("no Patient ID: the RIS cannot file a result without one", permanent=True)
    authority = f"&{issuer}&ISO" if re.fullmatch(r"[0-2](\.\d+)+", issuer) else escape(issuer)
    return f"{escape(pid)}^^^{authority}^MR"


def _xpn(dicom_name: str | None) -> str:
    """DICOM PN (family^given^middle^prefix^suffix) to XPN (family^given^middle^suffix^prefix)."""
    parts = [escape(p) for p in (dicom_name or "").split("=")[0].split("^")] + [""] * 5
    return "^".join([parts[0], parts[1], parts[2], parts[4], parts[3]]).rstrip("^")


def _msh(m: Message, control_id: str, o: Hl7Options, sent_at: datetime) -> None:
    if not control_id or len(control_id) > MAX_CONTROL_ID or not re.fullmatch(r"[\w.\-]+", control_id):
        raise ValueError(f"control id must be 1-{MAX_CONTROL_ID} letters, digits, '.', '-' or '_'")
    msh = m.msh
    msh.msh_3, msh.msh_4 = escape(o.sending_application), escape(o.sending_facility)
    msh.msh_5, msh.msh_6 = escape(o.receiving_application), escape(o.receiving_facility)
    msh.msh_7, msh.msh_9, msh.msh_10 = _ts(sent_at), "ORU^R01^ORU_R01", control_id
    msh.msh_11, msh.msh_12, msh.msh_18 = o.processing_id, VERSION, "UNICODE UTF-8"


def _patient(result: Hl7Group, r: ExportedResult | ExportedReport, o: Hl7Options) -> None:
    patient = result.add_group("ORU_R01_PATIENT")
    pid = patient.pid
    pid.pid_1, pid.pid_3 = "1", _pid3(r)
    if r.patient.name:
        pid.pid_5 = _xpn(r.patient.name)
    if r.patient.birth_date:
        pid.pid_7 = r.patient.birth_date
    if r.patient.sex in ("M", "F", "O"):
        pid.pid_8 = r.patient.sex
    visit = patient.add_group("ORU_R01_VISIT")
    visit.pv1.pv1_1, visit.pv1.pv1_2 = "1", o.patient_class


def _order(result: Hl7Group, r: ExportedResult | ExportedReport, o: Hl7Options, status: str | None = None,
           notes: list[str] | None = None) -> Hl7Group:
    if o.accession_in not in ACCESSION_IN:
        raise ValueError(f"accession_in must be one of {ACCESSION_IN}")
    acc = escape(r.accession or "")
    placer = acc if o.accession_in in ("both", "placer") else ""
    filler = acc if o.accession_in in ("both", "filler") else ""
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    order.orc.orc_1 = "RE"
    if placer:
        order.orc.orc_2 = order.obr.obr_2 = placer
    if filler:
        order.orc.orc_3 = order.obr.obr_3 = filler
    obr = order.obr
    obr.obr_1 = "1"
    obr.obr_4 = "^" + escape(r.study_description or r.modality or "imaging study")
    if _study_ts(r):
        obr.obr_7 = _study_ts(r)
    obr.obr_22, obr.obr_24, obr.obr_25 = _ts(r.created_at), "RAD", status or OBR_STATUS[r.status]
    if notes is None:
        notes = [summary(r), *([STATUS_NOTES[r.status]] if r.status in STATUS_NOTES else [])]
    for i, text in enumerate(notes, start=1):
        nte = order.add_segment("NTE")
        nte.nte_1, nte.nte_2, nte.nte_3 = str(i), "O", escape(text)
    return order


def _obx(order: Hl7Group, n: int, sub_id: str, item: Item, r: ExportedResult) -> None:
    obx = order.add_group("ORU_R01_OBSERVATION").obx
    obx.obx_1, obx.obx_3, obx.obx_4 = str(n), _cwe(item.what), sub_id
    if isinstance(item.value, Code):
        obx.obx_2, obx.obx_5 = "CWE", _cwe(item.value)
    elif isinstance(item.value, float):
        obx.obx_2, obx.obx_5 = "NM", _number(item.value)
        if item.unit:
            obx.obx_6 = f"{escape(item.unit)}^{escape(item.unit)}^UCUM"
    else:
        obx.obx_2, obx.obx_5 = "ST", escape(item.value)
    if item.abnormal:
        obx.obx_8 = "A"
    obx.obx_11, obx.obx_14 = OBX_STATUS[r.status], _ts(r.created_at)


def build_oru(r: ExportedResult, control_id: str, options: Hl7Options | None = None,
              sent_at: datetime | None = None) -> Message:
    """The ORU^R01 of one result. ``control_id`` (MSH-10) is the outbox row's: the same on every resend of
    the row, new for each row; ``sent_at`` (MSH-7) defaults to now. Raises `SendError` (permanent) when the
    result has no Patient ID, ValueError for a bad control id or option."""
    o = options or Hl7Options()
    m = Message("ORU_R01", version=VERSION, validation_level=VALIDATION_LEVEL.STRICT)
    _msh(m, control_id, o, sent_at or datetime.now(UTC))
    result = m.add_group("ORU_R01_PATIENT_RESULT")
    _patient(result, r, o)
    order = _order(result, r, o)
    algorithm = [Item(ALGORITHM_NAME, r.result.model_id), Item(ALGORITHM_VERSION, r.result.model_version)]
    n = 0
    for g in groups(r):
        for item in (*g.items, *(algorithm if g.number == 0 else ())):
            n += 1
            _obx(order, n, f"{r.result_id}.{g.number}", item, r)
    m.validate()  # strict hl7apy validation: structure, cardinality, data types
    return m


def oru_er7(r: ExportedResult, control_id: str, options: Hl7Options | None = None,
            sent_at: datetime | None = None) -> str:
    """`build_oru` as ER7 text (segments separated by CR), ready for MLLP."""
    return build_oru(r, control_id, options, sent_at).to_er7()


# --------------------------------------------------------------------------- a radiologist's report

REPORT_STATUS = {PRELIMINARY: "P", FINAL: "F", AMENDED: "C"}  # OBR-25 (table 0123) and OBX-11 (table 0085)
REPORT_CODES = {  # OBX-3 per section: the DICOM concepts of the report's SR (TID 2000)
    "examination": "121065^Procedure Description^DCM", "technique": "121065^Procedure Description^DCM",
    "findings": "121071^Finding^DCM", "impression": "121073^Impression^DCM", "ai_statement": "121106^Comment^DCM",
    "addendum": "121078^Addendum^DCM"}


def build_report_oru(r: ExportedReport, control_id: str, options: Hl7Options | None = None,
                     sent_at: datetime | None = None) -> Message:
    """The ORU^R01 of a radiologist's report: OBR-25 and every OBX-11 ``F`` when signed, ``C`` for an
    amendment (an addendum), ``P`` for a draft a site lets leave; one TX OBX per section and language
    (OBX-4 ``<language>.<n>``, lines joined by the ``\\.br\\`` escape), the signer in an NTE."""
    o, status = options or Hl7Options(), REPORT_STATUS[r.status]
    m = Message("ORU_R01", version=VERSION, validation_level=VALIDATION_LEVEL.STRICT)
    _msh(m, control_id, o, sent_at or datetime.now(UTC))
    result = m.add_group("ORU_R01_PATIENT_RESULT")
    _patient(result, r, o)
    signed = f"Signed by {r.signed_by} at {_ts(r.signed_at)}" if r.signed_by and r.signed_at else "Unsigned draft"
    notes = [signed + ("; amended by an addendum" if r.status == AMENDED else "")]
    order = _order(result, r, o, status=status, notes=notes)
    for n, s in enumerate(r.sections, start=1):
        obx = order.add_group("ORU_R01_OBSERVATION").obx
        obx.obx_1, obx.obx_2, obx.obx_3, obx.obx_4 = str(n), "TX", REPORT_CODES[s.section], f"{s.language}.{n}"
        obx.obx_5 = "\\.br\\".join(escape(line) for line in s.text.splitlines())
        obx.obx_11, obx.obx_14 = status, _ts(r.signed_at or r.created_at)
    m.validate()
    return m


def report_er7(r: ExportedReport, control_id: str, options: Hl7Options | None = None,
               sent_at: datetime | None = None) -> str:
    return build_report_oru(r, control_id, options, sent_at).to_er7()


# --------------------------------------------------------------------------- MLLP


@dataclass(frozen=True)
class Ack:
    code: str  # MSA-1: AA (or CA)
    control_id: str  # MSA-2


def _fields(segment: str, sep: str) -> list[str]:
    return segment.split(sep)


def control_id_of(er7: str) -> str:
    """MSH-10 of an ER7 message."""
    msh = er7.lstrip().split("\r")[0]
    return _fields(msh, msh[3])[9] if msh.startswith("MSH") and len(msh) > 3 else ""


def parse_ack(er7: str, control_id: str) -> Ack:
    """The ACK's MSA, checked: AA/CA accepted; AE/CE retry; AR/CR permanent; MSA-2 must be ``control_id``."""
    segments = [s for s in re.split(r"[\r\n]+", er7.strip()) if s]
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 4:
        raise SendError("the reply is not an HL7 message")
    sep = segments[0][3]
    msa = next((_fields(s, sep) for s in segments if s.startswith("MSA" + sep)), None)
    if msa is None or len(msa) < 3:
        raise SendError("the ACK has no MSA-1 and MSA-2")
    code, acked = msa[1].strip(), msa[2].split(segments[0][4] if len(segments[0]) > 4 else "^")[0].strip()
    if acked != control_id:
        raise SendError("the ACK is for another message (MSA-2 does not match MSH-10)")
    err = next((_fields(s, sep) for s in segments if s.startswith("ERR" + sep)), None)
    detail = f" (ERR-3 {err[3].split(segments[0][4])[0]})" if err and len(err) > 3 and err[3] else ""
    if code in ("AA", "CA"):
        return Ack(code, acked)
    if code in ("AR", "CR"):
        raise SendError(f"the receiver rejected the message: {code}{detail}", permanent=True)
    if code in ("AE", "CE"):
        raise SendError(f"the receiver had an application error: {code}{detail}")
    raise SendError(f"unknown acknowledgment code {code[:8]!r}")


class MllpClient:
    """Sends one message per connection and waits for its ACK (original acknowledgment mode)."""

    def __init__(self, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                 server_hostname: str | None = None, connect_timeout_s: float = 10.0, read_timeout_s: float = 30.0,
                 max_ack_bytes: int = 1 << 20) -> None:
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.server_hostname = server_hostname or host
        self.connect_timeout_s, self.read_timeout_s = connect_timeout_s, read_timeout_s
        self.max_ack_bytes = max_ack_bytes

    def send(self, message: str | Message) -> Ack:
        """Deliver ``message`` and return its accepting ACK, or raise `SendError`."""
        er7 = message.to_er7() if isinstance(message, Message) else message
        control_id = control_id_of(er7)
        try:
            with self._connect() as sock:
                sock.settimeout(self.read_timeout_s)
                sock.sendall(START + er7.encode("utf-8") + END)
                reply = self._read_frame(sock)
        except ssl.SSLCertVerificationError as exc:
            raise SendError(f"TLS: the receiver's certificate was refused ({exc.verify_message})",
                            permanent=True) from exc
        except (TimeoutError, socket.timeout) as exc:
            raise SendError("MLLP: timed out waiting for the receiver") from exc
        except OSError as exc:
            raise SendError(f"MLLP: {type(exc).__name__}: {exc.strerror or exc}") from exc
        return parse_ack(reply.decode("utf-8", errors="replace"), control_id)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        if self.ssl_context is None:
            return sock
        try:
            return self.ssl_context.wrap_socket(sock, server_hostname=self.server_hostname)
        except BaseException:
            sock.close()
            raise

    def _read_frame(self, sock: socket.socket) -> bytes:
        """One MLLP frame, however many reads it arrives in; bytes before the start block are dropped."""
        buf = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise SendError("MLLP: the receiver closed the connection before a complete ACK")
            buf += chunk
            start = buf.find(START)
            if start < 0:
                buf = b""
                continue
            end = buf.find(END, start)
            if end >= 0:
                return buf[start + 1:end]
            if len(buf) - start > self.max_ack_bytes:
                raise SendError("MLLP: the ACK is larger than allowed")
