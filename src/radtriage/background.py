"""The one shape of every background worker: threads that repeat a step until stopped.

The assembler, triage, the dispatcher and the alert deliveries are each a
`Background`: ``step(index)`` does one unit of work and says whether there may
be more at once; when there is none (or the step failed) the thread waits
``idle_s`` or until `wake`. A failing step is logged in one line (type and
first line of the message: never SQL parameters, which may hold patient
data) and tried again next time: a database that is briefly away stops no
worker.
"""

from __future__ import annotations

import logging
import threading


def brief(exc: BaseException) -> str:
    """An exception in one line, without the SQL parameters a database error appends (they may hold content)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"


class Background:
    """``threads`` daemon threads named ``name-<i>`` calling `step` until `stop`."""

    def __init__(self, name: str, idle_s: float, threads: int = 1, log: logging.Logger | None = None) -> None:
        self.name, self.idle_s, self.threads = name, idle_s, threads
        self.log = log or logging.getLogger(f"radtriage.{name}")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._running: list[threading.Thread] = []

    def step(self, index: int) -> bool:
        """One unit of work by thread ``index``; True when more may be waiting (run again at once)."""
        raise NotImplementedError

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wake(self) -> None:
        """Run the idle threads' next step now (new work was just written)."""
        self._wake.set()

    def _loop(self, index: int) -> None:
        while not self._stop.is_set():
            try:
                busy = self.step(index)
            except Exception as exc:  # noqa: BLE001 - logged; the next step tries again
                self.log.error("%s step failed: %s", self.name, brief(exc))
                busy = False
            if not busy:
                self._wake.wait(self.idle_s)
                self._wake.clear()

    def start(self) -> None:
        self._stop.clear()
        for i in range(self.threads):
            t = threading.Thread(target=self._loop, args=(i,), name=f"{self.name}-{i}", daemon=True)
            t.start()
            self._running.append(t)

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._running:
            t.join(timeout)
        self._running.clear()
