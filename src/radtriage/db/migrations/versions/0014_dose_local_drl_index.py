"""dose local DRLs: covering indexes for the median per facility and per scanner

The local DRL query groups the registry's examinations by examination, band, phantom and facility (or
scanner) and takes the median of each quantity: with these indexes PostgreSQL reads them in that order from
the index alone (INCLUDE: the quantities and the date), with no sort of the table.

Revision ID: 0014
Revises: 0013
"""
from alembic import op


revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

KEYS = ("examination", "band", "phantom_cm")
INCLUDE = ["ctdivol", "dlp", "dap", "entrance_dose", "performed_at"]


def upgrade() -> None:
    for group in ("facility", "scanner"):
        op.create_index(f"ix_dose_exams_local_drl_{group}", "dose_exams", [*KEYS, group],
                        postgresql_include=INCLUDE)


def downgrade() -> None:
    for group in ("facility", "scanner"):
        op.drop_index(f"ix_dose_exams_local_drl_{group}", table_name="dose_exams")
