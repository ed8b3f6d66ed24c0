"""dose size: each examination's water-equivalent diameter and SSDE (AAPM 204 / 220)

Revision ID: 0012
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa


revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dose_exams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dw_cm", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("ssde", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dose_exams", schema=None) as batch_op:
        batch_op.drop_column("ssde")
        batch_op.drop_column("dw_cm")
