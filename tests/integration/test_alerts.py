"""Stroke alerts against real peers on loopback: an aiosmtpd SMTP server and a webhook receiver.

Each test runs on SQLite and on PostgreSQL. The alert service decides from a
result (as the dispatcher hands it over), writes the outbox, and its worker
delivers: one signed webhook call and one e-mail with the key image; an
acknowledgement stops escalation; silence escalates on time; a down channel
is retried and bypassed; a crash between deciding and delivering delivers
once per idempotency key; a duplicate finding does not page again but a new
or upgraded one does; a negative result pages nobody.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from radtriage.alerts import AlertService, parse_alerting
from radtriage.alerts.config import AlertingConfig
from radtriage.alerts.receiver import WebhookReceiver
from radtriage.alerts.signing import read_ack_token
from radtriage.db import audit, open_database
from radtriage.db import alerts as store
from radtriage.db.engine import Database
from radtriage.db.tables import studies
from radtriage.domain.case import Finding, StageTimes, TaskResult, TriageCase
from tests.helpers import free_port

SECRET = "webhook-secret-for-tests-0123456789abcdef"
ENV = {"RT_TEST_HOOK_SECRET": SECRET}
LINK_KEY = b"link-key-for-tests-0123456789abcdef"
PATIENT = {"patient_id": "A1234567", "patient_name": "CHAN^TAI MAN", "patient_sex": "M",
           "accession_number": "ACC20261234"}


# --- peers -----------------------------------------------------------------------------


class Inbox:
    """aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.port = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802, ANN001 - aiosmtpd's naming
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 20.0) -> list[email.message.EmailMessage]:
        wait_until(lambda: len(self.messages) >= count, timeout)
        return list(self.messages)


@pytest.fixture
def smtp() -> Iterator[Inbox]:
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    inbox.port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET.encode(), max_age_s=60) as receiver:
        yield receiver


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, step: float = 0.05) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


# --- configuration, database, service ------------------------------------------------------


def level(notify: list[dict], channels: list[str], timeout: float = 30.0, **more: Any) -> dict:
    return {"notify": notify, "channels": channels, "ack_timeout_s": timeout, **more}


def make_config(hook: WebhookReceiver, smtp: Inbox, levels: list[dict] | None = None,
                delivery: dict | None = None, webhook_url: str | None = None, repeat_last: int = 0) -> AlertingConfig:
    def member(name: str) -> dict:
        return {"name": name, "username": name.split()[-1].lower(),
                "contacts": {"webhook": webhook_url or hook.url, "email": f"{name.split()[-1].lower()}@example.org"}}

    return parse_alerting({
        "links": {"base_url": "https://radtriage.test"},
        "delivery": {"poll_s": 0.05, "backoff_s": 0.05, "max_backoff_s": 0.2, "max_attempts": 3, "lease_s": 30,
                     **(delivery or {})},
        "channels": {"webhook": {"secret_env": "RT_TEST_HOOK_SECRET", "timeout_s": 2},
                     "email": {"host": "127.0.0.1", "port": smtp.port, "security": "none",
                               "from": "radtriage@example.org"}},
        "teams": {"stroke": {"members": {"chan": member("Dr Chan"), "lee": member("Dr Lee")}},
                  "consultants": {"members": {"wong": member("Dr Wong")}}},
        "rotas": {"primary": {"shifts": [{"member": "chan", "start": "00:00", "end": "00:00"}]}},
        "policies": {"stroke": {"findings": ["ich", "lvo"], "repeat_last": repeat_last, "levels": levels or [
            level([{"oncall": "primary"}], ["webhook", "email"]),
            level([{"member": "wong"}], ["webhook", "email"])]}},
    }, environ=ENV)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def services(db: Database) -> Iterator[Callable[[AlertingConfig], AlertService]]:
    made: list[AlertService] = []

    def _make(config: AlertingConfig, database: Database | None = None) -> AlertService:
        svc = AlertService(database or db, config, LINK_KEY, environ=ENV)
        made.append(svc)
        return svc

    yield _make
    for svc in made:
        svc.stop()


@pytest.fixture
def key_image(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "stroke_ich-0.png"
    Image.new("L", (64, 64), 128).save(path)
    return path


def add_study(db: Database, study_uid: str) -> None:
    with db.write() as conn:
        conn.execute(studies.insert().values(study_uid=study_uid, created_at=dt.datetime.now(dt.UTC), **PATIENT))


def case_for(study_uid: str, series: str = "1") -> TriageCase:
    now = dt.datetime.now(dt.UTC)
    return TriageCase(case_id=f"{study_uid}.{series}-v1", study_uid=study_uid, series_uid=f"{study_uid}.{series}",
                      calling_ae="CT_ED_1", received_at=now, instances_uri="file:///x", instance_count=32,
                      header={"Modality": "CT", "StationName": "CT-ED-1", "InstitutionName": "Harbour General",
                              "PatientAge": "067Y", "PatientSex": "M"},
                      stage_times=StageTimes(last_received=now - dt.timedelta(seconds=2)))


def ich(key_image: Path | None = None, probability: float = 0.97, subtype: str = "intraparenchymal",
        ml: float = 12.0, positive: bool = True) -> TaskResult:
    found = (Finding(code="ich", text=f"ICH - {subtype}, ~{ml:g} mL", probability=probability,
                     measurements={"estimated_volume_ml": ml}, key_image=str(key_image) if key_image else None),)
    return TaskResult(task="ich", model_id="ich-densenet2d", model_version="1.0.0", pipeline_version="1.0.0",
                      positive=positive, scores={"ich": probability}, labels={"subtype": subtype},
                      findings=found if positive else ())


def actions(db: Database, study_uid: str) -> list[str]:
    return [e["action"] for e in reversed(audit.entries(db, study_uid=study_uid, limit=500)[1])]


def pages(hook: WebhookReceiver) -> list:
    return [r for r in hook.taken.values() if r.event == "alert.page"]


# --- the behaviours ------------------------------------------------------------------------


def test_positive_ich_sends_one_signed_webhook_and_one_email_with_the_key_image(db, services, hook, smtp, key_image):
    add_study(db, "1.2.840.1")
    svc = services(make_config(hook, smtp))
    decisions = svc.on_result(case_for("1.2.840.1"), "stroke_ich", ich(key_image), "STAT", "stroke")
    assert [d.outcome for d in decisions] == ["created"]
    svc.start()

    got = hook.wait_for(1, 20, event="alert.page")
    mails = smtp.wait_for(1)
    time.sleep(0.5)  # nothing more arrives
    assert len(pages(hook)) == 1 and hook.posts == 1 and not hook.refused  # valid signature, fresh timestamp
    p = got[0].payload
    assert p["finding"]["text"] == "ICH - intraparenchymal, ~12 mL" and p["finding"]["probability"] == 0.97
    assert p["finding"]["detail"] == "intraparenchymal, estimated volume 12 mL"
    assert p["where"]["calling_ae"] == "CT_ED_1" and p["where"]["station"] == "CT-ED-1"
    assert p["patient"] == "T.C., ID *****567, M 067Y" and p["accession"] == "********234"
    assert p["study_url"] == "https://radtriage.test/studies/1.2.840.1"
    assert p["minutes_since_scan"] == 0 and p["recipient"] == "Dr Chan"
    token = p["ack_url"].rsplit("/", 1)[1]
    assert read_ack_token(LINK_KEY, token).member == "chan"
    assert got[0].headers["Idempotency-Key"] == p["idempotency_key"]

    assert len(mails) == 1
    mail = mails[0]
    assert mail["To"] == "chan@example.org" and "ICH - intraparenchymal" in mail["Subject"]
    body = mail.get_body(("plain",)).get_content()
    assert "I'm taking it: https://radtriage.test/alerts/ack/" in body and "AI results are an aid" in body
    pngs = [part for part in mail.iter_attachments() if part.get_content_type() == "image/png"]
    assert len(pngs) == 1 and pngs[0].get_content() == key_image.read_bytes()

    for text in (str(p), body, str(audit.entries(db, study_uid="1.2.840.1")[1])):  # identifiers masked or absent
        assert "A1234567" not in text and "TAI MAN" not in text and "ACC20261234" not in text
    assert wait_until(lambda: actions(db, "1.2.840.1").count("alert_delivered") == 2, 5)
    assert actions(db, "1.2.840.1")[0] == "alert_created"
    [view] = svc.active()
    assert view.state == "open" and {d.state for d in view.deliveries} == {"delivered"}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for m in svc.metrics.registry.collect()
               for s in m.samples}
    assert samples[("radtriage_alerts_total", (("finding", "ich"), ("outcome", "created")))] == 1
    assert samples[("radtriage_alert_delivery_seconds_count", (("channel", "webhook"),))] == 1


def test_acknowledgement_stops_escalation_and_is_shown_to_the_others(db, services, hook, smtp):
    levels = [level([{"team": "stroke"}], ["webhook"], timeout=1.0), level([{"member": "wong"}], ["webhook"])]
    svc = services(make_config(hook, smtp, levels))
    svc.on_result(case_for("1.2.840.2"), "stroke_ich", ich(), "STAT", "stroke")
    svc.start()
    first = hook.wait_for(2, 20, event="alert.page")
    chan = next(r for r in first if r.payload["recipient"] == "Dr Chan")

    out = svc.acknowledge_link(chan.payload["ack_url"].rsplit("/", 1)[1])
    assert out.event == "acknowledged"
    again = svc.acknowledge(out.alert["id"], actor="lee", display_name="Dr Lee")  # too late: Dr Chan has it
    assert again.event is None and again.alert["acked_by_name"] == "Dr Chan"

    taken = hook.wait_for(1, 10, event="alert.taken")
    time.sleep(2.0)  # past level 1's deadline
    assert [r.payload["recipient"] for r in taken] == ["Dr Lee"] and taken[0].payload["taken_by"] == "Dr Chan"
    assert {r.payload["recipient"] for r in pages(hook)} == {"Dr Chan", "Dr Lee"}  # Dr Wong never paged
    [view] = svc.active()
    assert (view.state, view.taken_by, view.taken_via, view.level) == ("acknowledged", "Dr Chan", "link", 1)
    acks = audit.entries(db, study_uid="1.2.840.2", action="alert_acknowledged")[1]
    assert len(acks) == 1 and acks[0]["actor"] == "chan" and acks[0]["detail"]["member"] == "chan"
    assert "alert_escalated" not in actions(db, "1.2.840.2")


def test_no_acknowledgement_escalates_to_the_next_level_on_time_then_repeats_the_last(db, services, hook, smtp):
    levels = [level([{"oncall": "primary"}], ["webhook"], timeout=1.0),
              level([{"member": "wong"}], ["webhook"], timeout=1.0)]
    svc = services(make_config(hook, smtp, levels, repeat_last=1))
    svc.on_result(case_for("1.2.840.3"), "stroke_ich", ich(), "STAT", "stroke")
    svc.start()
    [first] = hook.wait_for(1, 20, event="alert.page")
    second = hook.wait_for(2, 20, event="alert.page")[1]
    assert second.payload["recipient"] == "Dr Wong" and second.payload["level"] == 2
    created = svc.active()[0].created_at.timestamp()  # each deadline counts from when its level was queued
    assert 1.0 <= second.at - created and second.at - first.at <= 10.0  # not before the 1 s deadline; soon after
    third = hook.wait_for(3, 20, event="alert.page")[2]  # the last level, paged once more (repeat_last: 1)
    assert third.payload["recipient"] == "Dr Wong" and third.payload["level"] == 3
    assert third.key != second.key  # a new page, not a resend
    assert 2.0 <= third.at - created and third.at - second.at <= 10.0

    assert wait_until(lambda: svc.active()[0].exhausted, 10)  # the repeat timed out too
    escalations = audit.entries(db, study_uid="1.2.840.3", action="alert_escalated")[1]
    assert [(e["detail"]["to_level"], e["detail"].get("repeat"), e["detail"]["reason"])
            for e in reversed(escalations)] == [
        (2, None, "no acknowledgement"), (3, 1, "no acknowledgement"), (None, None, "no acknowledgement")]
    assert len(pages(hook)) == 3


def test_a_down_channel_is_retried_with_backoff_then_bypassed(db, services, hook, smtp):
    hook.status = 503  # the pager gateway is down
    levels = [level([{"oncall": "primary"}], ["webhook", "email"], channel_mode="fallback")]
    svc = services(make_config(hook, smtp, levels))
    svc.on_result(case_for("1.2.840.4"), "stroke_ich", ich(), "STAT", "stroke")
    t0 = time.monotonic()
    svc.start()
    [mail] = smtp.wait_for(1)  # e-mail takes over once the webhook has failed for good
    assert hook.posts == 3 and time.monotonic() - t0 >= 0.05 + 0.1  # three attempts, backoff between them
    assert mail["To"] == "chan@example.org"
    [view] = svc.active()
    by_channel = {d.channel: d for d in view.deliveries}
    assert by_channel["webhook"].state == "failed" and by_channel["webhook"].attempts == 3
    assert by_channel["webhook"].last_error == "webhook: HTTP 503"
    assert wait_until(lambda: svc.active()[0].deliveries[-1].state == "delivered", 5)
    failed = audit.entries(db, study_uid="1.2.840.4", action="alert_failed")[1]
    assert len(failed) == 1 and failed[0]["detail"]["channel"] == "webhook"
    assert actions(db, "1.2.840.4").count("alert_sent") == 4


def test_a_level_that_reaches_nobody_hands_over_to_the_next_at_once(db, services, hook, smtp):
    dead = f"http://127.0.0.1:{free_port()}/alerts"  # nothing listens there
    levels = [level([{"oncall": "primary"}], ["webhook"], timeout=120.0), level([{"member": "wong"}], ["email"])]
    svc = services(make_config(hook, smtp, levels, webhook_url=dead))
    svc.on_result(case_for("1.2.840.5"), "stroke_ich", ich(), "STAT", "stroke")
    svc.start()
    [mail] = smtp.wait_for(1, 15)  # long before level 1's two minutes
    assert mail["To"] == "wong@example.org"
    [e] = audit.entries(db, study_uid="1.2.840.5", action="alert_escalated")[1]
    assert e["detail"]["reason"] == "not delivered" and e["detail"]["to_level"] == 2


def test_a_crash_between_deciding_and_delivering_delivers_once_per_key(db, db_url, services, hook, smtp):
    config = make_config(hook, smtp, delivery={"lease_s": 0.5})
    before = services(config)  # decides and writes the outbox, then "crashes" before its worker runs
    before.on_result(case_for("1.2.840.6"), "stroke_ich", ich(), "STAT", "stroke")
    before.on_result(case_for("1.2.840.7"), "stroke_ich", ich(), "STAT", "stroke")
    with db.write() as conn:  # a sender that died after sending, before recording it
        claimed = store.claim_delivery(conn, dt.datetime.now(dt.UTC), 0.5)
    alert = store.alert_row(db, claimed["alert_id"])
    before.channels.send(claimed["channel"], claimed["member"], before.worker._message(alert, claimed,
                                                                                       dt.datetime.now(dt.UTC)))

    assert claimed["channel"] == "webhook" and hook.posts == 1

    restarted = open_database(db_url)
    try:
        after = services(config, restarted)  # the restarted process
        after.start()
        smtp.wait_for(2)
        hook.wait_for(2, 20)
        assert wait_until(lambda: all(d.state == "delivered" for v in after.active() for d in v.deliveries), 10)
        time.sleep(0.5)
        after.stop()
    finally:
        restarted.dispose()
    assert len(smtp.messages) == 2 and len(hook.taken) == 2
    assert hook.duplicates == 1 and hook.posts == 3  # the one in flight was sent again with its key, taken once
    keys = [r.key for r in hook.taken.values()]
    assert len(set(keys)) == len(keys) == 2


def test_duplicate_finding_does_not_page_again_but_a_new_or_upgraded_one_does(db, services, hook, smtp):
    svc = services(make_config(hook, smtp, [level([{"oncall": "primary"}], ["webhook"])]))
    svc.start()
    study = "1.2.840.8"
    first = svc.on_result(case_for(study, "1"), "stroke_ich", ich(), "STAT", "stroke")
    # let the first page go out: a page still queued when a larger finding supersedes its alert is not sent
    assert len(hook.wait_for(1, 30, event="alert.page")) == 1
    again = svc.on_result(case_for(study, "2"), "stroke_ich", ich(probability=0.9, ml=13), "STAT", "stroke")
    assert again[0].outcome == "duplicate" and again[0].alert_id == first[0].alert_id
    other = svc.on_result(case_for(study, "3"), "stroke_ich", ich(subtype="subdural"), "STAT", "stroke")
    grown = svc.on_result(case_for(study, "4"), "stroke_ich", ich(ml=30), "STAT", "stroke")
    assert [d.outcome for d in (*other, *grown)] == ["created", "created"]
    got = hook.wait_for(3, 30, event="alert.page")
    time.sleep(0.5)
    assert len(pages(hook)) == 3
    assert sorted(r.payload["finding"]["text"] for r in got) == [
        "ICH - intraparenchymal, ~12 mL", "ICH - intraparenchymal, ~30 mL", "ICH - subdural, ~12 mL"]
    first_row = store.alert_row(db, first[0].alert_id)
    assert first_row["state"] == "resolved" and first_row["resolved_reason"] == f"superseded by alert {grown[0].alert_id}"
    assert actions(db, study).count("alert_duplicate") == 1


def test_a_negative_result_pages_nobody(db, services, hook, smtp):
    svc = services(make_config(hook, smtp))
    svc.start()
    assert svc.on_result(case_for("1.2.840.9"), "stroke_ich", ich(positive=False), "STAT", "stroke") == []
    assert svc.on_result(case_for("1.2.840.9"), "stroke_ich", ich(), "STAT", None) == []  # no policy
    time.sleep(0.5)
    assert hook.posts == 0 and smtp.messages == [] and svc.active() == []
    assert actions(db, "1.2.840.9") == []


def test_resolving_an_open_alert_cancels_what_was_not_sent(db, services, hook, smtp):
    svc = services(make_config(hook, smtp))
    [d] = svc.on_result(case_for("1.2.840.10"), "stroke_ich", ich(), "STAT", "stroke")
    out = svc.resolve(d.alert_id, actor="admin", reason="reviewed: artefact")
    assert out.event == "resolved"
    svc.start()
    time.sleep(0.5)
    assert hook.posts == 0 and svc.active() == []
    [view] = svc.for_study("1.2.840.10")
    assert view.state == "resolved" and {x.state for x in view.deliveries} == {"cancelled"}


def test_an_apprise_url_delivers_with_the_key_image(db, services, hook, smtp, key_image):
    with WebhookReceiver(None) as gateway:  # Apprise's json:// service posts here, unsigned
        url = gateway.url.replace("http://", "json://")
        data = make_config(hook, smtp).model_dump(by_alias=True)
        data["teams"]["stroke"]["members"]["chan"]["contacts"]["apprise"] = ["env:RT_TEST_APPRISE"]
        data["policies"]["stroke"]["levels"] = [level([{"oncall": "primary"}], ["apprise"])]
        config = parse_alerting(data, environ={**ENV, "RT_TEST_APPRISE": url})
        svc = AlertService(db, config, LINK_KEY, environ={**ENV, "RT_TEST_APPRISE": url})
        try:
            svc.on_result(case_for("1.2.840.11"), "stroke_ich", ich(key_image), "STAT", "stroke")
            svc.start()
            [got] = gateway.wait_for(1, 20)
            assert wait_until(lambda: svc.active()[0].deliveries[0].state == "delivered", 5)
        finally:
            svc.stop()
    assert got.payload["title"].startswith("[STAT] ICH - intraparenchymal")
    assert "I'm taking it: https://radtriage.test/alerts/ack/" in got.payload["message"]
    assert len(got.payload["attachments"]) == 1 and hook.posts == 0


def test_two_series_deciding_at_once_page_once(db, services, hook, smtp):
    import threading

    svc = services(make_config(hook, smtp))
    barrier, outcomes = threading.Barrier(4), []

    def decide(series: str) -> None:
        barrier.wait()
        outcomes.extend(d.outcome for d in svc.on_result(case_for("1.2.840.12", series), "stroke_ich", ich(),
                                                         "STAT", "stroke"))

    threads = [threading.Thread(target=decide, args=(str(i),)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["created", "duplicate", "duplicate", "duplicate"]
    assert len(svc.for_study("1.2.840.12")) == 1
