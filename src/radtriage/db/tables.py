"""SQLAlchemy Core tables. The Alembic migrations in ``migrations/`` create them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

UID = String(64)

studies = Table(
    "studies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_uid", UID, nullable=False, unique=True),
    Column("accession_number", String(64)),
    Column("patient_id", String(64)),
    Column("patient_id_issuer", String(64)),  # Issuer of Patient ID (0010,0021), where sent
    Column("patient_name", String(324)),
    Column("patient_birth_date", String(8)),
    Column("patient_sex", String(16)),
    Column("study_date", String(8)),
    Column("study_time", String(16)),
    Column("study_description", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("site", String(64), index=True),  # the site of origin at a hub (radtriage.forward); None: this site
)

associations = Table(
    "associations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("calling_ae", String(16), nullable=False),
    Column("peer_address", String(64)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("how_closed", String(16)),
)

series = Table(
    "series",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_id", Integer, ForeignKey("studies.id"), nullable=False, index=True),
    Column("series_uid", UID, nullable=False, unique=True),
    Column("modality", String(16)),
    Column("series_number", Integer),
    Column("series_description", String(64)),
    Column("body_part", String(16)),
    Column("header", JSON, nullable=False),
    Column("header_from_localizer", Boolean, nullable=False),
    # receiving -> ready (a job was written); a late instance reopens it.
    Column("state", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("first_received_at", DateTime(timezone=True), nullable=False),
    Column("last_received_at", DateTime(timezone=True), nullable=False),
    Column("last_association_id", String(36), ForeignKey("associations.id")),
    Column("closed_at", DateTime(timezone=True)),
    Column("storage_dir", Text, nullable=False),
)
Index("ix_series_state", series.c.state)

instances = Table(
    "instances",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("series_id", Integer, ForeignKey("series.id"), nullable=False, index=True),
    Column("sop_instance_uid", UID, nullable=False, unique=True),
    Column("sop_class_uid", UID, nullable=False),
    Column("transfer_syntax_uid", UID, nullable=False),
    Column("instance_number", Integer),
    Column("is_localizer", Boolean, nullable=False),
    Column("path", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("calling_ae", String(16)),
    Column("source", String(16), nullable=False),
    Column("association_id", String(36), ForeignKey("associations.id")),
)

# An instance refused because it contradicts what is stored (a PACS's "patient mismatch"): its Study
# Instance UID is stored under another patient, or its SOP Instance / Series Instance UID under another
# series or study. Its bytes are held under the spool's .conflicts/ until an administrator accepts it as a
# correction of the patient's demographics (patient_mismatch only) or keeps it refused.
store_conflicts = Table(
    "store_conflicts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(24), nullable=False),  # patient_mismatch | sop_elsewhere | series_elsewhere
    Column("state", String(16), nullable=False),  # open | accepted | refused
    Column("study_uid", UID, nullable=False, index=True),
    Column("series_uid", UID, nullable=False),
    Column("sop_instance_uid", UID, nullable=False, index=True),
    Column("sop_class_uid", UID, nullable=False),
    Column("existing_study_uid", UID),  # where the UID is stored (sop_elsewhere, series_elsewhere)
    Column("existing_series_uid", UID),
    Column("mismatch", JSON, nullable=False),  # the names of the fields that differ, never their values
    Column("incoming", JSON, nullable=False),  # the instance's patient and study fields (shown to admins only)
    Column("path", Text),  # the held copy; None once refused
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("source", String(16), nullable=False),
    Column("calling_ae", String(16)),
    Column("attempts", Integer, nullable=False),  # the same bytes refused again while open
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
    Column("resolved_by", String(64)),
)
Index("ix_store_conflicts_state", store_conflicts.c.state)

instance_replacements = Table(
    "instance_replacements",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sop_instance_uid", UID, nullable=False, index=True),
    Column("old_sha256", String(64), nullable=False),
    Column("new_sha256", String(64), nullable=False),
    Column("old_path", Text, nullable=False),
    Column("calling_ae", String(16)),
    Column("source", String(16), nullable=False),
    Column("replaced_at", DateTime(timezone=True), nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("case_id", String(80), nullable=False, unique=True),
    Column("series_id", Integer, ForeignKey("series.id"), nullable=False, index=True),
    Column("series_version", Integer, nullable=False),
    # ready -> running -> done | failed; no_ai when no pipeline applies
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("lease_until", DateTime(timezone=True)),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("worker", String(64)),
    Column("last_error", Text),
    Column("case", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_jobs_state", jobs.c.state)
Index("ix_jobs_updated_at", jobs.c.updated_at)


# One row per (job, pipeline): recording a result twice (a retried job) keeps the first.
results = Table(
    "results",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False),
    Column("pipeline_id", String(64), nullable=False),
    Column("pipeline_version", String(32), nullable=False),
    Column("study_uid", UID, nullable=False, index=True),
    Column("series_uid", UID, nullable=False),
    Column("task", String(32), nullable=False),
    Column("model_id", String(64), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("positive", Boolean, nullable=False),
    Column("priority", String(16), nullable=False),
    Column("result", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # the pipeline's state when the result was recorded (radtriage.governance): only live results count
    Column("state", String(16), nullable=False, server_default="live"),
    UniqueConstraint("job_id", "pipeline_id", name="uq_results_job_pipeline"),
)


# --- accounts ---------------------------------------------------------------------

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(128)),
    Column("role", String(16), nullable=False),  # radiologist | stroke | admin | service
    Column("password_hash", String(256)),  # None: token-only (service accounts)
    Column("disabled", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_login_at", DateTime(timezone=True)),
)

# Bearer tokens for the API: only their SHA-256 is stored.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False, index=True),
    Column("name", String(64), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)

# Page sessions: the cookie holds a random secret, the table its SHA-256.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# Failed logins, counted per user name and per client address by every API worker alike.
# Rows older than the login window are removed as new ones come.
login_attempts = Table(
    "login_attempts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("username", String(64), nullable=False, index=True),  # as typed, lower-cased
    Column("client", String(64), nullable=False, index=True),  # the address that connected, or its proxy's client
)

# --- the worklist -----------------------------------------------------------------

# One row per study, kept up to date by `radtriage.triage` from the jobs and results.
worklist = Table(
    "worklist",
    metadata,
    Column("study_id", Integer, ForeignKey("studies.id"), primary_key=True),
    Column("study_uid", UID, nullable=False, unique=True),
    Column("priority", String(16), nullable=False),
    Column("priority_rank", Integer, nullable=False),  # 0 = most urgent; the sort key with received_at
    Column("priority_reason", String(256)),
    Column("ai_state", String(16), nullable=False),  # pending | done | none | failed | off
    Column("status", String(16), nullable=False),  # unread | claimed | reported
    Column("claimed_by", String(64)),
    Column("claimed_at", DateTime(timezone=True)),
    Column("reported_by", String(64)),
    Column("reported_at", DateTime(timezone=True)),
    Column("modalities", String(64)),
    Column("tasks", String(256), nullable=False),  # ",ich,lvo," so that one task is a LIKE away
    Column("calling_ae", String(16)),
    Column("flags", JSON, nullable=False),  # [{task, text, positive, priority}]
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("revision", Integer, nullable=False),
)
Index("ix_worklist_order", worklist.c.priority_rank, worklist.c.received_at)
Index("ix_worklist_updated_at", worklist.c.updated_at)

priority_changes = Table(
    "priority_changes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_uid", UID, nullable=False, index=True),
    Column("old_priority", String(16)),
    Column("new_priority", String(16), nullable=False),
    Column("reason", String(256)),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_uid", UID, nullable=False, index=True),
    Column("result_id", Integer, ForeignKey("results.id"), nullable=False),
    Column("finding_code", String(64), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("verdict", String(16), nullable=False),  # agree | disagree | unsure
    Column("comment", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Who did what to which study, and when. Never updated, never deleted by the service.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("actor", String(64), nullable=False),  # a username, or "system"
    Column("role", String(16)),
    Column("action", String(32), nullable=False, index=True),
    Column("study_uid", UID, index=True),
    Column("detail", JSON, nullable=False),
    Column("client", String(64)),
)

# The alerts (radtriage.db.alerts is the path to them): one row per alert; its deliveries are outbox rows.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("dedup_key", String(64), nullable=False, unique=True),  # sha256 of study, policy, signature, generation
    Column("study_uid", UID, nullable=False, index=True),
    Column("series_uid", UID, nullable=False),
    Column("case_id", String(80), nullable=False),
    Column("pipeline_id", String(64), nullable=False),
    Column("policy", String(32), nullable=False),
    Column("finding_code", String(32), nullable=False),
    Column("signature", String(256), nullable=False),  # the finding and its qualifiers (subtype, side, segment)
    Column("priority", String(16), nullable=False),
    Column("probability", Float),
    Column("content", JSON, nullable=False),  # radtriage.alerts.message.AlertContent, identifiers masked
    Column("key_image", Text),
    Column("reason", String(16), nullable=False),  # new | new_finding | upgraded | recovered
    Column("supersedes", Integer, ForeignKey("alerts.id")),
    Column("state", String(16), nullable=False),
    Column("level", Integer, nullable=False),  # index of the policy level paged last
    Column("exhausted", Boolean, nullable=False),  # the last level timed out unanswered
    # decided too long after the study arrived: pages the policy's late levels (the reading radiologist)
    Column("late_route", Boolean, nullable=False, server_default=false()),
    Column("next_escalation_at", DateTime(timezone=True)),
    Column("received_at", DateTime(timezone=True), nullable=False),  # the study's last instance
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("first_delivered_at", DateTime(timezone=True)),
    Column("acked_at", DateTime(timezone=True)),
    Column("acked_by", String(64)),  # username, or member:<id> for a link
    Column("acked_by_name", String(128)),
    Column("acked_member", String(32)),
    Column("ack_via", String(16)),  # link | api | page
    Column("ack_client", String(64)),  # the address that used a one-click link
    Column("ack_user_agent", String(256)),  # and its browser or mail scanner
    Column("resolved_at", DateTime(timezone=True)),
    Column("resolved_by", String(64)),
    Column("resolved_reason", String(128)),
)
Index("ix_alerts_state_escalation", alerts.c.state, alerts.c.next_escalation_at)

# The outbox (radtriage.db.outbox is the path to it; radtriage.outbox sends it): one row per message that
# leaves, written in the transaction that decided it. ``kind`` says whose it is (alert today; export,
# forward, share later), ``subject`` what it is about (an alert id), ``target`` and ``channel`` where it goes.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("target", String(64), nullable=False),  # an alert's member id
    Column("channel", String(16), nullable=False),
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("payload", JSON, nullable=False),  # what the kind's sender needs besides (an alert page's level)
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_until", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("first_attempt_at", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
)
Index("ix_outbox_due", outbox.c.state, outbox.c.next_attempt_at)
Index("ix_outbox_subject", outbox.c.kind, outbox.c.subject)

# One row per positive result of a pipeline with an alert policy once its alert decision is made (in
# the transaction that writes the alert), so the recovery sweep finds every result never decided.
alert_decisions = Table(
    "alert_decisions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("result_id", Integer, ForeignKey("results.id"), nullable=False, unique=True),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("via", String(16), nullable=False),  # dispatcher | recovery | migration
    Column("outcome", String(32), nullable=False),  # created | duplicate | not paged | before 0005
)

# Decisions on a pipeline at this site (radtriage.governance): promote (live), demote (shadow), suspend.
# Never updated or deleted; a pipeline's state is the newest decision for its fingerprint (pipeline id, model
# id, version and sha256, thresholds), so a new model version or a changed threshold starts again in shadow.
model_decisions = Table(
    "model_decisions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pipeline_id", String(64), nullable=False, index=True),
    Column("fingerprint", String(64), nullable=False),  # sha256 of the identity below
    Column("model_id", String(128), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("model_sha256", String(64), nullable=False),
    Column("thresholds", JSON, nullable=False),
    Column("state", String(16), nullable=False),  # live | shadow | suspended
    Column("action", String(16), nullable=False),  # promote | demote | suspend
    Column("reason", Text, nullable=False),
    Column("evidence", JSON),  # promote: the metrics checked and the floors they met
    Column("decided_by", String(64), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
)

# Each decision's signature (HMAC-SHA256 with the site key over the decision and its evidence digest) and its
# commissioning report (printable HTML), written in the decision's transaction; never updated or deleted.
decision_reports = Table(
    "decision_reports",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("decision_id", Integer, ForeignKey("model_decisions.id"), nullable=False, unique=True),
    Column("signed", Text, nullable=False),  # the canonical JSON that was signed
    Column("signature", String(64), nullable=False),
    Column("report", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# A commissioning reader's truth for a shadow result (the silent trial), in the task's own terms
# (radtriage.validation.truth). Never updated: a later read of the same result replaces it for the evidence.
reads = Table(
    "reads",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("result_id", Integer, ForeignKey("results.id"), nullable=False, index=True),
    Column("study_uid", UID, nullable=False, index=True),
    Column("pipeline_id", String(64), nullable=False, index=True),
    Column("task", String(32), nullable=False),
    Column("truth", JSON, nullable=False),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("read_by", String(64), nullable=False),
    Column("read_at", DateTime(timezone=True), nullable=False),
)

# --- reports (radtriage.reports) ----------------------------------------------------------

# A study's report: drafted from its live AI results, edited (autosaved, ``revision`` counts the saves) and
# signed by a radiologist. ``body`` holds each language's sections; ``removed`` the AI findings the reader
# took out ("<result id>:<finding index>"). Signed is final: a change after that is an addendum.
reports = Table(
    "reports",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_uid", UID, nullable=False, unique=True),
    Column("state", String(16), nullable=False),  # draft | signed
    Column("body", JSON, nullable=False),
    Column("removed", JSON, nullable=False),
    Column("result_ids", JSON, nullable=False),
    Column("languages", JSON, nullable=False),  # the languages signed (and sent)
    Column("revision", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(64)),
    Column("signed_by_id", Integer, ForeignKey("users.id")),
    Column("signed_by", String(128)),
    Column("signed_at", DateTime(timezone=True)),
)

# An addendum to a signed report: signed when it is made, never changed, sent as an amendment.
report_addenda = Table(
    "report_addenda",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("report_id", Integer, ForeignKey("reports.id"), nullable=False, index=True),
    Column("language", String(16), nullable=False),
    Column("text", Text, nullable=False),
    Column("signed_by_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("signed_by", String(128), nullable=False),
    Column("signed_at", DateTime(timezone=True), nullable=False),
)

# --- the dose registry (radtriage.dose) ----------------------------------------------

# Each closed series version the dose registry has read (its job), and what it found.
dose_reads = Table(
    "dose_reads",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False, unique=True),
    Column("study_uid", UID, nullable=False),
    Column("outcome", String(16), nullable=False),  # rdsr | ct_header | xr_header | none | error
    Column("read_at", DateTime(timezone=True), nullable=False),
)

# The dose of one object: an RDSR, or one image series' headers (estimated for CT); events as JSON.
dose_reports = Table(
    "dose_reports",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_uid", UID, nullable=False, index=True),
    Column("series_uid", UID, nullable=False),
    Column("sop_instance_uid", UID, nullable=False, unique=True),
    Column("source", String(16), nullable=False),  # rdsr | header
    Column("estimated", Boolean, nullable=False),
    Column("modality", String(16), nullable=False),
    Column("report", JSON, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

# One examination (a study) as the registry judges it: from its RDSRs where any came, else its headers.
dose_exams = Table(
    "dose_exams",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_uid", UID, nullable=False, unique=True),
    Column("patient_key", String(64), index=True),  # a one-way hash of issuer and patient ID (repeats)
    Column("performed_at", DateTime(timezone=True), nullable=False),
    Column("modality", String(16), nullable=False),
    Column("facility", String(64), nullable=False),
    Column("scanner", String(128), nullable=False),
    Column("protocol", String(64)),
    Column("study_description", String(64)),
    Column("examination", String(64)),  # the DRL examination the site's mapping gives; None: unmapped
    Column("band", String(32)),  # the DRL set's age / weight band
    Column("age_years", Float),
    Column("weight_kg", Float),
    Column("sex", String(1)),
    Column("pregnant", Boolean, nullable=False),
    Column("source", String(16), nullable=False),  # rdsr | header
    Column("estimated", Boolean, nullable=False),
    Column("phantom_cm", Integer),  # 16 | 32 | None: CTDIvol and DLP are on this phantom
    Column("ctdivol", Float),  # mGy (the highest of the acquisitions on the phantom)
    Column("dlp", Float),  # mGy.cm (the examination's total on the phantom)
    Column("dap", Float),  # Gy.cm2
    Column("entrance_dose", Float),  # mGy
    Column("dw_cm", Float),  # water-equivalent diameter from the CT images (AAPM 220)
    Column("ssde", Float),  # mGy: size-specific dose estimate, body CT (AAPM 204)
    Column("drl_set", String(128)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_dose_exams_examination_band", dose_exams.c.examination, dose_exams.c.band, dose_exams.c.performed_at)
# local DRLs (radtriage.dose.local): the medians per facility or scanner read in group order from the index alone
_DRL_KEYS = (dose_exams.c.examination, dose_exams.c.band, dose_exams.c.phantom_cm)
_DRL_INCLUDE = ["ctdivol", "dlp", "dap", "entrance_dose", "performed_at"]
Index("ix_dose_exams_local_drl_facility", *_DRL_KEYS, dose_exams.c.facility, postgresql_include=_DRL_INCLUDE)
Index("ix_dose_exams_local_drl_scanner", *_DRL_KEYS, dose_exams.c.scanner, postgresql_include=_DRL_INCLUDE)

# Why an examination was flagged: above a DRL (or the site's multiple), a child, a pregnant patient, a repeat.
dose_flags = Table(
    "dose_flags",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_uid", UID, nullable=False, index=True),
    Column("reason", String(32), nullable=False),
    Column("quantity", String(16), nullable=False),  # CTDIvol | DLP | DAP | EntranceDose | "-"
    Column("value", Float),
    Column("level", Float),
    Column("unit", String(16)),
    Column("drl_set", String(128)),
    Column("urgent", Boolean, nullable=False),  # told at once; else in the daily digest
    Column("detail", Text, nullable=False),
    Column("digested_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("study_uid", "reason", "quantity", name="uq_dose_flags_study_reason_quantity"),
)

# A pregnancy status the site's RIS sent for an order (accession) or a patient (a one-way key of issuer and
# ID, as dose_exams.patient_key); applied_at: when the registry re-judged the examinations it names.
ris_pregnancy = Table(
    "ris_pregnancy",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("accession_number", String(16), index=True),
    Column("patient_key", String(64), index=True),
    Column("status", String(16), nullable=False),  # pregnant | not_pregnant | unknown
    Column("recorded_at", DateTime(timezone=True), nullable=False),  # when the RIS recorded it
    Column("source", String(64), nullable=False),  # the sending system, as it names itself
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("received_by", String(64), nullable=False),
    Column("applied_at", DateTime(timezone=True)),
)

# A DRL set as imported (the file's rows as data), one row per name and version.
drl_sets = Table(
    "drl_sets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False),
    Column("version", String(32), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("document", JSON, nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Column("imported_by", String(64), nullable=False),
    UniqueConstraint("name", "version", name="uq_drl_sets_name_version"),
)

# Authorised shares of one study (patient-carried QR links, radtriage.sharing). The link's id is stored only as
# its SHA-256 (lookup) and its key not at all: the shared copy under data/shares/<folder> is encrypted with it.
shares = Table(
    "shares",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("lookup", String(64), nullable=False, unique=True),  # SHA-256 of the link's id
    Column("study_uid", UID, nullable=False, index=True),
    Column("folder", String(32), nullable=False, unique=True),  # random, not derived from the link
    Column("issued_by", String(64), nullable=False),
    Column("issued_role", String(16), nullable=False),
    Column("consent", String(32), nullable=False),  # who consented: patient | guardian | representative
    Column("legal_basis", String(128), nullable=False),
    Column("audience", String(16), nullable=False),  # anyone (link + passcode) | hospital (+ its token)
    Column("recipient", String(64)),  # the named receiving hospital
    Column("recipient_digest", String(64)),  # SHA-256 of the hospital's token
    Column("scope", String(16), nullable=False),  # study | key_images
    Column("instances", Integer, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("passcode_hash", String(128), nullable=False),  # Argon2id
    Column("failed_tries", Integer, nullable=False),
    Column("max_opens", Integer, nullable=False),
    Column("opens", Integer, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("locked_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_by", String(64)),
)

# An opened share: the holder's browser session (cookie digest), valid until expires_at.
share_sessions = Table(
    "share_sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("share_id", Integer, ForeignKey("shares.id"), nullable=False, index=True),
    Column("digest", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)


# --- at a hub: the AI results of its edge gateways (radtriage.forward.payload) ---------------

# One result an edge recorded, kept once per (site, edge's result id); shown with its origin, never counted
# for the hub's priority (docs/forwarding.md).
edge_results = Table(
    "edge_results",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("site", String(64), nullable=False),
    Column("edge_result_id", Integer, nullable=False),
    Column("study_uid", UID, nullable=False, index=True),
    Column("series_uid", UID, nullable=False),
    Column("pipeline_id", String(64), nullable=False),
    Column("pipeline_version", String(32), nullable=False),
    Column("task", String(32), nullable=False),
    Column("model_id", String(64), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("state", String(16), nullable=False),  # the pipeline's state at the edge: live | shadow
    Column("positive", Boolean, nullable=False),
    Column("priority", String(16), nullable=False),  # the edge's own priority for it
    Column("result", JSON, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),  # at the edge
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("received_by", String(64), nullable=False),  # the edge's service account
    UniqueConstraint("site", "edge_result_id", name="uq_edge_results_site_result"),
)
