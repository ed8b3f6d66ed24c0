"""Migrations 0004-0006 create exactly the alert tables and the outbox that `radtriage.db.tables` describes."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from radtriage.db import alerts, open_database
from radtriage.db.tables import metadata, outbox


def test_migration_matches_the_table_definitions(tmp_path):
    db = open_database(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        db.dispose()
    ours = {alerts.alerts.name, alerts.alert_decisions.name, outbox.name}
    mine = [d for d in diff if any(name in repr(d) for name in ours)]
    assert mine == []
