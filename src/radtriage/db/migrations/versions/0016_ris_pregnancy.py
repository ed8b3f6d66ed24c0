"""ris pregnancy: the pregnancy status the site's RIS sends for an order or a patient (dose registry)

Revision ID: 0016
Revises: 0015
"""
from alembic import op
import sqlalchemy as sa


revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ris_pregnancy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("accession_number", sa.String(length=16), nullable=True),
        sa.Column("patient_key", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("recorded_at", WHEN, nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("received_at", WHEN, nullable=False),
        sa.Column("received_by", sa.String(length=64), nullable=False),
        sa.Column("applied_at", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ris_pregnancy"),
    )
    op.create_index("ix_ris_pregnancy_accession_number", "ris_pregnancy", ["accession_number"])
    op.create_index("ix_ris_pregnancy_patient_key", "ris_pregnancy", ["patient_key"])


def downgrade() -> None:
    op.drop_index("ix_ris_pregnancy_patient_key", table_name="ris_pregnancy")
    op.drop_index("ix_ris_pregnancy_accession_number", table_name="ris_pregnancy")
    op.drop_table("ris_pregnancy")
