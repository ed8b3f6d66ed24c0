"""A reference webhook receiver: checks the signature and freshness, takes each idempotency key once.

For integrators (a pager gateway's side of the contract) and for the tests
and `scripts/bench_alert.py`. It answers 401 to a missing or bad signature,
409 to a stale timestamp (a replay), and 200 to a key it has already taken
without taking it again. ``status`` can be set to make it answer an error
(a receiver that is down).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from radtriage.alerts.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_webhook


@dataclass(frozen=True)
class Received:
    key: str | None
    event: str | None
    payload: dict[str, Any]
    at: float  # time.time() on arrival
    headers: dict[str, str]


class WebhookReceiver:
    def __init__(self, secret: bytes | None, max_age_s: float = 300.0, host: str = "127.0.0.1", port: int = 0) -> None:
        self.secret, self.max_age_s = secret, max_age_s
        self.status: int | None = None  # answer this instead (e.g. 503) while set
        self.posts = 0  # every request that reached it, refused or not
        self.refused: list[str] = []
        self.taken: dict[str, Received] = {}  # by idempotency key, the first of each
        self.duplicates = 0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/alerts"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                code = receiver.take(body, dict(self.headers.items()))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        return Handler

    def take(self, body: bytes, headers: dict[str, str]) -> int:
        at = time.time()
        with self._lock:
            self.posts += 1
            if self.status is not None:
                return self.status
            if self.secret is not None:
                why = verify_webhook(self.secret, body, headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER),
                                     self.max_age_s)
                if why is not None:
                    self.refused.append(why)
                    return 409 if why == "stale" else 401
            key = headers.get(IDEMPOTENCY_HEADER) or f"unkeyed-{self.posts}"
            if key in self.taken:
                self.duplicates += 1
                return 200
            payload = json.loads(body or b"{}")
            self.taken[key] = Received(key, payload.get("event"), payload, at, headers)
            self._arrived.notify_all()
            return 200

    def wait_for(self, count: int, timeout: float = 30.0, event: str | None = None) -> list[Received]:
        """The first ``count`` taken messages (of ``event``), waiting up to ``timeout`` seconds."""
        end = time.monotonic() + timeout
        with self._lock:
            while True:
                got = [r for r in self.taken.values() if event is None or r.event == event]
                left = end - time.monotonic()
                if len(got) >= count or left <= 0:
                    return got
                self._arrived.wait(left)

    def __enter__(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
