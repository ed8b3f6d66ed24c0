"""Several DICOM listener processes on one port.

`radtriage serve` runs ``dicom_processes`` listeners (one per core by default): its own
`StorageSCP` and the others in processes of their own, all bound to the port with
SO_REUSEPORT so the kernel spreads new connections among them. Each stores through its
own `InstanceStore` into the same spool and database, with the same guarantees (fsync
before Success, one index row per instance); duplicates, replacements and patient
mismatches are decided by the database's unique constraint, not by a lock in one process.

- The connection limits hold across processes: the counts live in shared memory
  (`SharedTally`), one row per listener, so a listener that dies gives its places back.
- Metrics are summed across processes: the other listeners write theirs in Prometheus'
  multiprocess mode under ``<data>/run/metrics``, and ``/metrics`` adds them to this
  process's own (`SummedMetrics`).
- A listener that dies is started again; each is killed with the service (PR_SET_PDEATHSIG), so a
  killed service leaves no process holding the port or storing beside its successor.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
import zlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported lazily: a listener process must set up its metrics before prometheus_client loads
    from radtriage.ingest.connections import ConnectionLimits

log = logging.getLogger("radtriage.scp")

SLOTS = 4093  # source addresses are counted in this many slots (a prime); the last cell is the pending count
METRICS_DIR = ("run", "metrics")  # under the data directory
WATCH_S = 1.0  # how often dead listeners are looked for
READY_S = 120.0  # how long start-up waits for every listener to be bound
PR_SET_PDEATHSIG = 1


def listener_count(settings: Any) -> int:
    """How many listener processes `radtriage serve` runs: the setting, else one per core."""
    return int(settings.dicom_processes or os.cpu_count() or 1)


class SharedTally:
    """Open connections per source address and pending ones, shared by the listener processes.

    Each listener counts in its own row of one shared array; a limit compares the sum over the
    rows. An address is counted in slot crc32(address) mod `SLOTS`: two sources that share a
    slot share a limit (at worst a refusal too many, never a connection too many)."""

    def __init__(self, counts: Any, listeners: int, row: int = 0) -> None:
        self._counts = counts
        self._listeners = listeners
        self._row = row

    @classmethod
    def create(cls, ctx: Any, listeners: int) -> SharedTally:
        return cls(ctx.Array("i", listeners * (SLOTS + 1)), listeners)

    def for_listener(self, row: int) -> SharedTally:
        return SharedTally(self._counts, self._listeners, row)

    def _sum(self, cells: Any, column: int) -> int:
        width = SLOTS + 1
        return sum(cells[r * width + column] for r in range(self._listeners))

    def take(self, address: str, limits: ConnectionLimits) -> str | None:
        from radtriage.ingest.connections import Refusal

        slot, mine = zlib.crc32(address.encode()) % SLOTS, self._row * (SLOTS + 1)
        with self._counts.get_lock():
            cells = self._counts.get_obj()
            if self._sum(cells, slot) >= limits.per_address:
                return Refusal.PER_ADDRESS_LIMIT
            if self._sum(cells, SLOTS) >= limits.pending:
                return Refusal.PENDING_LIMIT
            cells[mine + slot] += 1
            cells[mine + SLOTS] += 1
        return None

    def associating(self) -> None:
        with self._counts.get_lock():
            self._counts.get_obj()[self._row * (SLOTS + 1) + SLOTS] -= 1

    def release(self, address: str, pending: bool) -> None:
        slot, mine = zlib.crc32(address.encode()) % SLOTS, self._row * (SLOTS + 1)
        with self._counts.get_lock():
            cells = self._counts.get_obj()
            cells[mine + slot] -= 1
            if pending:
                cells[mine + SLOTS] -= 1

    def clear(self, row: int) -> None:
        """A listener died: the connections it held are gone."""
        width = SLOTS + 1
        with self._counts.get_lock():
            cells = self._counts.get_obj()
            for i in range(row * width, (row + 1) * width):
                cells[i] = 0


class ListenerProcesses:
    """The listeners other than the service's own (numbers 1 .. count-1)."""

    def __init__(self, settings: Any, count: int) -> None:
        self.settings = settings
        self.count = count
        self._ctx = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        self.tally = SharedTally.create(self._ctx, count)
        self.metrics_dir = Path(settings.data_dir, *METRICS_DIR).resolve()
        self._procs: dict[int, Any] = {}
        self._stop = self._ctx.Event()
        self._ready = self._ctx.Value("i", 0)  # listeners bound so far
        self._stopping = threading.Event()
        self._port = 0
        self._watcher: threading.Thread | None = None

    def start(self, port: int) -> None:
        shutil.rmtree(self.metrics_dir, ignore_errors=True)  # counts of an earlier run's processes
        self.metrics_dir.mkdir(parents=True)
        self._port = port
        for n in range(1, self.count):
            self._spawn(n)
        self._wait_ready()
        self._watcher = threading.Thread(target=self._watch, name="dicom-listeners", daemon=True)
        self._watcher.start()
        log.info("DICOM listener: %d processes on port %d", self.count, port)

    def _wait_ready(self) -> None:
        """Start-up goes on once every listener is bound (or one has died: the watcher restarts it)."""
        end = time.monotonic() + READY_S
        while self._ready.value < self.count - 1 and time.monotonic() < end:
            if any(not p.is_alive() for p in self._procs.values()):
                break
            time.sleep(0.05)
        if self._ready.value < self.count - 1:
            log.error("only %d of %d DICOM listener processes started", self._ready.value + 1, self.count)

    def _spawn(self, n: int) -> None:
        proc = self._ctx.Process(target=listen, name=f"radtriage-listener-{n}", daemon=True,
                                 args=(self.settings, self._port, self.tally.for_listener(n), n, self._stop,
                                       self._ready, str(self.metrics_dir)))
        proc.start()
        self._procs[n] = proc

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_S):
            for n, proc in list(self._procs.items()):
                if proc.is_alive() or self._stopping.is_set():
                    continue
                log.error("DICOM listener %d (pid %s) ended with exit code %s: starting it again",
                          n, proc.pid, proc.exitcode)
                self._forget(n, proc)
                self._spawn(n)

    def _forget(self, n: int, proc: Any) -> None:
        from prometheus_client import multiprocess

        self.tally.clear(n)
        multiprocess.mark_process_dead(proc.pid, str(self.metrics_dir))  # its live gauges drop out

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs.values() if p.is_alive()]

    def stop(self) -> None:
        self._stopping.set()
        self._stop.set()
        for proc in self._procs.values():
            proc.join(10)
            if proc.is_alive():  # stuck on its way out: it holds nothing that SIGKILL would lose
                proc.kill()
                proc.join(5)
        self._procs.clear()

    def summed(self, registry: Any) -> SummedMetrics:
        return SummedMetrics(registry, self.metrics_dir)


class SummedMetrics:
    """A collector: this process's metrics plus those the other listeners wrote, summed by name and labels."""

    def __init__(self, registry: Any, directory: Path) -> None:
        self.registry = registry
        self.directory = directory

    def collect(self) -> Iterator[Any]:
        from prometheus_client.multiprocess import MultiProcessCollector

        theirs = {m.name: m for m in MultiProcessCollector(None, path=str(self.directory)).collect()}
        for family in self.registry.collect():
            other = theirs.pop(family.name, None)
            if other is not None:
                family.samples = _summed(family.samples, other.samples)
            yield family
        yield from theirs.values()


def _summed(mine: list[Any], theirs: list[Any]) -> list[Any]:
    def key(sample: Any) -> tuple[str, tuple[tuple[str, str], ...]]:
        return sample.name, tuple(sorted(sample.labels.items()))

    extra = {key(s): s.value for s in theirs}
    out = [s._replace(value=s.value + extra.pop(key(s), 0.0)) if not s.name.endswith("_created") else s
           for s in mine]
    return out + [s for s in theirs if key(s) in extra]


def _die_with_parent() -> None:
    """Linux: this process is killed when the service ends without stopping it (a crash, SIGKILL): at once,
    as if it had crashed with the service, so it never stores beside a service started again. What it
    acknowledged is on disk; what it had not, the sender sends again. (A stopped service stops it first.)"""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def listen(settings: Any, port: int, tally: SharedTally, number: int, stop: Any, ready: Any,
           metrics_dir: str) -> None:
    """A listener process: its own database connection, spool handle and store; serves until told to stop."""
    _die_with_parent()
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before the listener chose multiprocess mode")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before prometheus_client is imported here
    from radtriage.db import open_database
    from radtriage.ingest.metrics import IngestMetrics
    from radtriage.ingest.scp import StorageSCP
    from radtriage.logs import setup_logging
    from radtriage.service import store_for

    setup_logging(settings.log_level)
    ended = threading.Event()  # this listener alone (the shared ``stop`` ends them all)
    signal.signal(signal.SIGTERM, lambda *_: ended.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the service stops us
    if os.getppid() == 1:  # the service ended before we could ask to follow it
        return
    store = store_for(settings, open_database(settings.db_url, migrate=False), IngestMetrics())
    scp = StorageSCP(settings.model_copy(update={"dicom_port": port}), store, tally=tally, shared_port=True,
                     listener=number)
    scp.start()
    with ready.get_lock():
        ready.value += 1
    while not ended.is_set() and not stop.wait(0.5):
        pass
    scp.stop()
