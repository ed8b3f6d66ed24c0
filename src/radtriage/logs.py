"""Structured logging: one JSON object per line. Messages carry UIDs, never PHI.

One format for everything the service prints: radtriage's own loggers, uvicorn's, and Ray's.
Ray configures its driver-side loggers ("ray", "ray.serve") with their own handlers when it is
imported, and prints the lines its worker processes write (replicas, the Serve controller,
raylet) straight to the driver's stdout/stderr; `adopt_ray_logging()`, called after `import ray`
and before `ray.init`, sends both through this formatter. What Ray's C++ core writes to stderr
itself (only on a crash or a signal) cannot be routed; docs/operations.md says how to separate it.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

# Libraries that attach their own handlers (or may): their records go to the root handler instead.
FOREIGN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "ray", "ray.serve", "ray.data", "ray.train",
                   "ray.tune", "ray.rllib")
WORKER_LOGGER = "ray.worker"  # the lines Ray forwards from its worker processes
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR,
           "CRITICAL": logging.CRITICAL}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", None) or {})  # logger.info(..., extra={"fields": {...}})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pynetdicom logs every PDU at INFO/DEBUG, including patient names in data set dumps
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    adopt_foreign_loggers()


def adopt_foreign_loggers() -> None:
    """uvicorn's and Ray's loggers lose their own handlers and pass their records to the root's."""
    for name in FOREIGN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def adopt_ray_logging() -> None:
    """Ray's lines in this format: call after `import ray` (which sets Ray's handlers) and before `ray.init`.

    The driver-side loggers are adopted at once; the lines of Ray's worker processes are logged by
    "ray.worker" (with the process id and actor or task name) instead of printed, from the moment
    `ray.init` connects. Where this Ray has no such hook its worker lines stay as Ray prints them.
    """
    adopt_foreign_loggers()
    try:
        from ray._private import worker as ray_worker
    except ImportError:  # another Ray: its worker lines are printed as Ray formats them
        return
    hooks = getattr(ray_worker, "_post_init_hooks", None)  # each run after ray.init has connected
    if isinstance(hooks, list) and _log_worker_lines_instead not in hooks:
        hooks.append(_log_worker_lines_instead)


def _log_worker_lines_instead() -> None:
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    dispatcher.remove_handler("ray_print_logs")  # the printer ray.init installs (log_to_driver)
    dispatcher.add_handler("ray_print_logs", log_worker_lines)


def log_worker_lines(batch: dict[str, Any]) -> None:
    """One batch of lines Ray forwarded from a worker process (its stdout or stderr), one record each."""
    logger = logging.getLogger(WORKER_LOGGER)
    pid = str(batch.get("pid", ""))
    fields = {"pid": pid, "stream": "stderr" if batch.get("is_err") else "stdout"}
    if batch.get("actor_name") or batch.get("task_name"):
        fields["actor"] = batch.get("actor_name") or batch.get("task_name")
    if batch.get("ip") and batch.get("ip") != batch.get("localhost"):
        fields["node"] = batch["ip"]
    for line in batch.get("lines", ()):
        if pid == "autoscaler" and ":event_summary:" not in line:
            continue  # the autoscaler's own chatter (Ray prints only its events too)
        line = line.replace(":event_summary:", "").rstrip()
        if not line:
            continue
        word = line.split(" ", 1)[0]
        default = logging.WARNING if batch.get("is_err") else logging.INFO
        logger.log(_LEVELS.get(word, default), "%s", line, extra={"fields": fields})
