"""Each decision signed by its admin, and its commissioning report.

`signed_text` is the canonical JSON of what a decision says (pipeline, action, state, reason, model id,
version and sha256, thresholds, fingerprint, who decided and when) and of its evidence (the sha256 of the
metrics.json and of what the decision keeps of it). `signature` is an HMAC-SHA256 of it with the site's
signing key (the key of the one-click alert links, `radtriage.service.secret_key_for`). `commission`
gives the signed text, the signature and the report: one printable HTML page with no external assets
(the evidence, the operating point, the floors met, who decided and when, the signature), kept with the
decision (`decision_reports`). `verify` says what no longer matches: the decision or its evidence changed
since it was signed, or a signature the key did not make.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from radtriage.security import same, sign

PREFIX = b"radtriage-decision-1:"
SIGNED_KEYS = ("id", "pipeline_id", "action", "state", "reason", "model_id", "model_version", "model_sha256",
               "thresholds", "fingerprint", "decided_by")
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                          undefined=jinja2.ChainableUndefined)


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _when(at: datetime | str) -> str:
    return at if isinstance(at, str) else at.isoformat(timespec="seconds")


def signed_text(decision: Mapping[str, Any]) -> str:
    """What a signature covers: the decision's fields and the digests of its evidence, as canonical JSON."""
    ev = decision.get("evidence")
    body = {**{k: decision[k] for k in SIGNED_KEYS}, "decided_at": _when(decision["decided_at"]),
            "evidence_sha256": ev.get("sha256") if ev else None, "evidence_kept_sha256": digest(ev) if ev else None}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def signature(key: bytes, text: str) -> str:
    return sign(key, PREFIX + text.encode())


def verify(key: bytes, decision: Mapping[str, Any], kept: Mapping[str, Any] | None) -> list[str]:
    """Each reason the decision's signature does not hold; empty when it verifies."""
    if kept is None:
        return ["the decision has no signature"]
    problems = []
    if signed_text(decision) != kept["signed"]:
        problems.append("the decision or its evidence differs from what was signed")
    if not same(signature(key, kept["signed"]), kept["signature"]):
        problems.append("the signature was not made with this site's key over what it says it signed")
    return problems


def _floor_rows(ev: Mapping[str, Any]) -> list[dict[str, Any]]:
    from radtriage.governance.evidence import BOUNDS
    from radtriage.validation.report import fmt

    floors, got = ev.get("floors") or {}, ev.get("measured") or {}
    rows = [{"name": "cases", "needed": f">= {floors.get('min_cases')}", "measured": fmt(got.get("cases")),
             "met": (got.get("cases") or 0) >= (floors.get("min_cases") or 0)}]
    if floors.get("min_positive") is not None:
        rows.append({"name": "positives", "needed": f">= {floors['min_positive']}", "measured": fmt(got.get("positive")),
                     "met": (got.get("positive") or 0) >= floors["min_positive"]})
    for name, words, at_least in BOUNDS:
        if floors.get(name) is None:
            continue
        value = got.get(name)
        met = value is not None and (value >= floors[name] if at_least else value <= floors[name])
        rows.append({"name": words, "needed": f"{'>=' if at_least else '<='} {floors[name]:g}",
                     "measured": fmt(value), "met": met})
    return rows


def render(decision: Mapping[str, Any], signed: str, sig: str) -> str:
    """The commissioning report of a decision (HTML, self-contained, printable)."""
    from radtriage.validation.report import calibration_figure, fmt, metrics_table, roc_figure, subgroup_tables
    from radtriage.validation.run import DISCLAIMER
    ev = decision.get("evidence") or None
    doc = dict((ev or {}).get("document") or {})
    context: dict[str, Any] = {"d": decision, "decided_at": _when(decision["decided_at"]), "ev": ev, "doc": doc,
                               "signed": signed, "signature": sig, "fmt": fmt, "disclaimer": DISCLAIMER,
                               "floors": [], "metrics_table": "", "subgroup_tables": [], "figures": [], "op": None}
    if ev and doc.get("metrics"):
        m = doc["metrics"]
        context.update(floors=_floor_rows(ev), metrics_table=metrics_table(doc), op=m.get("operating_point"),
                       subgroup_tables=subgroup_tables({"subgroups": doc.get("subgroups") or {}}))
        figures = [("ROC curve", roc_figure, "roc"), ("Calibration curve", calibration_figure, "calibration")]
        context["figures"] = [{"title": t, "png": draw(doc)} for t, draw, key in figures if m.get(key)]
    return _ENV.get_template("commissioning_report.html").render(**context)


def commission(key: bytes, decision: Mapping[str, Any]) -> tuple[str, str, str]:
    """(signed text, signature, report) of a decision about to be kept."""
    text = signed_text(decision)
    sig = signature(key, text)
    return text, sig, render(decision, text, sig)
