"""Production refuses to start without its secrets, and the image runs production."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from radtriage.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
ALERT_SECRETS = ("RADTRIAGE_ALERT_WEBHOOK_SECRET", "RADTRIAGE_SMTP_PASSWORD", "RADTRIAGE_APPRISE_CHAN")


def _serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RADTRIAGE_")}
    clean.update(RADTRIAGE_ENVIRONMENT="production", RADTRIAGE_DATA_DIR=str(tmp_path / "data"),
                 RADTRIAGE_DICOM_PORT="0", RADTRIAGE_HTTP_PORT="0", **env)
    return subprocess.run([sys.executable, "-m", "radtriage.cli", "serve"], env=clean, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_production_serve_names_everything_missing_at_once(tmp_path):
    run = _serve(tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 2, out
    for name in ("RADTRIAGE_AUTH__SECRET_KEY", "RADTRIAGE_DATABASE_URL", *ALERT_SECRETS):
        assert name in run.stderr, f"{name} not named:\n{out}"
    assert "Traceback" not in out
    assert not (tmp_path / "data").exists(), "refused before it wrote anything"


def test_production_refuses_a_weak_key_and_names_only_what_is_missing(tmp_path):
    run = _serve(tmp_path, RADTRIAGE_AUTH__SECRET_KEY="changeme",
                 RADTRIAGE_DATABASE_URL="postgresql+psycopg://radtriage@127.0.0.1/absent",
                 RADTRIAGE_ALERT_WEBHOOK_SECRET="w" * 32, RADTRIAGE_SMTP_PASSWORD="p")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "RADTRIAGE_AUTH__SECRET_KEY" in run.stderr and "RADTRIAGE_APPRISE_CHAN" in run.stderr
    for present in ("RADTRIAGE_DATABASE_URL", "RADTRIAGE_ALERT_WEBHOOK_SECRET", "RADTRIAGE_SMTP_PASSWORD"):
        assert present not in run.stderr


def test_production_passes_with_everything_set(tmp_path, monkeypatch):
    from radtriage.service import ProductionConfigError, check_production

    monkeypatch.chdir(ROOT)
    settings = load_settings(config_file=ROOT / "configs" / "radtriage.yaml", environment="production",
                             data_dir=tmp_path, auth={"secret_key": "k" * 48},
                             database_url="postgresql+psycopg://radtriage@127.0.0.1/radtriage")
    check_production(settings, environ={name: "set" for name in ALERT_SECRETS})
    with pytest.raises(ProductionConfigError) as err:
        check_production(settings.model_copy(update={"alerting_file": tmp_path / "absent.yaml"}), environ={})
    assert any("absent.yaml" in p for p in err.value.problems)
    # development needs none of it: `make run` starts with nothing set
    check_production(settings.model_copy(update={"environment": "development", "database_url": None}), environ={})


def test_the_image_runs_production():
    text = (ROOT / "Dockerfile").read_text()
    env = dict(re.findall(r"(RADTRIAGE_[A-Z_]+)=(\S+)", text))
    assert env.get("RADTRIAGE_ENVIRONMENT") == "production"
    assert "development" in (ROOT / "configs" / "radtriage.yaml").read_text()  # make run stays development
