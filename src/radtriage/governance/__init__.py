"""Each pipeline's state at this site (shadow | live | suspended) and the decisions that change it.

A pipeline's state is decided for its fingerprint: pipeline id, model id, version and sha256, and the
thresholds it runs at (`Fingerprint`), so a new model version or a changed threshold starts again in
shadow. Without a decision: in development a model trained on synthetic data runs live as a
demonstration (the pages say so); anywhere else, and always in production, a pipeline runs in shadow
until an admin promotes it on evidence that meets its floors (`radtriage.governance.decide`).
Only live results change a priority or page anyone (`radtriage.triage`, `radtriage.serving`).
"""

from radtriage.governance.state import (
    DEMONSTRATION,
    STATES,
    Fingerprint,
    PipelineState,
    StateBook,
    fingerprint,
    resolve,
)

__all__ = ["DEMONSTRATION", "STATES", "Fingerprint", "PipelineState", "StateBook", "fingerprint", "resolve"]
