"""The database: tables, engine, migrations and the data-access functions.

Everything outside this package reaches the tables only through the
functions in `radtriage.db` (one module per resource).
"""

from radtriage.db.engine import Database, open_database

__all__ = ["Database", "open_database"]
