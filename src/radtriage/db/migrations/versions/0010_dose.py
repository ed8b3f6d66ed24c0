"""dose: the dose registry (reads, reports, examinations, flags) and the imported DRL sets

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa


revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UID = sa.String(length=64)
WHEN = sa.DateTime(timezone=True)


def _dose_tables() -> None:
    op.create_table(
        "dose_reads",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id", name="fk_dose_reads_job_id_jobs"), nullable=False),
        sa.Column("study_uid", UID, nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("read_at", WHEN, nullable=False),
        sa.UniqueConstraint("job_id", name="uq_dose_reads_job_id"),
    )
    op.create_table(
        "dose_reports",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_uid", UID, nullable=False),
        sa.Column("series_uid", UID, nullable=False),
        sa.Column("sop_instance_uid", UID, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("received_at", WHEN, nullable=False),
        sa.UniqueConstraint("sop_instance_uid", name="uq_dose_reports_sop_instance_uid"),
    )
    op.create_index("ix_dose_reports_study_uid", "dose_reports", ["study_uid"])


def _exam_table() -> None:
    text = {name: sa.Column(name, sa.String(length=n)) for name, n in (
        ("patient_key", 64), ("protocol", 64), ("study_description", 64), ("examination", 64), ("band", 32),
        ("sex", 1), ("drl_set", 128))}
    numbers = [sa.Column(name, sa.Float()) for name in ("age_years", "weight_kg", "ctdivol", "dlp", "dap",
                                                        "entrance_dose")]
    op.create_table(
        "dose_exams",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_uid", UID, nullable=False),
        text["patient_key"],
        sa.Column("performed_at", WHEN, nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("facility", sa.String(length=64), nullable=False),
        sa.Column("scanner", sa.String(length=128), nullable=False),
        text["protocol"], text["study_description"], text["examination"], text["band"], text["sex"],
        sa.Column("pregnant", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("phantom_cm", sa.Integer()),
        *numbers,
        text["drl_set"],
        sa.Column("updated_at", WHEN, nullable=False),
        sa.UniqueConstraint("study_uid", name="uq_dose_exams_study_uid"),
    )
    op.create_index("ix_dose_exams_patient_key", "dose_exams", ["patient_key"])
    op.create_index("ix_dose_exams_examination_band", "dose_exams", ["examination", "band", "performed_at"])


def _flag_tables() -> None:
    op.create_table(
        "dose_flags",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_uid", UID, nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("quantity", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float()),
        sa.Column("level", sa.Float()),
        sa.Column("unit", sa.String(length=16)),
        sa.Column("drl_set", sa.String(length=128)),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("digested_at", WHEN),
        sa.Column("created_at", WHEN, nullable=False),
        sa.UniqueConstraint("study_uid", "reason", "quantity", name="uq_dose_flags_study_reason_quantity"),
    )
    op.create_index("ix_dose_flags_study_uid", "dose_flags", ["study_uid"])
    op.create_table(
        "drl_sets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("imported_at", WHEN, nullable=False),
        sa.Column("imported_by", sa.String(length=64), nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_drl_sets_name_version"),
    )


def upgrade() -> None:
    _dose_tables()
    _exam_table()
    _flag_tables()


def downgrade() -> None:
    for table in ("drl_sets", "dose_flags", "dose_exams", "dose_reports", "dose_reads"):
        op.drop_table(table)
