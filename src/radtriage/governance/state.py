"""The state rule: which state a pipeline is in now, from its fingerprint, its decisions and the environment."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from radtriage.db import governance as rows
from radtriage.db.engine import Database
from radtriage.pipelines import PipelineSpec

State = Literal["shadow", "live", "suspended"]
STATES: tuple[str, ...] = ("shadow", "live", "suspended")
DEMONSTRATION = "synthetic-trained demonstration models, not commissioned for this site"
NOT_COMMISSIONED = "not commissioned at this site: runs in shadow until an admin promotes it on evidence"


@dataclass(frozen=True)
class Fingerprint:
    """What a decision is about: the pipeline, its model (id, version, sha256) and the thresholds it runs at."""

    pipeline_id: str
    model_id: str
    model_version: str
    model_sha256: str
    thresholds: Mapping[str, float] = field(default_factory=dict)
    task: str = ""
    synthetic: bool = False  # the model card says it was trained on synthetic data only

    @property
    def key(self) -> str:
        ident = [self.pipeline_id, self.model_id, self.model_version, self.model_sha256,
                 sorted((k, float(v)) for k, v in self.thresholds.items())]
        return hashlib.sha256(json.dumps(ident).encode()).hexdigest()

    def identity(self) -> dict[str, Any]:
        """The columns of a decision row that name what it is about."""
        return {"pipeline_id": self.pipeline_id, "fingerprint": self.key, "model_id": self.model_id,
                "model_version": self.model_version, "model_sha256": self.model_sha256,
                "thresholds": dict(self.thresholds)}


def fingerprint(spec: PipelineSpec, models_dir: Path) -> Fingerprint:
    """The pipeline's fingerprint from its model card (``models_dir/<model>/model.yaml``); the thresholds are the
    card's with the pipeline's over them, as the runner uses them."""
    card = yaml.safe_load((Path(models_dir) / spec.model / "model.yaml").read_text(encoding="utf-8"))
    thresholds = {**(card.get("thresholds") or {}), **spec.thresholds}
    return Fingerprint(spec.id, str(card["id"]), str(card["version"]), str(card["sha256"]),
                       {k: float(v) for k, v in thresholds.items()}, spec.task,
                       bool((card.get("training_data") or {}).get("synthetic")))


@dataclass(frozen=True)
class PipelineState:
    state: str  # shadow | live | suspended
    reason: str
    source: str  # decision | demonstration | default
    decision_id: int | None = None

    @property
    def live(self) -> bool:
        return self.state == "live"


LIVE = PipelineState("live", "governance not in use", "default")  # a dispatcher built without a state book


def resolve(fp: Fingerprint, decisions: Iterable[Mapping[str, Any]], environment: str) -> PipelineState:
    """A pipeline's state from its decisions (oldest first).

    1. Suspended while its newest decision (any fingerprint) is a suspension: a suspension stops the
       pipeline whatever model it runs, until an admin decides again.
    2. Else the newest decision for this fingerprint.
    3. Else, in development, a synthetic-trained model runs live as a demonstration.
    4. Else shadow.
    """
    decisions = list(decisions)
    if decisions and decisions[-1]["state"] == "suspended":
        d = decisions[-1]
        return PipelineState("suspended", d["reason"], "decision", d["id"])
    mine = [d for d in decisions if d["fingerprint"] == fp.key]
    if mine:
        d = mine[-1]
        return PipelineState(d["state"], d["reason"], "decision", d["id"])
    if environment == "development" and fp.synthetic:
        return PipelineState("live", DEMONSTRATION, "demonstration")
    again = " (a new model version or threshold since its last decision)" if decisions else ""
    return PipelineState("shadow", NOT_COMMISSIONED + again, "default")


class StateBook:
    """The pipelines' fingerprints, fixed at start-up, and their states, read from the decisions each time
    (a decision taken by another process counts from the next job)."""

    def __init__(self, db: Database, specs: Iterable[PipelineSpec], models_dir: Path, environment: str) -> None:
        self.db, self.environment = db, environment
        self.prints = {s.id: fingerprint(s, models_dir) for s in specs}

    def state(self, pipeline_id: str) -> PipelineState:
        return resolve(self.prints[pipeline_id], rows.decisions(self.db, pipeline_id), self.environment)

    def states(self) -> dict[str, PipelineState]:
        return {p: self.state(p) for p in self.prints}

    def demonstration(self) -> bool:
        """Whether any pipeline runs live only as a development demonstration."""
        return any(s.source == "demonstration" for s in self.states().values())
