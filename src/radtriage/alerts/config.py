"""``configs/alerting.yaml``: teams, the on-call rota, policies per finding and the channels.

Validated by pydantic at start-up; `load_alerting` raises `AlertingConfigError`
naming the file and the key (``policies.stroke.levels.0.notify.0.oncall:
unknown rota 'x'``). Secrets never sit in the file: it names the environment
variables that hold them, and `check_secrets` insists they are set.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MemberId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")]
ChannelName = Literal["webhook", "email", "apprise"]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ENV_PREFIX = "env:"  # an Apprise URL given as env:NAME is read from that environment variable


class AlertingConfigError(ValueError):
    """The alerting configuration is not valid; the message names the file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Contacts(_Strict):
    email: str | None = None
    webhook: str | None = None  # the member's pager gateway / chat bridge endpoint
    apprise: list[str] = Field(default_factory=list)  # Apprise URLs, or env:NAME when the URL holds a token

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not _EMAIL.match(v):
            raise ValueError(f"not an e-mail address: {v!r}")
        return v

    @field_validator("webhook")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("a webhook is an http(s) URL")
        return v

    def has(self, channel: str) -> bool:
        return bool(getattr(self, channel))


class Member(_Strict):
    name: str = Field(min_length=1, max_length=128)
    role: str | None = None  # e.g. "stroke physician", "neuro-interventionalist"
    username: str | None = None  # their radtriage login: an acknowledgement in the API or page maps to them
    contacts: Contacts = Field(default_factory=Contacts)


class Team(_Strict):
    name: str | None = None
    members: dict[MemberId, Member] = Field(min_length=1)


class Shift(_Strict):
    """``member`` is on call from ``start`` to ``end`` (local time) on ``days``; end <= start runs past midnight."""

    member: MemberId
    days: list[Day] = Field(default_factory=lambda: list(DAYS), min_length=1)
    start: dt.time
    end: dt.time


class Override(_Strict):
    """``member`` replaces the rota between two local date-times (leave, swaps, holidays)."""

    member: MemberId
    start: dt.datetime
    end: dt.datetime

    @model_validator(mode="after")
    def _order(self) -> "Override":
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Rota(_Strict):
    timezone: str | None = None  # the configuration's time zone when not given
    shifts: list[Shift] = Field(default_factory=list)
    overrides: list[Override] = Field(default_factory=list)
    fallback: list[MemberId] = Field(default_factory=list)  # when no shift covers the moment


class Target(_Strict):
    """Whom a level notifies: the on-call member(s) of a rota, a named member, or a whole team."""

    oncall: Name | None = None
    member: MemberId | None = None
    team: Name | None = None

    @model_validator(mode="after")
    def _one(self) -> "Target":
        if sum(x is not None for x in (self.oncall, self.member, self.team)) != 1:
            raise ValueError("give exactly one of oncall, member, team")
        return self


class Level(_Strict):
    name: str | None = None
    notify: list[Target] = Field(min_length=1)
    channels: list[ChannelName] = Field(min_length=1)
    # parallel: every channel at once; fallback: the next channel only when the previous one failed for good
    channel_mode: Literal["parallel", "fallback"] = "parallel"
    ack_timeout_s: float = Field(gt=0)


class Upgrade(_Strict):
    """When a finding already alerted for a study pages again: a clearly higher probability or volume."""

    probability_delta: float = Field(default=0.15, gt=0)
    volume_ml_delta: float = Field(default=5.0, gt=0)


class Late(_Strict):
    """Where a page goes when it is decided long after the study arrived (e.g. after a crash and a long
    restart): past ``after_s`` the ``levels`` (the reading radiologist) are paged instead of the policy's."""

    after_s: float = Field(default=3600.0, gt=0)
    levels: list[Level] = Field(min_length=1)


class Policy(_Strict):
    findings: list[Name] = Field(min_length=1)  # finding codes: ich, lvo
    priorities: list[Literal["STAT", "URGENT", "ROUTINE"]] = Field(default_factory=list)  # empty: any positive
    levels: list[Level] = Field(min_length=1)
    upgrade: Upgrade = Field(default_factory=Upgrade)
    notify_on_ack: bool = True  # tell those already paged who is taking it
    # After the last level's deadline, page that level again this many times
    # (each with its deadline) before the alert is marked unanswered.
    repeat_last: int = Field(default=2, ge=0, le=20)
    late: Late | None = None  # none: a late page still goes to ``levels`` (saying LATE)

    def route(self, late: bool = False) -> list[Level]:
        """The levels an alert pages: the policy's, or ``late.levels`` for an alert decided too late."""
        return self.late.levels if late and self.late is not None else self.levels

    def is_late(self, study_age_s: float) -> bool:
        """Whether an alert decided when the study is this old goes to the late levels."""
        return self.late is not None and study_age_s >= self.late.after_s

    def rounds(self, late: bool = False) -> int:
        """How many times levels are paged in all: each level once, then the last ``repeat_last`` more times."""
        return len(self.route(late)) + self.repeat_last

    def level(self, index: int, late: bool = False) -> Level:
        """The level paged at round ``index`` (0-based; rounds past the last level repeat it)."""
        levels = self.route(late)
        return levels[min(index, len(levels) - 1)]


class WebhookChannel(_Strict):
    secret_env: str = "RADTRIAGE_ALERT_WEBHOOK_SECRET"
    timeout_s: float = Field(default=5.0, gt=0)


class EmailChannel(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    ca_file: Path | None = None  # a private CA for the relay's certificate
    username: str | None = None
    password_env: str | None = None
    sender: str = Field(alias="from")
    timeout_s: float = Field(default=10.0, gt=0)
    attach_key_image: bool = True


class AppriseChannel(_Strict):
    timeout_s: float = Field(default=10.0, gt=0)


class Channels(_Strict):
    webhook: WebhookChannel = Field(default_factory=WebhookChannel)
    email: EmailChannel | None = None
    apprise: AppriseChannel = Field(default_factory=AppriseChannel)


class Delivery(_Strict):
    max_attempts: int = Field(default=4, ge=1)
    backoff_s: float = Field(default=2.0, ge=0)  # 2, 4, 8 ... seconds between attempts
    max_backoff_s: float = Field(default=60.0, ge=0)
    lease_s: float = Field(default=60.0, gt=0)  # a delivery whose sender died is tried again after this
    workers: int = Field(default=2, ge=1)
    poll_s: float = Field(default=0.5, gt=0)
    # how often positive results without an alert decision (however old) are looked for and decided
    recover_every_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "recover_window_s" in data:
            raise ValueError("recover_window_s was removed: every positive result without an alert decision is "
                             "now decided however old (see a policy's late: for where late pages go); delete it")
        return data


class Privacy(_Strict):
    patient: Literal["none", "masked", "full"] = "masked"
    id_visible_chars: int = Field(default=3, ge=0, le=8)  # masked: the last N characters of IDs


class Links(_Strict):
    base_url: str = "http://127.0.0.1:8000"
    study_path: str = "/studies/{study_uid}"
    ack_link_ttl_s: float = Field(default=7200.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("base_url is an http(s) URL")
        return v.rstrip("/")

    @field_validator("study_path")
    @classmethod
    def _path(cls, v: str) -> str:
        if "{study_uid}" not in v:
            raise ValueError("study_path must contain {study_uid}")
        return v


class MonitorNotify(_Strict):
    """Who hears from the model monitor (`radtriage.monitor`): ``warn`` when a live pipeline leaves its expected
    ranges, ``page`` (the admin on call) when the monitor demoted one; on each of ``channels`` they have."""

    warn: list[Target] = Field(min_length=1)
    page: list[Target] = Field(min_length=1)
    channels: list[ChannelName] = Field(min_length=1)


class DoseNotify(_Strict):
    """Who hears from the dose registry (`radtriage.dose`), on each of ``channels`` they have: ``notify`` (the
    medical physicists) at once for a child above a DRL, a pregnant patient's abdomen or pelvis, or a dose
    far above; everything else in one daily digest (never a page at night)."""

    notify: list[Target] = Field(min_length=1)
    channels: list[ChannelName] = Field(min_length=1)


class AlertingConfig(_Strict):
    enabled: bool = True
    # Whom to call when alerting is off on this server (a phone number, an extension, a desk): shown
    # on the stroke page in its place, so a person on a phone knows what to do.
    fallback_contact: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str = "Asia/Hong_Kong"
    active_window_h: float = Field(default=24.0, gt=0)  # the page shows alerts this recent that are not resolved
    links: Links = Field(default_factory=Links)
    privacy: Privacy = Field(default_factory=Privacy)
    delivery: Delivery = Field(default_factory=Delivery)
    channels: Channels = Field(default_factory=Channels)
    teams: dict[Name, Team] = Field(default_factory=dict)
    rotas: dict[Name, Rota] = Field(default_factory=dict)
    policies: dict[Name, Policy] = Field(default_factory=dict)
    monitor: MonitorNotify | None = None  # none: the monitor's warnings show on the worklist and in the log only
    dose: DoseNotify | None = None  # none: dose flags show on the dose page and in the audit trail only

    @model_validator(mode="after")
    def _references(self) -> "AlertingConfig":
        for key, tz in [("timezone", self.timezone)] + [(f"rotas.{n}.timezone", r.timezone) for n, r in self.rotas.items()]:
            if tz is not None:
                _zone(key, tz)
        members: dict[str, str] = {}
        for team_name, team in self.teams.items():
            for mid in team.members:
                if mid in members:
                    raise ValueError(f"teams.{team_name}.members.{mid}: member id also in team {members[mid]!r}")
                members[mid] = team_name
        for name, rota in self.rotas.items():
            for i, shift in enumerate(rota.shifts):
                _known(f"rotas.{name}.shifts.{i}.member", shift.member, members, "member")
            for i, o in enumerate(rota.overrides):
                _known(f"rotas.{name}.overrides.{i}.member", o.member, members, "member")
            for i, m in enumerate(rota.fallback):
                _known(f"rotas.{name}.fallback.{i}", m, members, "member")
        for pname, policy in self.policies.items():
            routes = [(f"policies.{pname}.levels", policy.levels)]
            if policy.late is not None:
                routes.append((f"policies.{pname}.late.levels", policy.late.levels))
            for prefix, li, level in [(p, i, lv) for p, levels in routes for i, lv in enumerate(levels)]:
                self._targets_known(f"{prefix}.{li}.notify", level.notify, members)
                if "email" in level.channels and self.channels.email is None:
                    raise ValueError(f"{prefix}.{li}.channels: email needs channels.email (the SMTP relay)")
        if self.monitor is not None:
            self._targets_known("monitor.warn", self.monitor.warn, members)
            self._targets_known("monitor.page", self.monitor.page, members)
            if "email" in self.monitor.channels and self.channels.email is None:
                raise ValueError("monitor.channels: email needs channels.email (the SMTP relay)")
        if self.dose is not None:
            self._targets_known("dose.notify", self.dose.notify, members)
            if "email" in self.dose.channels and self.channels.email is None:
                raise ValueError("dose.channels: email needs channels.email (the SMTP relay)")
        return self

    def _targets_known(self, prefix: str, targets: list[Target], members: Mapping[str, str]) -> None:
        for ti, t in enumerate(targets):
            where = f"{prefix}.{ti}"
            if t.oncall is not None:
                _known(f"{where}.oncall", t.oncall, self.rotas, "rota")
            if t.member is not None:
                _known(f"{where}.member", t.member, members, "member")
            if t.team is not None:
                _known(f"{where}.team", t.team, self.teams, "team")

    # -- look-ups ----------------------------------------------------------------
    def member(self, member_id: str) -> Member | None:
        for team in self.teams.values():
            if member_id in team.members:
                return team.members[member_id]
        return None

    def member_for_username(self, username: str) -> str | None:
        for team in self.teams.values():
            for mid, m in team.members.items():
                if m.username == username:
                    return mid
        return None

    def zone(self, rota: Rota | None = None) -> ZoneInfo:
        return ZoneInfo(rota.timezone if rota is not None and rota.timezone else self.timezone)

    def check_secrets(self, environ: Mapping[str, str]) -> None:
        """Every secret a configured contact needs is in the environment; else an error naming them all."""
        missing = self.missing_secrets(environ)
        if missing:
            raise ValueError("; ".join(missing))

    def missing_secrets(self, environ: Mapping[str, str]) -> list[str]:
        """One line per secret a configured channel or contact needs that ``environ`` lacks."""
        missing = []
        contacts = [(f"teams.{tn}.members.{mid}", m.contacts) for tn, t in self.teams.items()
                    for mid, m in t.members.items()]
        if any(c.webhook for _, c in contacts) and not environ.get(self.channels.webhook.secret_env):
            missing.append(f"channels.webhook.secret_env: environment variable {self.channels.webhook.secret_env} "
                           "is not set (members have webhook contacts; the webhook body is signed with it)")
        email = self.channels.email
        if email is not None and email.username and not (email.password_env and environ.get(email.password_env)):
            missing.append(f"channels.email.password_env: environment variable {email.password_env} is not set")
        for where, c in contacts:
            for i, url in enumerate(c.apprise):
                if url.startswith(ENV_PREFIX) and not environ.get(url[len(ENV_PREFIX):]):
                    missing.append(f"{where}.contacts.apprise.{i}: environment variable "
                                   f"{url[len(ENV_PREFIX):]} is not set")
        return missing


def _zone(key: str, name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{key}: unknown time zone {name!r}") from None


def _known(key: str, value: str, known: Mapping[str, Any], what: str) -> None:
    if value not in known:
        raise ValueError(f"{key}: unknown {what} {value!r}; known: {', '.join(sorted(known)) or '(none)'}")


def _message(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        key = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key missing"
        lines.append(f"{key}: {msg}" if key else msg)
    return "; ".join(lines)


def parse_alerting(data: Any, source: str = "alerting configuration",
                   environ: Mapping[str, str] | None = None) -> AlertingConfig:
    """Validate an already-read document (and, when ``environ`` is given, its secrets)."""
    try:
        config = AlertingConfig.model_validate(data or {})
        if environ is not None and config.enabled:
            config.check_secrets(environ)
    except ValidationError as exc:
        raise AlertingConfigError(f"{source}: {_message(exc)}") from None
    except ValueError as exc:
        raise AlertingConfigError(f"{source}: {exc}") from None
    return config


def read_fallback_contact(path: str | Path | None) -> str | None:
    """``fallback_contact`` from an alerting file that may be invalid, disabled or missing (None then).

    Alerting is off when the file cannot be used; whom to call is still worth showing.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) if path is not None else None
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    value = data.get("fallback_contact") if isinstance(data, dict) else None
    if not isinstance(value, (str, int)):
        return None
    text = " ".join(str(value).split())[:200]  # one line
    return text if text.isprintable() and text else None


def load_alerting(path: str | Path, environ: Mapping[str, str] | None = None) -> AlertingConfig:
    """Read and validate ``configs/alerting.yaml``; secrets are checked against ``environ`` (default: os.environ)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AlertingConfigError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise AlertingConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_alerting(data, str(path), os.environ if environ is None else environ)
