"""Routing: which task pipelines apply to an assembled series (DESIGN.md sections 1 and 3).

`load_pipelines` reads and validates ``pipelines/*.yaml`` at start-up (a bad
file raises `PipelineConfigError` naming the file, key and problem);
`route` / `route_case` match a series header against every pipeline's
``select`` rules (no match is "no AI applicable", not an error);
`best_series` picks the series of a study a pipeline should read by its
``prefer`` rules; `priority_for` maps a task result to a worklist priority.
"""

from radtriage.routing.match import (
    best_series,
    matches,
    near_misses,
    parse_age,
    priority_for,
    rank_series,
    route,
    route_case,
    slices,
    why_not,
)
from radtriage.routing.spec import (
    TASKS,
    PipelineConfigError,
    PipelineSpec,
    load_pipeline,
    load_pipelines,
    parse_pipeline,
)

__all__ = [
    "TASKS",
    "PipelineConfigError",
    "PipelineSpec",
    "best_series",
    "load_pipeline",
    "load_pipelines",
    "matches",
    "near_misses",
    "parse_age",
    "parse_pipeline",
    "priority_for",
    "rank_series",
    "route",
    "route_case",
    "slices",
    "why_not",
]
