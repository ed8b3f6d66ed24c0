"""STOW-RS hardening (issue 12, items 2, 8 and 9), against a real `radtriage serve`.

- Every STOW-RS request needs the bearer token (or session) of a role allowed to
  store, service or admin, whatever address the API listens on: 401 without one.
- An upload is streamed to the spool part by part: with the limit at 64 MiB, two
  concurrent 100 MiB parts are refused with 413 while the server's resident memory
  grows by less than 100 MB, and no staged file is left behind.
- A body cut short (no closing boundary) lists the cut part as failed; it is never
  answered 200 with the part silently dropped.
"""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from radtriage.api import create_app
from radtriage.db import accounts, instances, open_database
from radtriage.ingest.spool import TMP_SUFFIX
from tests.helpers import free_port, make_ct_series, serve_process, wait_port

MIB = 1024 * 1024
LIMIT = 64 * MIB
FAILED_SEQ, REFS_SEQ, REASON = "00081198", "00081199", "00081197"
PASSWORD = "correct horse battery"


def part(data: bytes, boundary: str) -> bytes:
    return b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n"


def closing(boundary: str) -> bytes:
    return b"--" + boundary.encode() + b"--\r\n"


def ctype_of(boundary: str) -> str:
    return f'multipart/related; type="application/dicom"; boundary={boundary}'


def incoming_leftovers(spool: Path) -> list[Path]:
    return list((spool / ".incoming").glob(f"*{TMP_SUFFIX}"))


# --- a real server, as `make run` starts it ------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("stow")
    data_dir = root / "data"
    data_dir.mkdir()
    http_port = free_port()
    proc = serve_process(data_dir, free_port(), http_port, RADTRIAGE_MAX_UPLOAD_BYTES=str(LIMIT))
    db = None
    try:
        wait_port(http_port, timeout=90, proc=proc)
        db = open_database(f"sqlite:///{(data_dir / 'radtriage.db').resolve()}", migrate=False)
        accounts.add_user(db, "pacs", "service")
        yield {
            "url": f"http://127.0.0.1:{http_port}",
            "pid": proc.pid,
            "db": db,
            "spool": data_dir / "spool",
            "token": accounts.issue_token(db, "pacs"),
            "root": root,
        }
    finally:
        if db is not None:
            db.dispose()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_anonymous_stow_to_a_loopback_server_is_401(server, tmp_path):
    """The API listens on loopback (the default): a request from this host without a token
    (a reverse proxy, a browser page, any local process) must not store anything."""
    boundary = uuid.uuid4().hex
    body = part(make_ct_series(tmp_path / "s", 1)[0].read_bytes(), boundary) + closing(boundary)
    before = len(instances.instance_rows(server["db"]))
    with httpx.Client(base_url=server["url"], timeout=30) as client:
        for headers in ({}, {"X-Forwarded-For": "10.1.2.3"}, {"Authorization": "Bearer not-a-token"}):
            r = client.post("/dicomweb/studies", content=body,
                            headers={"Content-Type": ctype_of(boundary), **headers})
            assert r.status_code == 401, f"{headers}: {r.status_code} {r.text[:200]}"
            assert r.headers["content-type"] == "application/problem+json"
        assert len(instances.instance_rows(server["db"])) == before
        r = client.post("/dicomweb/studies", content=body,
                        headers={"Content-Type": ctype_of(boundary), "Authorization": f"Bearer {server['token']}"})
        assert r.status_code == 200, r.text
    assert len(instances.instance_rows(server["db"])) == before + 1


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


class PeakRss:
    """The peak resident set of a process from now on: its VmHWM reset through
    /proc/PID/clear_refs where the kernel allows, otherwise VmRSS sampled every 5 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start_kib = _rss_kib(pid, "VmRSS")
        self._sampled = self.start_kib
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            self.start_kib = _rss_kib(pid, "VmRSS")
        except OSError:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._sampled = max(self._sampled, _rss_kib(self.pid, "VmRSS"))

    def growth_mb(self) -> float:
        if self._thread is None:
            peak = _rss_kib(self.pid, "VmHWM")
        else:
            self._stop.set()
            self._thread.join()
            peak = self._sampled
        return (peak - self.start_kib) * 1024 / 1e6


def _big_body(boundary: str, size: int) -> tuple[Iterator[bytes], int]:
    """One part of ``size`` bytes (no boundary inside), sent as a stream of 1 MiB chunks."""
    head, tail = part(b"", boundary)[:-2], b"\r\n" + closing(boundary)
    block = b"\x00" * MIB

    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(size // MIB):
            yield block
        yield tail

    return chunks(), len(head) + size + len(tail)


def test_two_concurrent_100mib_parts_get_413_in_bounded_memory(server):
    """Item 8: parts over the limit are refused without being held in memory."""
    results: dict[int, object] = {}

    def send(i: int) -> None:
        boundary = uuid.uuid4().hex
        chunks, length = _big_body(boundary, 100 * MIB)
        try:
            with httpx.Client(base_url=server["url"], timeout=120) as client:
                r = client.post("/dicomweb/studies", content=chunks, headers={
                    "Content-Type": ctype_of(boundary), "Content-Length": str(length),
                    "Authorization": f"Bearer {server['token']}"})
            results[i] = r
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[i] = exc

    before = len(instances.instance_rows(server["db"]))
    peak = PeakRss(server["pid"])
    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    growth = peak.growth_mb()
    print(f"server RSS growth for two concurrent 100 MiB parts: {growth:.1f} MB")
    statuses = [getattr(results.get(i), "status_code", repr(results.get(i))) for i in range(2)]
    assert statuses == [413, 413] and growth < 100, (
        f"statuses {statuses}, server RSS grew by {growth:.0f} MB (limit {LIMIT // MIB} MiB per part)"
    )
    for r in results.values():
        failed = r.json()[FAILED_SEQ]["Value"]  # type: ignore[union-attr]
        assert [f[REASON]["Value"][0] for f in failed] == [0xA701]
    assert len(instances.instance_rows(server["db"])) == before
    assert incoming_leftovers(server["spool"]) == []


def test_a_body_cut_short_lists_the_cut_part_as_failed(server, tmp_path):
    """Item 9: one complete part, then a part cut in its middle with no closing boundary."""
    good, cut = (p.read_bytes() for p in make_ct_series(tmp_path / "s", 2))
    boundary = uuid.uuid4().hex
    body = part(good, boundary) + part(cut, boundary)[: len(cut) // 2]
    with httpx.Client(base_url=server["url"], timeout=30) as client:
        r = client.post("/dicomweb/studies", content=body, headers={
            "Content-Type": ctype_of(boundary), "Authorization": f"Bearer {server['token']}"})
        answer = r.json()
        assert r.status_code == 202 and len(answer.get(FAILED_SEQ, {}).get("Value", [])) == 1, (
            f"{r.status_code}: {answer}"
        )
        assert len(answer[REFS_SEQ]["Value"]) == 1
        assert answer[FAILED_SEQ]["Value"][0][REASON]["Value"] == [0xC000]

        # the same cut with no complete part before it: refused as a whole, with the part listed
        body = part(cut, boundary)[: len(cut) // 2]
        r = client.post("/dicomweb/studies", content=body, headers={
            "Content-Type": ctype_of(boundary), "Authorization": f"Bearer {server['token']}"})
        assert r.status_code == 409, r.text
        assert [f[REASON]["Value"][0] for f in r.json()[FAILED_SEQ]["Value"]] == [0xC000]
    assert incoming_leftovers(server["spool"]) == []


# --- roles, in-process (the same app, no listener) -------------------------------------


@pytest.fixture
def site(services):
    accounts.add_user(services.db, "pacs", "service")
    accounts.add_user(services.db, "root", "admin", PASSWORD)
    for name, role in (("dr.chan", "radiologist"), ("stroke.1", "stroke")):
        accounts.add_user(services.db, name, role, PASSWORD)
    tokens = {name: accounts.issue_token(services.db, name) for name in ("pacs", "root", "dr.chan", "stroke.1")}
    with TestClient(create_app(services), base_url="http://127.0.0.1:8000") as client:
        yield client, tokens, services


def test_only_service_and_admin_may_store(site, tmp_path):
    client, tokens, services = site
    files = make_ct_series(tmp_path / "s", 4)
    boundary = uuid.uuid4().hex

    def post(data: bytes, **headers: str) -> httpx.Response:
        return client.post("/dicomweb/studies", content=part(data, boundary) + closing(boundary),
                           headers={"Content-Type": ctype_of(boundary), **headers})

    assert post(files[0].read_bytes()).status_code == 401
    for person in ("dr.chan", "stroke.1"):
        assert post(files[0].read_bytes(), Authorization=f"Bearer {tokens[person]}").status_code == 403
    assert instances.instance_rows(services.db) == []
    assert post(files[1].read_bytes(), Authorization=f"Bearer {tokens['pacs']}").status_code == 200
    assert post(files[2].read_bytes(), Authorization=f"Bearer {tokens['root']}").status_code == 200

    # an admin's page session stores too, with its CSRF token (never without it)
    r = client.post("/login", data={"username": "root", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303
    assert post(files[3].read_bytes()).status_code == 403  # the cookie alone: no CSRF token
    csrf = client.get("/api/v1/me").json()["csrf_token"]
    assert post(files[3].read_bytes(), **{"X-CSRF-Token": csrf}).status_code == 200
    assert len(instances.instance_rows(services.db)) == 3


def test_the_stow_token_setting_is_gone(make_settings, tmp_path):
    """The old anonymous-on-loopback escape hatch cannot be configured back in."""
    with pytest.raises(ValueError, match="stow_token"):
        make_settings(stow_token="s3cret-token")


def test_a_part_over_the_limit_beside_good_parts(make_settings, tmp_path):
    """A too-large part is listed as failed (0xA701) and the good parts around it are stored."""
    from radtriage.service import build_services

    good = [p.read_bytes() for p in make_ct_series(tmp_path / "s", 2)]
    svc = build_services(make_settings(max_upload_bytes=max(map(len, good)) + 10))
    try:
        accounts.add_user(svc.db, "pacs", "service")
        token = accounts.issue_token(svc.db, "pacs")
        boundary = uuid.uuid4().hex
        body = part(good[0], boundary) + part(os.urandom(len(good[0]) + 100), boundary) + part(good[1], boundary)
        with TestClient(create_app(svc)) as client:
            r = client.post("/dicomweb/studies", content=body + closing(boundary), headers={
                "Content-Type": ctype_of(boundary), "Authorization": f"Bearer {token}"})
        assert r.status_code == 202, r.text
        assert [f[REASON]["Value"][0] for f in r.json()[FAILED_SEQ]["Value"]] == [0xA701]
        assert len(r.json()[REFS_SEQ]["Value"]) == 2
        assert len(instances.instance_rows(svc.db)) == 2
        assert incoming_leftovers(svc.settings.spool_dir) == []
    finally:
        svc.close()
