"""What this process has written, per table: the invalidation signal for short-lived caches.

`changes(db).version("worklist", "studies")` is a number that moves whenever a
connection of this process has run an INSERT, UPDATE or DELETE on one of those
tables: once when the statement runs and once more when the connection goes
back to the pool, which is after its transaction committed or rolled back. A
cache that takes the version *before* it reads and keeps what it read under
that version therefore never serves, after a write of this process has
committed, anything read before it. Writes by other processes are not seen
here: caches also expire after a few seconds (`Memo`), and the worklist cache
also follows the live hub, which polls the table.

`Memo` is the cache itself: entries live ``ttl_s`` seconds and only while the
version they were read under is current; `Memo.get_or_build` builds a missing
entry once even when many threads ask for it at the same time, and can let
the others have the entry it replaces meanwhile if nothing was written since.
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine, event

from radtriage.db.engine import Database

_INFO_KEY = "radtriage_written_tables"
_ANY = "*"  # a write whose table is not known (textual SQL): moves every version
_DML = re.compile(r"^\s*(insert|update|delete|replace|merge)\b", re.IGNORECASE)

V = TypeVar("V")


class Changes:
    """Per-table write counters of one engine, moved by SQLAlchemy events."""

    def __init__(self, engine: Engine) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._memos: dict[str, Memo[Any]] = {}
        event.listen(engine, "after_cursor_execute", self._executed)
        event.listen(engine, "checkin", self._checked_in)

    def version(self, *tables: str) -> int:
        """A number that moves whenever one of ``tables`` is written (never moves back)."""
        counts = self._counts
        return counts.get(_ANY, 0) + sum(counts.get(t, 0) for t in tables)

    def memo(self, name: str, ttl_s: float) -> Memo[Any]:
        """The cache called ``name`` of this engine (made on first use)."""
        found = self._memos.get(name)
        if found is None:
            with self._lock:
                found = self._memos.setdefault(name, Memo(ttl_s))
        return found

    def _bump(self, tables: set[str]) -> None:
        with self._lock:
            for t in tables:
                self._counts[t] = self._counts.get(t, 0) + 1

    def _executed(self, conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
        if context is not None and (context.isinsert or context.isupdate or context.isdelete):
            table = getattr(getattr(context.compiled, "statement", None), "table", None)
            tables = {getattr(table, "name", None) or _ANY}
        elif _DML.match(statement):
            tables = {_ANY}
        else:
            return
        conn.info.setdefault(_INFO_KEY, set()).update(tables)
        self._bump(tables)

    def _checked_in(self, _dbapi_conn: Any, record: Any) -> None:
        tables = record.info.pop(_INFO_KEY, None) if record is not None else None
        if tables:
            self._bump(tables)


_registry: weakref.WeakKeyDictionary[Engine, Changes] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def changes(db: Database) -> Changes:
    """The write counters and caches of ``db``'s engine.

    Counting starts on the first call: a transaction already under way then is
    not counted, so what a cache reads meanwhile can be as old as its TTL.
    """
    found = _registry.get(db.engine)
    if found is None:
        with _registry_lock:
            found = _registry.get(db.engine)
            if found is None:
                found = _registry[db.engine] = Changes(db.engine)
    return found


class Memo(Generic[V]):
    """A small cache: an entry is served for ``ttl_s`` seconds and only under the version it was read with.

    None is never served: a build that gives None is built again next time.
    """

    def __init__(self, ttl_s: float, max_entries: int = 256, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.max_entries, self.clock = ttl_s, max_entries, clock
        self._entries: dict[Hashable, tuple[Hashable, float, V]] = {}
        self._building: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, version: Hashable, max_age_s: float | None = None) -> V | None:
        """The entry read under ``version`` if it is younger than ``max_age_s`` (default: the TTL)."""
        hit = self._entries.get(key)
        if hit is None or hit[0] != version or self.clock() - hit[1] >= (max_age_s or self.ttl_s):
            return None
        return hit[2]

    def peek(self, key: Hashable, version: Hashable, stale_s: float | None = None) -> V | None:
        """A fresh entry; or, while another caller rebuilds it, one read under the same version within ``stale_s``."""
        value = self.get(key, version)
        if value is None and stale_s is not None:
            lock = self._building.get(key)
            if lock is not None and lock.locked():
                value = self.get(key, version, stale_s)
        return value

    def put(self, key: Hashable, version: Hashable, value: V) -> None:
        if len(self._entries) >= self.max_entries:
            self.clear()
        self._entries[key] = (version, self.clock(), value)

    def get_or_build(self, key: Hashable, version: Callable[[], Hashable], build: Callable[[], V],
                     stale_s: float | None = None) -> V:
        """`peek`, else build the entry (once, however many callers wait for it) and keep it.

        ``version`` is taken before ``build`` reads, so a write that lands
        during the build leaves the new entry already out of date.
        """
        value = self.peek(key, version(), stale_s)
        if value is not None:
            return value
        with self._building.setdefault(key, threading.Lock()):
            v = version()
            value = self.get(key, v)
            if value is None:
                value = build()
                self.put(key, v, value)
            return value

    def clear(self) -> None:
        self._entries.clear()
        self._building.clear()
