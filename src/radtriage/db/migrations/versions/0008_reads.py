"""reads: a commissioning reader's truth for each shadow result; each decision's signature and report

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa


revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decision_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("signed", sa.Text(), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["decision_id"], ["model_decisions.id"],
                                name=op.f("fk_decision_reports_decision_id_model_decisions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decision_reports")),
        sa.UniqueConstraint("decision_id", name=op.f("uq_decision_reports_decision_id")),
    )
    op.create_table(
        "reads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("pipeline_id", sa.String(length=64), nullable=False),
        sa.Column("task", sa.String(length=32), nullable=False),
        sa.Column("truth", sa.JSON(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("read_by", sa.String(length=64), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["result_id"], ["results.id"], name=op.f("fk_reads_result_id_results")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_reads_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reads")),
    )
    with op.batch_alter_table("reads", schema=None) as batch_op:
        for column in ("result_id", "study_uid", "pipeline_id"):
            batch_op.create_index(batch_op.f(f"ix_reads_{column}"), [column], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reads", schema=None) as batch_op:
        for column in ("result_id", "study_uid", "pipeline_id"):
            batch_op.drop_index(batch_op.f(f"ix_reads_{column}"))
    op.drop_table("reads")
    op.drop_table("decision_reports")
