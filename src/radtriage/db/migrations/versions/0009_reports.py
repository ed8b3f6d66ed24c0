"""reports: a study's report (draft, signed) and its addenda

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("removed", sa.JSON(), nullable=False),
        sa.Column("result_ids", sa.JSON(), nullable=False),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=True),
        sa.Column("signed_by_id", sa.Integer(), nullable=True),
        sa.Column("signed_by", sa.String(length=128), nullable=True),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["signed_by_id"], ["users.id"], name=op.f("fk_reports_signed_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
        sa.UniqueConstraint("study_uid", name=op.f("uq_reports_study_uid")),
    )
    op.create_table(
        "report_addenda",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("signed_by_id", sa.Integer(), nullable=False),
        sa.Column("signed_by", sa.String(length=128), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["report_id"], ["reports.id"], name=op.f("fk_report_addenda_report_id_reports")),
        sa.ForeignKeyConstraint(["signed_by_id"], ["users.id"], name=op.f("fk_report_addenda_signed_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_addenda")),
    )
    with op.batch_alter_table("report_addenda", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_report_addenda_report_id"), ["report_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("report_addenda", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_addenda_report_id"))
    op.drop_table("report_addenda")
    op.drop_table("reports")
