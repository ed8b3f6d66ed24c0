"""one outbox: alert deliveries become rows of the generic ``outbox`` table (kind ``alert``), every row kept

Each ``alert_deliveries`` row becomes an ``outbox`` row with the same id,
idempotency key, state, attempts, lease and times: ``subject`` is the alert id,
``target`` the member, and ``payload`` keeps the delivery kind (page | taken)
and level. A pending delivery is therefore sent after the upgrade, and one in
flight is sent again with the same key. Downgrading moves the alert rows back
(rows of other kinds had no table before this revision and are dropped).

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TIMES = ("next_attempt_at", "lease_until", "created_at", "first_attempt_at", "delivered_at", "finished_at")
_COMMON = ("id", "channel", "idempotency_key", "state", "attempts", "last_error") + _TIMES


def _time(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _common() -> list[sa.Column]:
    return [
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _time("next_attempt_at", False),
        _time("lease_until"),
        sa.Column("last_error", sa.Text(), nullable=True),
        _time("created_at", False),
        _time("first_attempt_at"),
        _time("delivered_at"),
        _time("finished_at"),
    ]




def _columns(*names: str) -> list[sa.ColumnClause]:
    return [sa.column(c, sa.DateTime(timezone=True) if c in _TIMES else sa.JSON() if c == "payload" else None)
            for c in _COMMON + names]


_outbox = sa.table("outbox", *_columns("kind", "subject", "target", "payload"))
_deliveries = sa.table("alert_deliveries", *_columns("alert_id", "kind", "level", "member"))


def _copy(rows: list[dict], table: sa.TableClause) -> None:
    """Insert ``rows`` keeping their ids, then move PostgreSQL's id sequence past them."""
    for i in range(0, len(rows), 500):
        op.get_bind().execute(table.insert(), rows[i:i + 500])
    if rows and op.get_bind().dialect.name == "postgresql":
        op.execute(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), (SELECT max(id) FROM {table.name}))")


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        *_common(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_outbox_idempotency_key")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_due", ["state", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_outbox_subject", ["kind", "subject"], unique=False)
    old = op.get_bind().execute(sa.select(_deliveries).order_by(_deliveries.c.id)).mappings().all()
    _copy([{**{c: r[c] for c in _COMMON}, "kind": "alert", "subject": str(r["alert_id"]), "target": r["member"],
            "payload": {"kind": r["kind"], "level": r["level"]}} for r in old], _outbox)
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_deliveries_due")
        batch_op.drop_index(batch_op.f("ix_alert_deliveries_alert_id"))
    op.drop_table("alert_deliveries")


def downgrade() -> None:
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("member", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        *_common(),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_alert_deliveries_alert_id_alerts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_alert_deliveries_idempotency_key")),
    )
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_deliveries_alert_id"), ["alert_id"], unique=False)
        batch_op.create_index("ix_alert_deliveries_due", ["state", "next_attempt_at"], unique=False)
    rows = op.get_bind().execute(sa.select(_outbox).where(_outbox.c.kind == "alert").order_by(_outbox.c.id))
    _copy([{**{c: r[c] for c in _COMMON}, "alert_id": int(r["subject"]), "kind": r["payload"]["kind"],
            "level": r["payload"]["level"], "member": r["target"]} for r in rows.mappings().all()], _deliveries)
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_subject")
        batch_op.drop_index("ix_outbox_due")
    op.drop_table("outbox")
