"""governance: each result keeps its pipeline's state (live | shadow) when recorded; decisions on pipelines

Results recorded before this revision were all counted, so they become ``live``.

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa


revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state", sa.String(length=16), nullable=False, server_default="live"))
    op.create_table(
        "model_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pipeline_id", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("model_id", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("model_sha256", sa.String(length=64), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_decisions")),
    )
    with op.batch_alter_table("model_decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_decisions_pipeline_id"), ["pipeline_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("model_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_decisions_pipeline_id"))
    op.drop_table("model_decisions")
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_column("state")
