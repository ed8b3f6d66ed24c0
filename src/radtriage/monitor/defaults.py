"""The monitor of a pipeline whose file has no ``monitor:`` section: on, with ranges per task.

The shipped pipelines each write their own section with the reasons for their numbers
(``pipelines/*.yaml``); these defaults are for a site's own pipeline files and are deliberately wide.
"""

from __future__ import annotations

from radtriage.pipelines import MonitorSpec, PipelineSpec
from radtriage.pipelines.monitor import PositiveRate, ScoreDrift

DEFAULT_REASON = "radtriage's default for the task (see the shipped pipelines/*.yaml for reasoned numbers)"
DEFAULT_MONITORS: dict[str, MonitorSpec] = {
    "ich": MonitorSpec(positive_rate=PositiveRate(expected=(0.02, 0.25), hard_max=0.5),
                       score=ScoreDrift(key="ich"), reason=DEFAULT_REASON),
    "lvo": MonitorSpec(positive_rate=PositiveRate(expected=(0.03, 0.4), hard_max=0.7),
                       score=ScoreDrift(key="lvo"), reason=DEFAULT_REASON),
    "nodule": MonitorSpec(positive_rate=PositiveRate(expected=(0.1, 0.8), hard_max=0.95),
                          score=ScoreDrift(key="nodule"), reason=DEFAULT_REASON),
    "bone_age": MonitorSpec(positive_rate=PositiveRate(expected=(0.02, 0.5), hard_max=0.8),
                            score=ScoreDrift(key="difference_months"), reason=DEFAULT_REASON),
}


def monitor_for(spec: PipelineSpec) -> MonitorSpec:
    """The pipeline's monitor: its file's ``monitor:`` section, else the task's default."""
    return spec.monitor or DEFAULT_MONITORS[spec.task]
