"""A study's draft report in every language, from its live AI results.

Only results of pipelines that are live at the site enter a draft (``state == "live"``), and of each
pipeline only its latest result (an earlier one was superseded by a new series version). A finding the
reader removed (``"<result id>:<finding index>"`` in ``removed``) is left out of every language.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from radtriage.domain import TaskResult
from radtriage.reports import SECTIONS
from radtriage.reports.facts import series_context, study_context, task_context
from radtriage.reports.templating import REPORT, Templates


def live_results(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows a draft is made of: live, the newest of each pipeline, in pipeline order."""
    newest: dict[str, Mapping[str, Any]] = {}
    for r in rows:
        if r.get("state", "live") == "live" and (r["pipeline_id"] not in newest or r["id"] > newest[r["pipeline_id"]]["id"]):
            newest[r["pipeline_id"]] = r
    return [newest[k] for k in sorted(newest)]


def removed_of(removed: Iterable[str], result_id: int) -> set[int]:
    return {int(x.split(":")[1]) for x in removed if x.split(":")[0] == str(result_id)}


def _fallback(context: Mapping[str, Any]) -> dict[str, str]:
    """A task without a template in a language: the findings as the worklist says them."""
    lines = [f["text"] for f in context["findings"]]
    return {"findings": "\n".join(lines), "impression": "\n".join(lines)}


def draft(templates: Templates, study: Mapping[str, Any], rows: Iterable[Mapping[str, Any]],
          headers: Mapping[str, Mapping[str, Any]], removed: Iterable[str] = (),
          about: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, str]]:
    """Each language's sections. ``rows``: the study's result rows (``id``, ``pipeline_id``, ``series_uid``,
    ``state``, ``result``); ``headers``: each series' header by UID; ``about``: each pipeline's title."""
    about, removed = about or {}, list(removed)
    results = live_results(rows)
    contexts = [task_context(TaskResult.model_validate(r["result"]),
                             {"id": r["id"], "pipeline_id": r["pipeline_id"],
                              "pipeline_title": str(about.get(r["pipeline_id"], {}).get("title") or r["pipeline_id"])},
                             removed_of(removed, r["id"])) for r in results]
    series_uids = list(dict.fromkeys(r["series_uid"] for r in results))
    report = {"study": study_context({**study, "modality": study.get("modality")
                                      or (headers.get(series_uids[0], {}).get("Modality") if series_uids else "")}),
              "series": [series_context(headers.get(uid, {})) for uid in series_uids],
              "pipelines": [{"title": c["result"]["pipeline_title"], "model_id": c["result"]["model_id"],
                             "model_version": c["result"]["model_version"]} for c in contexts]}
    out: dict[str, dict[str, str]] = {}
    for code in templates.envs:
        common = templates.render(code, REPORT, report)
        tasks = set(templates.tasks(code))
        parts = [templates.render(code, f"{c['result']['task']}.j2", c) if c["result"]["task"] in tasks
                 else _fallback(c) for c in contexts]
        impressions = [line for p in parts for line in p["impression"].splitlines()]
        numbered = [f"{i}. {line}" for i, line in enumerate(impressions, 1)] if len(impressions) > 1 else impressions
        out[code] = {
            "examination": common["examination"], "technique": common["technique"],
            "findings": "\n".join(p["findings"] for p in parts) if parts else common["no_results"],
            "impression": "\n".join(numbered) if parts else common["no_results"],
            "ai_statement": common["ai_statement"] if parts else ""}
        assert set(out[code]) == set(SECTIONS)
    return out
