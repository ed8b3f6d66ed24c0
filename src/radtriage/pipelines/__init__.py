"""What a pipeline is: the schema of ``pipelines/*.yaml`` (`PipelineSpec`) and its loader.

Low in the house: routing, inference, serving, alerts and triage all type
their pipelines as `PipelineSpec`. The rules inside a pipeline's ``select``
and ``prefer`` are `radtriage.rules`.
"""

from radtriage.pipelines.load import OpCatalog, load_pipeline, load_pipelines, op_problems, parse_pipeline
from radtriage.pipelines.monitor import Baseline, MonitorSpec
from radtriage.pipelines.spec import TASKS, Commissioning, OpSpec, PipelineConfigError, PipelineSpec, PriorityMap, PriorityRule

__all__ = [
    "TASKS",
    "Baseline",
    "MonitorSpec",
    "Commissioning",
    "OpCatalog",
    "OpSpec",
    "PipelineConfigError",
    "PipelineSpec",
    "PriorityMap",
    "PriorityRule",
    "load_pipeline",
    "load_pipelines",
    "op_problems",
    "parse_pipeline",
]
