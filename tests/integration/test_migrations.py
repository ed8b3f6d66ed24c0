"""The Alembic migrations build exactly the tables the code declares, and can be undone."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic import command

from radtriage.db.engine import MIGRATIONS_DIR, open_database
from radtriage.db.tables import metadata


def test_migrations_match_the_tables_and_downgrade(db_url):
    db = open_database(db_url)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], diff
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
        conn.commit()
    db.migrate()  # and up again
    db.dispose()
