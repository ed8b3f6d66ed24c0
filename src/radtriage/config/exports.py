"""Where results go (`radtriage.exports`): DICOM destinations (PACS), HL7 v2 endpoints (RIS) and FHIR
servers (EMR), and which pipelines' results each receives. Secrets (a FHIR bearer token) come from the
environment variable each destination names, never from the file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DICOM_OBJECTS = ("sr", "key_images", "seg")


class ClientTls(BaseModel):
    """TLS for an outgoing connection: the CA that signs the peer, optionally our client certificate."""

    model_config = ConfigDict(extra="forbid")

    ca_file: Path | None = None  # None: the system's trusted CAs
    cert_file: Path | None = None
    key_file: Path | None = None

    def context(self):  # -> ssl.SSLContext
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return ctx


class Destination(BaseModel):
    """What every destination has: a name (unique across kinds), the pipelines it takes (empty: all) and TLS."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    pipelines: list[str] = Field(default_factory=list)
    tls: ClientTls | None = None
    timeout_s: float = Field(default=30.0, gt=0)

    def takes(self, pipeline_id: str) -> bool:
        return not self.pipelines or pipeline_id in self.pipelines


class DicomDestination(Destination):
    """A PACS (or any storage SCP) that receives SR, key images (SC + KOS) and SEG by C-STORE."""

    ae_title: str = Field(min_length=1, max_length=16)
    host: str
    port: int = Field(ge=1, le=65535)
    objects: list[Literal["sr", "key_images", "seg"]] = Field(default_factory=lambda: list(DICOM_OBJECTS))


class Hl7Destination(Destination):
    """A RIS (or interface engine) that receives ORU^R01 over MLLP."""

    host: str
    port: int = Field(ge=1, le=65535)
    sending_application: str = "RADTRIAGE"
    sending_facility: str = "RADIOLOGY"
    receiving_application: str = "RIS"
    receiving_facility: str = "HOSPITAL"
    accession_in: Literal["both", "placer", "filler"] = "both"


class FhirDestination(Destination):
    """A FHIR server (EMR) that receives a DiagnosticReport with its Observations."""

    base_url: str = Field(pattern=r"^https?://")
    token_env: str | None = None  # the environment variable holding the bearer token


class ExportSettings(BaseModel):
    """Destinations of results; none by default (nothing leaves until an operator names a place)."""

    model_config = ConfigDict(extra="forbid")

    dicom: list[DicomDestination] = Field(default_factory=list)
    hl7: list[Hl7Destination] = Field(default_factory=list)
    fhir: list[FhirDestination] = Field(default_factory=list)
    max_attempts: int = Field(default=8, ge=1)
    backoff_s: float = Field(default=5.0, gt=0)
    max_backoff_s: float = Field(default=600.0, gt=0)

    @model_validator(mode="after")
    def _unique(self) -> "ExportSettings":
        names = [d.name for _, d in self.destinations()]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"destination names must be unique: {', '.join(twice)}")
        return self

    def destinations(self) -> list[tuple[str, Destination]]:
        """Every destination with its channel (dicom | hl7 | fhir)."""
        return [("dicom", d) for d in self.dicom] + [("hl7", d) for d in self.hl7] + [("fhir", d) for d in self.fhir]

    def named(self, name: str) -> tuple[str, Destination] | None:
        return next(((c, d) for c, d in self.destinations() if d.name == name), None)
