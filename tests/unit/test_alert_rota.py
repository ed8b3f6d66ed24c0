"""The on-call rota: shifts in local time (past midnight too), overrides, fallback, gaps."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from radtriage.alerts.config import parse_alerting
from radtriage.alerts.rota import gaps, on_call, recipients

HK = ZoneInfo("Asia/Hong_Kong")


def config(**rota_extra):
    member = {"name": "x"}
    return parse_alerting({
        "teams": {"stroke": {"members": {"chan": member, "lee": member, "wong": member}},
                  "ir": {"members": {"ho": member}}},
        "rotas": {"primary": {"shifts": [
            {"member": "chan", "days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "20:00"},
            {"member": "lee", "days": ["mon", "tue", "wed", "thu", "fri"], "start": "20:00", "end": "08:00"},
        ], **rota_extra}},
        "policies": {"stroke": {"findings": ["ich"], "levels": [
            {"notify": [{"oncall": "primary"}, {"member": "ho"}, {"team": "stroke"}], "channels": ["webhook"],
             "ack_timeout_s": 60}]}},
    })


def at(text: str, zone=HK) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=zone)


@pytest.mark.parametrize("moment, who", [
    ("2026-11-02T08:00", ["chan"]),   # Monday, the day shift starts
    ("2026-11-02T19:59", ["chan"]),
    ("2026-11-02T20:00", ["lee"]),    # the night shift, past midnight into Tuesday
    ("2026-11-03T07:59", ["lee"]),
    ("2026-11-07T03:00", ["lee"]),    # Saturday 03:00: Friday's night shift
    ("2026-11-07T12:00", []),         # Saturday noon: nobody, no fallback
])
def test_shifts_in_local_time(moment, who):
    c = config()
    assert on_call(c, c.rotas["primary"], at(moment)) == who


def test_the_moment_is_read_in_the_rota_time_zone():
    c = config()
    utc_0100 = dt.datetime(2026, 11, 3, 1, 0, tzinfo=dt.UTC)  # Tuesday 09:00 in Hong Kong
    assert on_call(c, c.rotas["primary"], utc_0100) == ["chan"]
    c2 = config(timezone="Europe/London")
    assert on_call(c2, c2.rotas["primary"], utc_0100) == ["lee"]  # 01:00 in London: Monday's night shift


def test_overrides_replace_the_shift_and_fallback_fills_gaps():
    c = config(overrides=[{"member": "wong", "start": "2026-12-24T20:00", "end": "2026-12-26T08:00"}],
               fallback=["wong"])
    rota = c.rotas["primary"]
    assert on_call(c, rota, at("2026-12-25T10:00")) == ["wong"]
    assert on_call(c, rota, at("2026-12-26T08:00")) == ["wong"]  # Saturday: no shift, the fallback
    assert on_call(c, rota, at("2026-12-28T09:00")) == ["chan"]


def test_recipients_of_a_level_each_once_in_order():
    c = config()
    level = c.policies["stroke"].levels[0]
    assert recipients(c, level, at("2026-11-02T09:00")) == ["chan", "ho", "lee", "wong"]


def test_gaps_are_found_unless_there_is_a_fallback():
    c = config()
    holes = gaps(c, c.rotas["primary"], step_min=60)
    assert holes[:8] == [f"mon 0{h}:00" for h in range(8)] and holes[8] == "sat 08:00" and len(holes) == 48
    c2 = config(fallback=["wong"])
    assert gaps(c2, c2.rotas["primary"]) == []
