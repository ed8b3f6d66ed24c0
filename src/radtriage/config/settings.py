"""Operational settings from ``configs/radtriage.yaml`` and ``RADTRIAGE_*``.

Precedence, highest first: explicit overrides passed to `load_settings`,
environment variables (``RADTRIAGE_DICOM_PORT=11113``; nested values with
``__``, lists as JSON), the YAML file, the defaults below. There is no
module-level settings object: call `load_settings()` where one is needed and
pass it down.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from radtriage.config.exports import ExportSettings
from radtriage.config.forward import ForwardSettings
from radtriage.config.reports import ReportSettings

# configs/radtriage.yaml beside the repository root when run from a checkout.
DEFAULT_CONFIG_FILE = Path("configs/radtriage.yaml")


class Peer(BaseModel):
    """A calling AE allowed to associate, optionally pinned to an address."""

    ae_title: str = Field(min_length=1, max_length=16)
    host: str | None = None

    @field_validator("ae_title")
    @classmethod
    def _strip(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("AE title must not be blank")
        return v


class TlsSettings(BaseModel):
    """TLS for the DICOM listener (off unless cert and key are given)."""

    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    require_client_cert: bool = False

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None and self.key_file is not None


class DeploymentResources(BaseModel):
    """Ray Serve resources of one pipeline's model deployment."""

    model_config = ConfigDict(extra="forbid")

    num_cpus: float = Field(default=0.25, gt=0)  # four pipelines + ingress must fit on 2 cores
    num_gpus: float = Field(default=0.0, ge=0)
    replicas: int = Field(default=1, ge=1)
    max_batch_size: int = Field(default=4, ge=1)
    batch_wait_timeout_s: float = Field(default=0.01, ge=0)
    threads: int = Field(default=2, ge=1)  # ONNX Runtime intra-op threads
    resources: dict[str, float] = Field(default_factory=dict)  # Ray custom resources, e.g. {"radiology_gpu": 1}


class InferenceSettings(BaseModel):
    """Pipelines, models and the Ray Serve graph that runs them."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    use_ray: bool = True  # False: the same pipelines in-process (small sites, tests)
    pipelines_dir: Path = Path("pipelines")
    models_dir: Path = Path("models")
    ray_address: str | None = None  # None: a local Ray the service starts (or RAY_ADDRESS)
    # How a series reaches the replicas: through Ray's object store (nodes share no disk with the gateway;
    # key images come back in the response), or as paths in the spool every node mounts (declared, never assumed)
    transport: Literal["object_store", "shared_path"] = "object_store"
    # zlib level for instances sent via the object store; 0: off; None: 1 on a cluster, 0 on the local Ray
    # the service starts (on one machine compressing costs more than it saves: docs/benchmarks.md)
    compress_level: int | None = Field(default=None, ge=0, le=9)
    # A remote Ray cluster (nodes on other machines) is refused without Ray's TLS (RAY_USE_TLS=1 and its
    # certificate variables) unless the operator declares the network between them trusted
    trusted_network: bool = False
    default: DeploymentResources = Field(default_factory=DeploymentResources)
    deployments: dict[str, DeploymentResources] = Field(default_factory=dict)  # by pipeline id
    lease_s: float = Field(default=300.0, gt=0)  # renewed every third of it while a job runs
    call_timeout_s: float = Field(default=300.0, gt=0)  # pipelines that do not answer by then: the attempt fails
    max_attempts: int = Field(default=3, ge=1)
    retry_backoff_s: float = Field(default=5.0, ge=0)
    poll_s: float = Field(default=0.2, gt=0)
    in_flight: int = Field(default=4, ge=1)  # jobs dispatched at once

    def resources(self, pipeline_id: str) -> DeploymentResources:
        return self.deployments.get(pipeline_id, self.default)


class AuthSettings(BaseModel):
    """Accounts, sessions and tokens. ``secret_key`` comes from the environment only."""

    model_config = ConfigDict(extra="forbid")

    # Signs one-click links (alert acknowledgements). Required outside development:
    # RADTRIAGE_AUTH__SECRET_KEY. In development a random key is made per start.
    secret_key: SecretStr | None = None
    session_hours: float = Field(default=12.0, gt=0)
    cookie_secure: bool | None = None  # None: Secure cookies when others reach the API (Settings.http_is_exposed)
    login_attempts: int = Field(default=5, ge=1)  # failed logins per user name, from any address ...
    login_attempts_per_address: int = Field(default=20, ge=1)  # ... and per client address, over all names ...
    login_window_s: float = Field(default=300.0, gt=0)  # ... within this window (counted in the database)

    @field_validator("secret_key")
    @classmethod
    def _not_blank(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().strip():
            raise ValueError("RADTRIAGE_AUTH__SECRET_KEY is set but blank: set a random secret of 32+ characters "
                             "(or, in development only, leave it unset)")
        return v


class WorklistSettings(BaseModel):
    """Target turnaround per priority (minutes from arrival); a study past it is overdue."""

    model_config = ConfigDict(extra="forbid")

    targets_min: dict[str, float] = Field(
        default_factory=lambda: {"STAT": 15.0, "URGENT": 60.0, "PENDING_AI": 30.0, "ROUTINE": 24 * 60.0})
    poll_s: float = Field(default=0.25, gt=0)  # how often triage looks for new job states

    @field_validator("targets_min")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        known = {"STAT", "URGENT", "PENDING_AI", "ROUTINE"}
        bad = set(v) - known
        if bad:
            raise ValueError(f"unknown priorities {sorted(bad)}; known: {sorted(known)}")
        if any(x <= 0 for x in v.values()):
            raise ValueError("targets must be positive minutes")
        return v


DEVELOPMENT_SECRETS = frozenset({"", "changeme", "change-me", "secret", "development", "radtriage"})


class Settings(BaseSettings):
    """Everything an operator can set. Secrets come only from the environment."""

    model_config = SettingsConfigDict(
        env_prefix="RADTRIAGE_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("data")
    database_url: str | None = None

    # DICOM listener
    ae_title: str = Field(default="RADTRIAGE", min_length=1, max_length=16)
    dicom_host: str = "0.0.0.0"
    dicom_port: int = Field(default=11112, ge=0, le=65535)
    allowed_peers: list[Peer] = Field(default_factory=list)
    tls: TlsSettings = Field(default_factory=TlsSettings)
    max_pdu_bytes: int = Field(default=4 * 1024 * 1024, ge=0)
    max_associations: int = Field(default=16, ge=1)
    network_timeout_s: float = Field(default=60.0, gt=0)
    # A connection whose A-ASSOCIATE-RQ has not fully arrived this soon is closed; until then
    # it holds no association slot. Each source address may hold this many connections open,
    # and at most max_pending_connections wait for their A-ASSOCIATE-RQ at once.
    pre_association_timeout_s: float = Field(default=5.0, gt=0)
    max_connections_per_address: int = Field(default=8, ge=1)
    max_pending_connections: int = Field(default=256, ge=1)
    # `radtriage serve` runs this many DICOM listener processes on the one port (SO_REUSEPORT);
    # None: one per CPU core. Each stores with the same guarantees; the limits above hold across them.
    dicom_processes: int | None = Field(default=None, ge=1, le=64)
    fsync: bool = True
    min_free_bytes: int = Field(default=256 * 1024 * 1024, ge=0)

    # HTTP API
    http_host: str = "127.0.0.1"
    # Reverse proxies (addresses or networks) whose X-Forwarded-For / X-Forwarded-Proto are believed.
    # Empty (the default): those headers are ignored and the client is the address that connected.
    trusted_proxies: list[str] = Field(default_factory=list)
    http_port: int = Field(default=8000, ge=0, le=65535)
    # Largest STOW-RS part; each part is streamed to the spool, never held whole in memory.
    # (STOW-RS needs a service or admin account's token: the old `stow_token` setting is gone.)
    max_upload_bytes: int = Field(default=2 * 1024 * 1024 * 1024, ge=1)

    # Series assembly
    quiet_period_s: float = Field(default=1.0, ge=0)
    stable_age_s: float = Field(default=15.0, gt=0)
    assembly_poll_s: float = Field(default=0.2, gt=0)

    log_level: str = "INFO"

    # inference (pipelines, models, Ray Serve)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    # Stroke-team alerting: teams, rota, policies, channels (see the file). A missing or
    # invalid file stops start-up in production; in development alerts are then off, with a warning.
    alerting_file: Path | None = Path("configs/alerting.yaml")
    dose_file: Path | None = None  # the dose registry (radtriage.dose): configs/dose.yaml; None: off
    # Examinations recognised across sites (radtriage.recognition); None: no list, no verdicts
    recognition_file: Path | None = None
    worklist: WorklistSettings = Field(default_factory=WorklistSettings)
    # Where live results go: PACS (DICOM), RIS (HL7 v2), EMR (FHIR); none unless named (configs/radtriage.yaml)
    exports: ExportSettings = Field(default_factory=ExportSettings)
    # Report drafts from AI results: a site's own templates, whether drafts may be sent (radtriage.reports)
    reports: ReportSettings = Field(default_factory=ReportSettings)
    # An edge gateway: every stored instance forwarded to a hub (radtriage.forward); None: not an edge
    forward: ForwardSettings | None = None

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        import ipaddress

        for entry in v:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or network "
                                 "(name each proxy; '*' is not allowed)") from None
        return [entry.strip() for entry in v]

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if self.stable_age_s < self.quiet_period_s:
            raise ValueError("stable_age_s must be at least quiet_period_s")
        if self.forward is not None and self.forward.ai == "hub":
            self.inference.enabled = False  # an edge that leaves AI to the hub runs none (docs/forwarding.md)
        return self

    def production_problems(self) -> list[str]:
        """What production needs that these settings lack, each naming its environment variable.

        Checked by `radtriage.service.check_production` together with the alerting secrets, so an
        operator learns everything missing at once instead of one item per failed start."""
        problems = []
        key = self.auth.secret_key.get_secret_value() if self.auth.secret_key else ""
        if key.strip().lower() in DEVELOPMENT_SECRETS or len(key) < 32:
            problems.append("RADTRIAGE_AUTH__SECRET_KEY: a random signing key of 32+ characters "
                            "(python -c 'import secrets; print(secrets.token_urlsafe(48))')")
        if not self.database_url:
            problems.append("RADTRIAGE_DATABASE_URL: the PostgreSQL database "
                            "(postgresql+psycopg://user@host/radtriage); SQLite is for one-machine development")
        return problems

    @property
    def cookie_secure(self) -> bool:
        return self.auth.cookie_secure if self.auth.cookie_secure is not None else self.http_is_exposed

    @property
    def http_is_exposed(self) -> bool:
        """Whether others than this machine reach the API: it listens on another address, or proxies sit in front."""
        return not self.http_is_local or bool(self.trusted_proxies)

    @property
    def http_is_local(self) -> bool:
        return self.http_host in ("127.0.0.1", "::1", "localhost")

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'radtriage.db').resolve()}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = os.environ.get("RADTRIAGE_CONFIG_FILE", str(DEFAULT_CONFIG_FILE))
        return (
            init_settings,
            env_settings,
            YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file),
        )


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from the YAML file, the environment and ``overrides``.

    ``config_file`` replaces ``RADTRIAGE_CONFIG_FILE`` / ``configs/radtriage.yaml``;
    a missing file is fine (defaults and environment apply).
    """
    if config_file is not None:
        previous = os.environ.get("RADTRIAGE_CONFIG_FILE")
        os.environ["RADTRIAGE_CONFIG_FILE"] = str(config_file)
        try:
            return Settings(**overrides)
        finally:
            if previous is None:
                os.environ.pop("RADTRIAGE_CONFIG_FILE", None)
            else:
                os.environ["RADTRIAGE_CONFIG_FILE"] = previous
    return Settings(**overrides)
