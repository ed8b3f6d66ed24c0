from pathlib import Path

import pytest
from pydantic import ValidationError

from radtriage.config import load_settings


def test_defaults_are_the_embedded_ones(tmp_path, monkeypatch):
    for k in list(__import__("os").environ):
        if k.startswith("RADTRIAGE_"):
            monkeypatch.delenv(k)
    s = load_settings(config_file=tmp_path / "none.yaml")
    assert (s.dicom_port, s.http_port, s.ae_title) == (11112, 8000, "RADTRIAGE")
    assert s.http_host == "127.0.0.1" and s.allowed_peers == []
    assert s.db_url.startswith("sqlite:///") and s.db_url.endswith("data/radtriage.db")
    assert (s.quiet_period_s, s.stable_age_s) == (1.0, 15.0)


def test_yaml_then_environment_then_overrides(tmp_path, monkeypatch):
    cfg = tmp_path / "r.yaml"
    cfg.write_text("ae_title: FROMYAML\ndicom_port: 104\nallowed_peers:\n  - {ae_title: CT1, host: 10.0.0.5}\n")
    monkeypatch.setenv("RADTRIAGE_DICOM_PORT", "2104")
    s = load_settings(config_file=cfg)
    assert s.ae_title == "FROMYAML" and s.dicom_port == 2104
    assert s.allowed_peers[0].host == "10.0.0.5"
    assert load_settings(config_file=cfg, dicom_port=11113).dicom_port == 11113
    monkeypatch.setenv("RADTRIAGE_ALLOWED_PEERS", '[{"ae_title": "PACS"}]')
    assert [p.ae_title for p in load_settings(config_file=cfg).allowed_peers] == ["PACS"]


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ValidationError):
        load_settings(config_file=tmp_path / "x.yaml", ae_title="A" * 17)
    with pytest.raises(ValidationError):
        load_settings(config_file=tmp_path / "x.yaml", quiet_period_s=10, stable_age_s=5)
    with pytest.raises(ValidationError):
        load_settings(config_file=tmp_path / "x.yaml", no_such_key=1)


def test_repository_config_file_is_valid():
    s = load_settings(config_file=Path(__file__).parents[2] / "configs" / "radtriage.yaml")
    assert s.ae_title == "RADTRIAGE"
