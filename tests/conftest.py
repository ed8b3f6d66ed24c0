"""Shared fixtures: settings in a temporary data directory, databases (SQLite and
PostgreSQL), a running listener in this process."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from radtriage.config import Settings, load_settings
from tests.helpers import need_peer


# --- the end of a run: what was skipped and why ---------------------------------------


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    """A missing peer skips its tests outside CI: say how many and why, so a green run is not mistaken."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons = Counter(
        str(r.longrepr[2]).removeprefix("Skipped: ") if isinstance(r.longrepr, tuple) else str(r.longrepr)
        for r in skipped
    )
    terminalreporter.section(f"{len(skipped)} test{'s' if len(skipped) != 1 else ''} skipped", sep="-")
    for reason, n in reasons.most_common():
        terminalreporter.write_line(f"{n:5d}  {reason}")
    if any("not available" in reason for reason in reasons):
        terminalreporter.write_line("a peer is missing: `make peers` installs or starts it (or prints the command)")


# --- databases ---------------------------------------------------------------


def _postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 dbname=test", connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(scope="session")
def postgres_server() -> str:
    need_peer(_postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    return "host=127.0.0.1 port=5432"


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    name = f"rt_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres_server} dbname=test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://127.0.0.1:5432/{name}"
    with psycopg.connect(f"{postgres_server} dbname=test", autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'radtriage.db'}"
    return request.getfixturevalue("postgres_url")


# --- settings and a running service ------------------------------------------------


@pytest.fixture
def make_settings(tmp_path: Path):
    """Settings in a temporary data directory; keyword overrides apply."""

    def _make(**overrides) -> Settings:
        values = dict(
            data_dir=tmp_path / "data",
            dicom_host="127.0.0.1",
            dicom_port=0,
            quiet_period_s=0.3,
            stable_age_s=3.0,
            assembly_poll_s=0.05,
            min_free_bytes=0,
            inference={"enabled": False},  # tests that run the pipelines turn it on
            alerting_file=None,  # tests that page build their own AlertService
        )
        values.update(overrides)
        return load_settings(config_file=tmp_path / "absent.yaml", **values)

    return _make


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


@pytest.fixture
def services(settings: Settings):
    from radtriage.service import build_services

    svc = build_services(settings)
    yield svc
    svc.close()


@pytest.fixture
def runtime(services):
    """The listener and assembly running in this process on an ephemeral port."""
    from radtriage.service import Runtime

    rt = Runtime(services)
    rt.start()
    yield rt
    rt.stop()


# --- DICOM test data ---------------------------------------------------------------


@pytest.fixture(scope="session")
def ct_slice_path() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm"))


