"""hardening: patient-mismatch conflicts, login attempts, alert acknowledgement evidence, audit export

Revision ID: 0005
Revises: 0004
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # --- conflicts (store integrity) ---
    # --- login attempts (accounts) ---
    # --- alerts ---
    # --- audit ---
    pass


def downgrade() -> None:
    # --- audit ---
    # --- alerts ---
    # --- login attempts (accounts) ---
    # --- conflicts (store integrity) ---
    pass
