"""`radtriage.db.changes`: per-table write versions of this process, and the `Memo` cache they key."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from sqlalchemy import select

from radtriage.db import open_database
from radtriage.db.changes import Memo, changes
from radtriage.db.tables import users, worklist


def test_versions_move_on_writes_to_their_tables_only_and_again_after_the_commit(tmp_path):
    db = open_database(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        seen = changes(db)
        assert changes(db) is seen
        before, others = seen.version(worklist.name), seen.version(users.name)
        with db.read() as conn:
            conn.execute(select(users.c.id)).all()
        assert seen.version(users.name) == others  # reading moves nothing
        with db.write() as conn:
            conn.exec_driver_sql("SELECT 1")
            conn.execute(users.insert().values(username="a", role="service", disabled=False,
                                               created_at=datetime.now(UTC)))
            during = seen.version(users.name)
            assert during > others
        assert seen.version(users.name) > during  # and again once the transaction is over
        assert seen.version(worklist.name) == before
        with db.write() as conn:
            conn.exec_driver_sql("UPDATE users SET disabled = 1")  # textual SQL: every table may have changed
        assert seen.version(worklist.name) > before
    finally:
        db.dispose()


def test_memo_serves_an_entry_for_its_ttl_and_version_only():
    now = [0.0]
    memo: Memo[str] = Memo(ttl_s=1.0, max_entries=2, clock=lambda: now[0])
    memo.put("k", 1, "a")
    assert memo.get("k", 1) == "a" and memo.get("k", 2) is None and memo.peek("k", 1) == "a"
    now[0] = 1.0
    assert memo.get("k", 1) is None and memo.peek("k", 1, stale_s=3.0) is None  # nobody is rebuilding it
    memo.put("k2", 1, "b")
    memo.put("k3", 1, "c")  # over max_entries: the old ones go
    assert memo.get("k2", 1) is None and memo.get("k3", 1) == "c"


def test_memo_builds_once_for_many_callers_and_serves_the_old_entry_meanwhile():
    memo: Memo[str] = Memo(ttl_s=0.05)
    memo.put("k", 1, "old")
    time.sleep(0.06)
    builds, started, release = [], threading.Event(), threading.Event()

    def build():
        builds.append(1)
        started.set()
        release.wait(5)
        return "new"

    builder = threading.Thread(target=lambda: memo.get_or_build("k", lambda: 1, build, stale_s=3.0))
    builder.start()
    assert started.wait(5)
    assert memo.peek("k", 1, stale_s=3.0) == "old"  # same version, being rebuilt: the old one will do
    assert memo.peek("k", 2, stale_s=3.0) is None  # but never across a change
    waiters = [threading.Thread(target=lambda: memo.get_or_build("k", lambda: 1, build)) for _ in range(5)]
    for t in waiters:
        t.start()
    release.set()
    for t in (builder, *waiters):
        t.join(5)
    assert builds == [1] and memo.get("k", 1) == "new"
