"""Who is on call: shifts in local time, overrides, a fallback; and who a level notifies.

Times in the rota are wall-clock times in its time zone (the configuration's,
Asia/Hong_Kong by default). A shift whose end is not after its start runs past
midnight and belongs to the day it starts on. An override covering the moment
replaces the shifts; when nobody is on shift, the rota's ``fallback`` applies.
"""

from __future__ import annotations

import datetime as dt

from radtriage.alerts.config import DAYS, AlertingConfig, Level, Rota, Shift, Target


def _covers(shift: Shift, local: dt.datetime) -> bool:
    t = local.time().replace(tzinfo=None)
    today, yesterday = DAYS[local.weekday()], DAYS[(local.weekday() - 1) % 7]
    if shift.start < shift.end:
        return today in shift.days and shift.start <= t < shift.end
    return (today in shift.days and t >= shift.start) or (yesterday in shift.days and t < shift.end)


def _unique(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def on_call(config: AlertingConfig, rota: Rota, at: dt.datetime) -> list[str]:
    """Member ids on call in ``rota`` at the aware moment ``at``."""
    zone = config.zone(rota)
    local = at.astimezone(zone)
    naive = local.replace(tzinfo=None)
    overriding = [o.member for o in rota.overrides if o.start <= naive < o.end]
    if overriding:
        return _unique(overriding)
    return _unique([s.member for s in rota.shifts if _covers(s, local)]) or list(rota.fallback)


def recipients(config: AlertingConfig, level: Level, at: dt.datetime) -> list[str]:
    """The member ids a level notifies at ``at`` (each once, in the order the level names them)."""
    return targets(config, level.notify, at)


def targets(config: AlertingConfig, notify: list[Target], at: dt.datetime) -> list[str]:
    """The member ids ``notify`` names at ``at``: on call in a rota, a member, a team's members (each once)."""
    out: list[str] = []
    for target in notify:
        if target.oncall is not None:
            out += on_call(config, config.rotas[target.oncall], at)
        elif target.member is not None:
            out.append(target.member)
        elif target.team is not None:
            out += list(config.teams[target.team].members)
    return _unique(out)


def gaps(config: AlertingConfig, rota: Rota, step_min: int = 15) -> list[str]:
    """Times of a week (ignoring overrides) when nobody is on shift and there is no fallback, as "mon 03:00"."""
    if rota.fallback:
        return []
    monday = dt.datetime(2024, 1, 1, tzinfo=config.zone(rota))  # a Monday
    out = []
    for k in range(7 * 24 * 60 // step_min):
        local = monday + dt.timedelta(minutes=k * step_min)
        if not any(_covers(s, local) for s in rota.shifts):
            out.append(f"{DAYS[local.weekday()]} {local:%H:%M}")
    return out
