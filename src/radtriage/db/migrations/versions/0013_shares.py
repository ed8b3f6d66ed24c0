"""shares: authorised QR shares of a study and the sessions that opened them

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa


revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "shares",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lookup", sa.String(length=64), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("folder", sa.String(length=32), nullable=False),
        sa.Column("issued_by", sa.String(length=64), nullable=False),
        sa.Column("issued_role", sa.String(length=16), nullable=False),
        sa.Column("consent", sa.String(length=32), nullable=False),
        sa.Column("legal_basis", sa.String(length=128), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=64), nullable=True),
        sa.Column("recipient_digest", sa.String(length=64), nullable=True),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("passcode_hash", sa.String(length=128), nullable=False),
        sa.Column("failed_tries", sa.Integer(), nullable=False),
        sa.Column("max_opens", sa.Integer(), nullable=False),
        sa.Column("opens", sa.Integer(), nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("locked_at", WHEN, nullable=True),
        sa.Column("revoked_at", WHEN, nullable=True),
        sa.Column("revoked_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_shares"),
        sa.UniqueConstraint("lookup", name="uq_shares_lookup"),
        sa.UniqueConstraint("folder", name="uq_shares_folder"),
    )
    op.create_index("ix_shares_study_uid", "shares", ["study_uid"])
    op.create_table(
        "share_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("share_id", sa.Integer(), sa.ForeignKey("shares.id", name="fk_share_sessions_share_id_shares"),
                  nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_share_sessions"),
        sa.UniqueConstraint("digest", name="uq_share_sessions_digest"),
    )
    op.create_index("ix_share_sessions_share_id", "share_sessions", ["share_id"])


def downgrade() -> None:
    op.drop_index("ix_share_sessions_share_id", table_name="share_sessions")
    op.drop_table("share_sessions")
    op.drop_index("ix_shares_study_uid", table_name="shares")
    op.drop_table("shares")
