"""Login hardening against a running ``radtriage serve`` (issue 12 items 10 and 17).

Forwarded headers are believed only from configured proxies; failed logins are
counted per user and per address, in the database (so every worker sees
them); a disabled account costs the same password hash as an unknown one; an
empty signing-key file is replaced; live event streams end with their
session; /metrics and /docs need a login when the API listens beyond loopback;
the first admin's password goes to a private file, never to the output.
"""

from __future__ import annotations

import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from radtriage.api import create_app
from radtriage.db import accounts, audit, open_database
from radtriage.service import build_services
from tests.helpers import free_port, serve_process

PASSWORD = "correct horse battery"
WRONG = "wrong password!!"
PER_USER, PER_ADDRESS = 5, 20  # the default limits
STREAM_TIMEOUT_S = 30.0  # a stream not ended by then stays open after logout (ends within ~2 s)


class Server:
    """A ``radtriage serve`` process on a fresh data directory, and its database."""

    def __init__(self, root: Path, **env: str) -> None:
        root.mkdir(parents=True)
        self.data_dir, self.port = root / "data", free_port()
        self.data_dir.mkdir()
        self.proc = serve_process(self.data_dir, 0, self.port, **env)
        self.log_file = root / "serve-0.log"
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"radtriage serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"radtriage serve did not answer:\n{self.log()}")
            time.sleep(0.2)
        self.db = open_database(f"sqlite:///{self.data_dir / 'radtriage.db'}", migrate=False)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def client(self, source: str = "127.0.0.1", **kwargs) -> httpx.Client:
        """An HTTP client whose connections come from ``source`` (any 127.0.0.0/8 address)."""
        return httpx.Client(base_url=self.url, transport=httpx.HTTPTransport(local_address=source),
                            timeout=30, **kwargs)

    def stop(self) -> None:
        self.db.dispose()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Iterator[Server]:
    """The default: the API on loopback, no proxy configured."""
    server = Server(tmp_path_factory.mktemp("auth") / "local")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def exposed(tmp_path_factory) -> Iterator[Server]:
    """The API listening on every interface (cookies sent over plain HTTP for the test)."""
    server = Server(tmp_path_factory.mktemp("auth") / "exposed", RADTRIAGE_HTTP_HOST="0.0.0.0",
                    RADTRIAGE_AUTH__COOKIE_SECURE="false")
    yield server
    server.stop()


def login(client: httpx.Client, username: str, password: str = PASSWORD, **headers: str) -> str:
    """Where the login form sends the browser: "/" (or "/stroke"), "/login?error=bad", "/login?error=wait..."."""
    r = client.post("/login", data={"username": username, "password": password}, headers=headers)
    assert r.status_code == 303, r.text
    return r.headers["location"]


def audited(server: Server, action: str, actor: str) -> list[str | None]:
    return [e["client"] for e in audit.entries(server.db, actor=actor, action=action)[1]]


# --- item 10: forwarded headers, per-user and per-address limits, shared counters -------


def test_forwarded_for_from_an_unconfigured_proxy_is_ignored(local):
    accounts.add_user(local.db, "dr.xff", "radiologist", PASSWORD)
    with local.client() as c:
        for i in range(PER_USER):
            assert login(c, "dr.xff", WRONG, **{"X-Forwarded-For": f"10.9.8.{i}"}) == "/login?error=bad"
        # a sixth guess with yet another forged address is refused like the others would be
        assert login(c, "dr.xff", PASSWORD, **{"X-Forwarded-For": "10.9.8.99"}).startswith("/login?error=wait")
    assert audited(local, "login_failed", "dr.xff") == ["127.0.0.1"] * PER_USER
    assert audited(local, "login_refused", "dr.xff") == ["127.0.0.1"]


def test_failed_logins_count_per_user_from_every_address(local):
    accounts.add_user(local.db, "dr.spread", "radiologist", PASSWORD)
    for i in range(PER_USER):
        with local.client(f"127.0.0.{20 + i}") as c:
            assert login(c, "dr.spread", WRONG) == "/login?error=bad"
    with local.client("127.0.0.40") as c:
        assert login(c, "dr.spread").startswith("/login?error=wait")
    assert audited(local, "login_refused", "dr.spread") == ["127.0.0.40"]
    with local.client("127.0.0.41") as c:  # another user is not held up
        accounts.add_user(local.db, "dr.other", "radiologist", PASSWORD)
        assert login(c, "dr.other") == "/"


def test_failed_logins_count_per_address_over_every_user_name(local):
    accounts.add_user(local.db, "dr.target", "radiologist", PASSWORD)
    with local.client("127.0.0.50") as c:
        for i in range(PER_ADDRESS):
            assert login(c, f"guess{i}", WRONG) == "/login?error=bad"
        assert login(c, "dr.target").startswith("/login?error=wait")
    with local.client("127.0.0.51") as c:  # the same user from elsewhere is not held up
        assert login(c, "dr.target") == "/"


def test_workers_share_the_counters(make_settings, db_url):
    """Two API workers on one database (SQLite and PostgreSQL): failures at either count at both."""
    first, second = (build_services(make_settings(database_url=db_url)) for _ in range(2))
    accounts.add_user(first.db, "dr.workers", "radiologist", PASSWORD)
    try:
        with TestClient(create_app(first)) as a, TestClient(create_app(second)) as b:
            for i in range(PER_USER):
                r = (a if i % 2 else b).post("/login", data={"username": "dr.workers", "password": WRONG},
                                             follow_redirects=False)
                assert r.headers["location"] == "/login?error=bad"
            for client in (a, b):
                r = client.post("/login", data={"username": "dr.workers", "password": PASSWORD},
                                follow_redirects=False)
                assert r.headers["location"].startswith("/login?error=wait")
    finally:
        first.close()
        second.close()


def test_a_configured_proxy_is_believed_and_nobody_else(tmp_path):
    server = Server(tmp_path / "proxied", RADTRIAGE_TRUSTED_PROXIES='["127.0.0.1"]')
    try:
        accounts.add_user(server.db, "dr.proxied", "radiologist", PASSWORD)
        with server.client() as proxy:
            assert login(proxy, "dr.proxied", WRONG, **{"X-Forwarded-For": "203.0.113.7"}) == "/login?error=bad"
        with server.client("127.0.0.2") as direct:  # not a proxy: its header is a lie
            assert login(direct, "dr.proxied", WRONG, **{"X-Forwarded-For": "203.0.113.8"}) == "/login?error=bad"
        assert sorted(audited(server, "login_failed", "dr.proxied")) == ["127.0.0.2", "203.0.113.7"]
        with server.client() as proxy:  # behind a proxy the site is reachable from elsewhere:
            r = proxy.post("/login", data={"username": "dr.proxied", "password": PASSWORD},
                           headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
            assert r.headers["location"] == "/" and "secure" in r.headers["set-cookie"].lower()  # HTTPS cookie
            assert proxy.get("/metrics").status_code == 401  # and the operator pages need a login
    finally:
        server.stop()


# --- item 17: equal work for disabled and unknown accounts ------------------------------


def test_a_disabled_account_costs_the_same_password_hash_as_an_unknown_one(make_settings, monkeypatch):
    from argon2 import PasswordHasher

    calls: list[str] = []
    for name in ("hash", "verify"):
        real = getattr(PasswordHasher, name)
        monkeypatch.setattr(PasswordHasher, name,
                            lambda self, *a, _real=real, _name=name, **k: calls.append(_name) or _real(self, *a, **k))
    services = build_services(make_settings())
    accounts.add_user(services.db, "dr.gone", "radiologist", PASSWORD)
    accounts.add_user(services.db, "dr.here", "radiologist", PASSWORD)
    accounts.add_user(services.db, "pacs", "service")
    accounts.set_disabled(services.db, "dr.gone")
    work: dict[str, int] = {}
    try:
        with TestClient(create_app(services)) as client:
            for who, password in (("nobody", PASSWORD), ("dr.gone", PASSWORD), ("dr.gone", WRONG),
                                  ("pacs", PASSWORD), ("dr.here", WRONG)):
                calls.clear()
                r = client.post("/login", data={"username": who, "password": password}, follow_redirects=False)
                assert r.headers["location"] == "/login?error=bad"
                work[f"{who}/{password}"] = len(calls)
    finally:
        services.close()
    assert set(work.values()) == {1}, work


# --- item 17: the signing key file ------------------------------------------------------


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_an_empty_secret_key_file_is_replaced(make_settings, content, caplog):
    settings = make_settings()
    settings.data_dir.mkdir(parents=True)
    path = settings.data_dir / "secret_key"
    path.write_text(content)
    with caplog.at_level("WARNING"):
        services = build_services(settings)
    services.close()
    kept = path.read_text().strip()
    assert len(services.secret_key) >= 32 and services.secret_key == kept.encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert any("secret_key" in r.getMessage() for r in caplog.records)
    assert kept not in caplog.text
    again = build_services(settings)
    again.close()
    assert again.secret_key == services.secret_key  # kept from now on


def test_an_empty_secret_key_setting_is_refused(make_settings):
    with pytest.raises(ValueError, match="SECRET_KEY"):
        make_settings(auth={"secret_key": "   "})


# --- item 17: live event streams end with their session ---------------------------------


def _open_stream(client: httpx.Client) -> tuple[httpx.Response, Iterator[str]]:
    response = client.send(client.build_request("GET", "/api/v1/events", timeout=STREAM_TIMEOUT_S), stream=True)
    assert response.status_code == 200
    lines = response.iter_lines()
    assert next(lines).startswith("retry:") and next(lines) == "event: hello"
    return response, lines


def _ended(response: httpx.Response, lines: Iterator[str]) -> bool:
    """True when the server ends the stream (only keep-alives or nothing before it ends)."""
    try:
        for _line in lines:  # keep-alives and worklist events may come first
            pass
        return True
    except httpx.ReadTimeout:
        return False
    finally:
        response.close()


def test_event_stream_ends_at_logout(local):
    accounts.add_user(local.db, "dr.live", "radiologist", PASSWORD)
    with local.client() as c:
        assert login(c, "dr.live") == "/"
        csrf = c.get("/api/v1/me").json()["csrf_token"]
        response, lines = _open_stream(c)
        assert c.post("/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
        assert _ended(response, lines), f"the event stream stayed open {STREAM_TIMEOUT_S} s after logout"
        assert c.get("/api/v1/events").status_code == 401


def test_event_stream_ends_when_another_process_ends_the_session(local):
    accounts.add_user(local.db, "dr.later", "radiologist", PASSWORD)
    with local.client() as c:
        assert login(c, "dr.later") == "/"
        response, lines = _open_stream(c)
        accounts.set_disabled(local.db, "dr.later")  # as `radtriage users disable` would
        assert _ended(response, lines), f"the event stream stayed open {STREAM_TIMEOUT_S} s after the disable"


# --- item 17: /metrics and /docs ---------------------------------------------------------


OPERATOR_PATHS = ("/metrics", "/docs", "/openapi.json", "/redoc")


def test_metrics_and_docs_need_a_login_beyond_loopback(exposed):
    accounts.add_user(exposed.db, "dr.docs", "radiologist", PASSWORD)
    accounts.add_user(exposed.db, "prometheus", "service")
    token = accounts.issue_token(exposed.db, "prometheus", "metrics")
    with exposed.client() as anonymous:
        for path in OPERATOR_PATHS:
            assert anonymous.get(path).status_code == 401, path
        assert anonymous.get("/healthz").status_code == 200  # probes stay open
    with exposed.client() as person:
        assert login(person, "dr.docs") == "/"
        assert person.get("/docs").status_code == 200 and person.get("/openapi.json").json()["paths"]
        assert person.get("/metrics").status_code == 403  # operations, not people
    with exposed.client(headers={"Authorization": f"Bearer {token}"}) as scraper:
        r = scraper.get("/metrics")
        assert r.status_code == 200 and "radtriage" in r.text


def test_metrics_and_docs_stay_open_on_loopback(local):
    with local.client() as c:
        assert c.get("/metrics").status_code == 200 and c.get("/openapi.json").status_code == 200


# --- item 17: the first admin's password -------------------------------------------------


def test_first_admin_password_goes_to_a_private_file_not_the_output(local):
    path = local.data_dir / "first-admin-password"
    assert path.exists(), f"no {path}; output was:\n{local.log()}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = path.read_text().strip()
    output = local.log()
    assert password and password not in output
    assert str(path.resolve()) in output
    with local.client("127.0.0.60") as c:
        assert login(c, "admin", password) == "/"
