"""configs/alerting.yaml: validated at start-up, errors name the key, secrets only from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from radtriage.alerts.config import AlertingConfigError, load_alerting, parse_alerting

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "configs" / "alerting.yaml"
ENV = {"RADTRIAGE_ALERT_WEBHOOK_SECRET": "s" * 40, "RADTRIAGE_SMTP_PASSWORD": "pw",
       "RADTRIAGE_APPRISE_CHAN": "ntfy://ntfy.example/stroke"}


def doc() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


def error(data: dict, environ: dict | None = None) -> str:
    with pytest.raises(AlertingConfigError) as exc:
        parse_alerting(data, "alerting.yaml", ENV if environ is None else environ)
    return str(exc.value)


def test_the_shipped_configuration_is_valid():
    config = load_alerting(SHIPPED, environ=ENV)
    assert config.timezone == "Asia/Hong_Kong" and config.privacy.patient == "masked"
    assert config.policies["stroke"].findings == ["ich", "lvo"]
    assert [lv.ack_timeout_s for lv in config.policies["stroke"].levels] == [300, 300, 600]
    assert config.channels.email.sender == "radtriage-alerts@hospital.example"
    assert config.member_for_username("klee") == "lee"


def test_defaults_time_zone_is_hong_kong():
    assert parse_alerting({}).timezone == "Asia/Hong_Kong"


@pytest.mark.parametrize("change, key", [
    (lambda d: d["policies"]["stroke"]["levels"][1]["notify"].__setitem__(0, {"oncall": "nobody"}),
     "policies.stroke.levels.1.notify.0.oncall: unknown rota 'nobody'"),
    (lambda d: d["rotas"]["stroke_primary"]["shifts"][0].__setitem__("member", "ghost"),
     "rotas.stroke_primary.shifts.0.member: unknown member 'ghost'"),
    (lambda d: d["policies"]["stroke"]["levels"][0].__setitem__("channels", ["pager"]),
     "policies.stroke.levels.0.channels.0"),
    (lambda d: d["policies"]["stroke"]["levels"][0].pop("ack_timeout_s"),
     "policies.stroke.levels.0.ack_timeout_s: required key missing"),
    (lambda d: d["teams"]["stroke"]["members"]["chan"]["contacts"].__setitem__("email", "not-an-address"),
     "teams.stroke.members.chan.contacts.email"),
    (lambda d: d.__setitem__("timezone", "Mars/Olympus"), "timezone: unknown time zone 'Mars/Olympus'"),
    (lambda d: d["privacy"].__setitem__("patient", "partly"), "privacy.patient"),
    (lambda d: d["links"].__setitem__("study_path", "/studies"), "links.study_path: study_path must contain"),
    (lambda d: d.__setitem__("surprise", 1), "surprise: unknown key"),
    (lambda d: d["teams"]["neuro_ir"]["members"].__setitem__("chan", {"name": "Another Chan"}),
     "teams.neuro_ir.members.chan: member id also in team 'stroke'"),
    (lambda d: d["policies"]["stroke"]["levels"][0]["notify"].__setitem__(0, {"member": "chan", "team": "stroke"}),
     "give exactly one of oncall, member, team"),
    (lambda d: d["channels"].pop("email"), "email needs channels.email"),
])
def test_errors_name_the_key(change, key):
    data = doc()
    change(data)
    message = error(data)
    assert message.startswith("alerting.yaml: ") and key in message


@pytest.mark.parametrize("missing, key", [
    ("RADTRIAGE_ALERT_WEBHOOK_SECRET", "channels.webhook.secret_env"),
    ("RADTRIAGE_SMTP_PASSWORD", "channels.email.password_env"),
    ("RADTRIAGE_APPRISE_CHAN", "teams.stroke.members.chan.contacts.apprise.0"),
])
def test_secrets_come_from_the_environment(missing, key):
    environ = {k: v for k, v in ENV.items() if k != missing}
    message = error(doc(), environ)
    assert key in message and missing in message


def test_a_disabled_configuration_needs_no_secrets():
    data = doc()
    data["enabled"] = False
    assert parse_alerting(data, environ={}).enabled is False


def test_bad_yaml_and_missing_file_are_reported(tmp_path):
    bad = tmp_path / "alerting.yaml"
    bad.write_text("teams: [\n")
    with pytest.raises(AlertingConfigError, match="not valid YAML"):
        load_alerting(bad, environ=ENV)
    with pytest.raises(AlertingConfigError, match="cannot read"):
        load_alerting(tmp_path / "absent.yaml", environ=ENV)
