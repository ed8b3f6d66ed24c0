"""Studies with their series, as `radtriage studies` and the tests list them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from radtriage.db.clock import aware
from radtriage.db.engine import Database
from radtriage.db.tables import instances, series, studies


def list_studies(db: Database) -> list[dict[str, Any]]:
    """Studies with their series, instance counts and state."""
    q = (
        select(
            studies.c.study_uid,
            studies.c.study_date,
            studies.c.study_description,
            series.c.series_uid,
            series.c.modality,
            series.c.series_description,
            series.c.state,
            series.c.version,
            series.c.last_received_at,
            func.count(instances.c.id).label("instances"),
            func.coalesce(func.sum(instances.c.size_bytes), 0).label("bytes"),
        )
        .join(series, series.c.study_id == studies.c.id)
        .outerjoin(instances, instances.c.series_id == series.c.id)
        .group_by(studies.c.id, series.c.id)
        .order_by(studies.c.id, series.c.id)
    )
    out: dict[str, dict[str, Any]] = {}
    with db.read() as conn:
        for r in conn.execute(q).all():
            st = out.setdefault(
                r.study_uid,
                {
                    "study_uid": r.study_uid,
                    "study_date": r.study_date,
                    "study_description": r.study_description,
                    "series": [],
                },
            )
            st["series"].append(
                {
                    "series_uid": r.series_uid,
                    "modality": r.modality,
                    "series_description": r.series_description,
                    "state": r.state,
                    "version": r.version,
                    "instances": r.instances,
                    "bytes": int(r.bytes),
                    "last_received_at": aware(r.last_received_at).isoformat(),
                }
            )
    return list(out.values())
