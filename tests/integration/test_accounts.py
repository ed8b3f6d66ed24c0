"""Accounts and the page session: login, cookie, CSRF, rate limit, logout, first admin, CLI, secrets."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from radtriage.api import create_app
from radtriage.config import load_settings
from radtriage.db import accounts, audit
from radtriage.triage import seed
from radtriage.service import build_services, first_admin

PASSWORD = "correct horse battery"


@pytest.fixture
def site(make_settings):
    services = build_services(make_settings())
    accounts.add_user(services.db, "dr.chan", "radiologist", PASSWORD)
    with TestClient(create_app(services), base_url="http://127.0.0.1:8000") as client:
        client.services = services
        yield client
    services.close()


def login(client, username="dr.chan", password=PASSWORD, **headers):
    return client.post("/login", data={"username": username, "password": password}, follow_redirects=False,
                       headers=headers)


def test_passwords_are_argon2_hashes_and_tokens_are_digests(site):
    db = site.services.db
    account = accounts.get_user(db, "dr.chan")
    assert account.password_hash.startswith("$argon2id$") and PASSWORD not in account.password_hash
    token = accounts.issue_token(db, "dr.chan")
    from radtriage.db.tables import api_tokens

    with db.read() as conn:
        stored = conn.execute(api_tokens.select()).mappings().one()
    assert token not in str(dict(stored)) and len(stored["token_sha256"]) == 64
    with pytest.raises(accounts.AccountError):
        accounts.add_user(db, "dr.chan", "radiologist", PASSWORD)
    with pytest.raises(ValueError):
        accounts.add_user(db, "short", "radiologist", "short")


def test_login_sets_a_secure_cookie_and_writes_need_the_csrf_token(site):
    assert site.get("/", follow_redirects=False).headers["location"] == "/login"
    r = login(site)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "radtriage_session=" in cookie
    page = site.get("/")
    assert page.status_code == 200 and "Worklist" in page.text and "AI results are an aid" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    me = site.get("/api/v1/me").json()
    assert me["username"] == "dr.chan" and me["csrf_token"]
    uid = seed.seed(site.services.db, 1)[0]
    r = site.post(f"/api/v1/studies/{uid}/claim")
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    r = site.post(f"/api/v1/studies/{uid}/claim", headers={"X-CSRF-Token": "wrong"})
    assert r.status_code == 403
    r = site.post(f"/api/v1/studies/{uid}/claim", headers={"X-CSRF-Token": me["csrf_token"]})
    assert r.status_code == 200 and r.json()["claimed_by"] == "dr.chan"
    assert site.post("/logout", headers={"X-CSRF-Token": me["csrf_token"]}).status_code == 204
    assert site.get("/api/v1/me").status_code == 401
    actions = [e["action"] for e in reversed(audit.entries(site.services.db, actor="dr.chan")[1])]
    assert actions == ["login", "claimed", "logout"]


def test_cross_site_login_is_refused(site):
    r = login(site, origin="https://evil.example")
    assert r.status_code == 403
    assert login(site, origin="http://127.0.0.1:8000").status_code == 303


def test_failed_logins_are_rate_limited(site):
    for _ in range(5):
        assert login(site, password="wrong password!").headers["location"] == "/login?error=bad"
    r = login(site)  # even the right password waits now
    assert r.headers["location"].startswith("/login?error=wait")
    assert "radtriage_session" not in r.headers.get("set-cookie", "")
    login_page = site.get("/login?error=wait")
    assert "Too many attempts" in login_page.text
    assert login(site, username="someone.else", password="wrong password!").headers["location"] == "/login?error=bad"
    _, entries = audit.entries(site.services.db, action="login_failed")
    assert len(entries) == 6


def test_disabling_a_user_ends_their_session(site):
    login(site)
    assert site.get("/api/v1/me").status_code == 200
    accounts.set_disabled(site.services.db, "dr.chan")
    assert site.get("/api/v1/me").status_code == 401
    assert login(site).headers["location"] == "/login?error=bad"


def test_first_start_creates_one_admin(make_settings):
    services = build_services(make_settings())
    created = first_admin(services)
    assert created is not None and created[0] == "admin" and len(created[1]) >= 16
    assert first_admin(services) is None
    account = accounts.get_user(services.db, "admin")
    assert account.role == "admin"
    services.close()


def test_users_cli(tmp_path):
    env = {"RADTRIAGE_DATA_DIR": str(tmp_path / "data"), "RADTRIAGE_CONFIG_FILE": str(tmp_path / "absent.yaml"),
           "PATH": "/usr/bin:/bin"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "radtriage.cli", "users", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    r = cli("add", "dr.wong", "--role", "radiologist", "--generate")
    assert r.returncode == 0, r.stderr
    password = r.stdout.split("password for dr.wong: ")[1].split()[0]
    assert cli("add", "dr.wong", "--role", "radiologist").returncode == 1
    assert cli("add", "pacs-bridge", "--role", "service").returncode == 0
    token = cli("token", "pacs-bridge").stdout.strip()
    assert token.startswith("rt_")
    listing = cli("list").stdout
    assert "dr.wong" in listing and "pacs-bridge" in listing and password not in listing
    assert cli("disable", "dr.wong").returncode == 0
    assert "disabled" in cli("list").stdout
    services = build_services(load_settings(config_file=tmp_path / "absent.yaml", data_dir=tmp_path / "data"))
    assert accounts.user_for_token(services.db, token).username == "pacs-bridge"
    assert accounts.get_user(services.db, "dr.wong").disabled
    services.close()


def test_development_secret_is_made_once_and_kept_private(make_settings):
    import stat

    from radtriage.service import secret_key_for

    settings = make_settings()
    services = build_services(settings)
    key = services.secret_key
    assert len(key) >= 32 and secret_key_for(settings) == key
    assert stat.S_IMODE((settings.data_dir / "secret_key").stat().st_mode) == 0o600
    services.close()
    assert secret_key_for(make_settings(auth={"secret_key": "y" * 40})) == b"y" * 40


def test_service_accounts_may_stow(make_settings):
    from radtriage.db import accounts as acc

    services = build_services(make_settings(http_host="0.0.0.0"))
    acc.add_user(services.db, "pacs", "service")
    acc.add_user(services.db, "dr.x", "radiologist", PASSWORD)
    token, person = acc.issue_token(services.db, "pacs"), acc.issue_token(services.db, "dr.x")
    with TestClient(create_app(services)) as client:
        body, ctype = b"--b--\r\n", 'multipart/related; type="application/dicom"; boundary=b'
        assert client.post("/dicomweb/studies", content=body, headers={"Content-Type": ctype}).status_code == 401
        r = client.post("/dicomweb/studies", content=body,
                        headers={"Content-Type": ctype, "Authorization": f"Bearer {person}"})
        assert r.status_code == 403  # a person's token is not a STOW client
        r = client.post("/dicomweb/studies", content=body,
                        headers={"Content-Type": ctype, "Authorization": f"Bearer {token}"})
        assert r.status_code not in (401, 403)
    services.close()
