"""An edge gateway's hub (`radtriage.forward`): where every stored instance goes, how its series are checked
for completeness, the site's Issuer of Patient ID, and whether AI runs here or at the hub.

The hub is a DICOM storage SCP (a PACS or a radtriage hub's listener: ``dicom``) or a radtriage hub's
STOW-RS URL (``stow_url``). ``api_url`` names a radtriage hub's base URL for the series check (and tells it
this site's name); without it a DICOM hub is asked by Storage Commitment. The service token comes from the
environment variable ``token_env`` names, never from the file."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from radtriage.config.exports import ClientTls

SITE_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class HubDicom(BaseModel):
    """The hub's DICOM storage SCP: C-STORE (TLS where ``tls`` is set), Storage Commitment where it offers it."""

    model_config = ConfigDict(extra="forbid")

    name: str = "hub"
    ae_title: str = Field(min_length=1, max_length=16)
    host: str
    port: int = Field(ge=1, le=65535)
    tls: ClientTls | None = None
    timeout_s: float = Field(default=30.0, gt=0)


class ForwardSettings(BaseModel):
    """``forward:`` in the settings: this radtriage is an edge gateway of ``site`` forwarding to a hub."""

    model_config = ConfigDict(extra="forbid")

    site: str = Field(pattern=SITE_PATTERN)  # this site's name, shown at the hub as the studies' origin
    issuer: str | None = Field(default=None, min_length=1, max_length=64)  # Issuer of Patient ID (0010,0021)
    dicom: HubDicom | None = None
    stow_url: str | None = Field(default=None, pattern=r"^https?://")  # a radtriage hub's .../dicomweb/studies
    api_url: str | None = Field(default=None, pattern=r"^https?://")  # a radtriage hub's base URL (series check)
    token_env: str | None = None  # the environment variable with the hub's service token
    ai: Literal["hub", "edge"] = "hub"  # hub: inference is off here; edge: it runs here too, as configured
    calling_ae: str | None = Field(default=None, max_length=16)  # None: this service's AE title
    max_attempts: int = Field(default=500, ge=1)  # with the backoff cap: about 40 hours of a hub away
    backoff_s: float = Field(default=2.0, gt=0)
    max_backoff_s: float = Field(default=300.0, gt=0)
    threads: int = Field(default=2, ge=1, le=16)
    sweep_s: float = Field(default=0.5, gt=0)  # how often new instances and closed series are looked for
    check_rounds: int = Field(default=3, ge=1)  # series checks after re-sending what the hub lacked
    tls: ClientTls | None = None  # for the HTTPS calls (STOW-RS and the API): the hub's CA, a client cert

    @model_validator(mode="after")
    def _one_hub(self) -> "ForwardSettings":
        if (self.dicom is None) == (self.stow_url is None):
            raise ValueError("forward: name the hub by exactly one of dicom (AE, host, port) or stow_url")
        if self.stow_url is not None and self.token_env is None:
            raise ValueError("forward: stow_url needs token_env (the variable holding the hub's service token)")
        if self.api_url is not None and self.token_env is None:
            raise ValueError("forward: api_url needs token_env (the variable holding the hub's service token)")
        return self

    @property
    def channel(self) -> str:
        """How instances travel: ``dicom`` (C-STORE) or ``stow``."""
        return "dicom" if self.dicom is not None else "stow"

    @property
    def hub_api(self) -> str | None:
        """A radtriage hub's base URL: ``api_url``, else the STOW-RS URL's base; None: a PACS."""
        base = self.api_url
        if base is None and self.stow_url is not None:
            base = self.stow_url.split("/dicomweb", 1)[0]
        return None if base is None else base.rstrip("/")

    @property
    def check_url(self) -> str | None:
        """The hub's series-check endpoint; None: a PACS (Storage Commitment)."""
        return None if self.hub_api is None else self.hub_api + "/api/v1/forward/check"

    @property
    def results_url(self) -> str | None:
        """Where this edge's AI results go (``ai: edge`` and a radtriage hub only); None: they stay here."""
        return None if self.ai != "edge" or self.hub_api is None else self.hub_api + "/api/v1/forward/results"

    def token(self) -> str | None:
        return os.environ.get(self.token_env) if self.token_env else None
