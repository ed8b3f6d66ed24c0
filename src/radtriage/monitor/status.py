"""What the worklist banner says about the monitor: each pipeline it warns about now, or demoted.

A warning is current when it is the monitor's newest entry for the pipeline and no decision on the
pipeline came after it (a decision starts a new period that the monitor judges afresh); a demotion
while the pipeline's newest decision is the monitor's.
"""

from __future__ import annotations

from typing import Any

from radtriage.db import governance as decisions_db
from radtriage.db import monitor as rows
from radtriage.db.engine import Database
from radtriage.monitor.notify import ACTOR


def notices(db: Database) -> list[dict[str, Any]]:
    """``{pipeline_id, level: warning | demoted, text, since}`` per pipeline, by pipeline id."""
    latest = decisions_db.latest_decisions(db)
    out = {}
    for pid, d in latest.items():
        if d["decided_by"] == ACTOR:
            out[pid] = {"pipeline_id": pid, "level": "demoted", "since": d["decided_at"],
                        "text": f"{pid} demoted to shadow by the model monitor ({d['reason']}); its flags are "
                                "withdrawn: read these studies as usual"}
    for pid, said in rows.last_said(db).items():
        decided = latest.get(pid)
        if pid in out or said["action"] != rows.WARNING or (decided and decided["decided_at"] >= said["at"]):
            continue
        out[pid] = {"pipeline_id": pid, "level": "warning", "since": said["at"],
                    "text": f"{pid}: the model monitor warns: " + "; ".join(said["detail"].get("said", []))}
    return [out[k] for k in sorted(out)]
