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
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("patient_id_issuer", sa.String(length=64), nullable=True))
    op.create_table(
        "store_conflicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("existing_study_uid", sa.String(length=64), nullable=True),
        sa.Column("existing_series_uid", sa.String(length=64), nullable=True),
        sa.Column("mismatch", sa.JSON(), nullable=False),
        sa.Column("incoming", sa.JSON(), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("calling_ae", sa.String(length=16), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_conflicts")),
    )
    with op.batch_alter_table("store_conflicts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_store_conflicts_study_uid"), ["study_uid"], unique=False)
        batch_op.create_index(batch_op.f("ix_store_conflicts_sop_instance_uid"), ["sop_instance_uid"], unique=False)
        batch_op.create_index("ix_store_conflicts_state", ["state"], unique=False)
    # --- login attempts (accounts) ---
    op.create_table('login_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_attempts'))
    )
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_attempts_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_attempts_client'), ['client'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_attempts_username'), ['username'], unique=False)
    # --- alerts ---
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("late_route", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("ack_client", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("ack_user_agent", sa.String(length=256), nullable=True))
    op.create_table(
        "alert_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["result_id"], ["results.id"], name=op.f("fk_alert_decisions_result_id_results")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_decisions")),
        sa.UniqueConstraint("result_id", name=op.f("uq_alert_decisions_result_id")),
    )
    # results recorded before this version were decided (or swept) by it: only later ones are swept
    op.execute("INSERT INTO alert_decisions (result_id, decided_at, via, outcome) "
               "SELECT id, created_at, 'migration', 'before 0005' FROM results WHERE positive")
    # --- audit ---
    pass


def downgrade() -> None:
    # --- audit ---
    # --- alerts ---
    op.drop_table("alert_decisions")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("ack_user_agent")
        batch_op.drop_column("ack_client")
        batch_op.drop_column("late_route")
    # --- login attempts (accounts) ---
    op.drop_table('login_attempts')
    # --- conflicts (store integrity) ---
    op.drop_table("store_conflicts")
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_column("patient_id_issuer")
    pass
