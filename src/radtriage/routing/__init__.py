"""Routing: which task pipelines apply to an assembled series (`route`, `why_not`, `near_misses`),
and which series of a study a pipeline should read (`best_series`, by its ``prefer`` rules).

What a pipeline is lives in `radtriage.pipelines`; the rule language in `radtriage.rules`.
"""

from radtriage.routing.match import Candidate, best_series, matches, near_misses, rank_series, route, why_not

__all__ = ["Candidate", "best_series", "matches", "near_misses", "rank_series", "route", "why_not"]
