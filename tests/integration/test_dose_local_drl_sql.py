"""Local DRLs in one PostgreSQL query (medians and percentiles in the database, from the covering index) equal
the SQLite path's (medians and percentiles in Python) on the same random registry: every quantity, both
groupings, a period and a minimum number of groups; and the query reads the covering index."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest
from sqlalchemy import text

from radtriage.db import Database, open_database
from radtriage.db import dose as rows
from radtriage.dose.local import local_drls

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _fill(db: Database, n: int = 400) -> None:
    rng = np.random.default_rng(5)
    with db.write() as conn:
        for i in range(n):
            ct = i % 4 != 3
            facility = int(rng.integers(0, 6))
            v = float(rng.lognormal(3 if ct else -2, 0.4))
            rows.save_exam(conn, dict(
                study_uid=f"1.2.{i}", performed_at=START + dt.timedelta(hours=int(rng.integers(0, 24 * 200))),
                modality="CT" if ct else "DX", facility=f"F{facility}",
                scanner=f"F{facility}-{int(rng.integers(0, 2))}",
                examination=["CT head", "CT chest", "CT abdomen-pelvis", "XR chest PA"][i % 4],
                band="adult" if rng.random() < 0.8 else "child 5-<10 y", pregnant=False, source="rdsr",
                estimated=False, phantom_cm=(16 if i % 4 == 0 else int(rng.choice([16, 32]))) if ct else None,
                ctdivol=v if ct else None, dlp=v * 30 if ct else None, dap=None if ct else v,
                entrance_dose=None if ct else v * 2), START)


@pytest.mark.postgres
def test_one_query_on_postgresql_equals_the_python_path(postgres_url, tmp_path):
    lite, pg = open_database(f"sqlite:///{tmp_path / 'r.db'}"), open_database(postgres_url)
    try:
        _fill(lite)
        _fill(pg)
        for kwargs in ({}, {"by": "scanner"}, {"since": START + dt.timedelta(days=50), "min_groups": 3},
                       {"until": START + dt.timedelta(days=120), "quantities": ["DLP", "DAP"]}):
            want, got = local_drls(lite, **kwargs), local_drls(pg, **kwargs)
            assert len(got) == len(want) > 0
            for w, g in zip(want, got, strict=True):
                assert dataclasses.astuple(g)[:4] == dataclasses.astuple(w)[:4]
                assert (g.drl, g.achievable, g.median) == pytest.approx((w.drl, w.achievable, w.median), rel=1e-9)
                assert (g.groups, g.exams, g.by) == (w.groups, w.exams, w.by)
        assert all(r.groups >= 3 for r in local_drls(pg, min_groups=3))
        with pg.write() as conn:
            conn.execute(text("ANALYZE dose_exams"))
            for off in ("enable_seqscan", "enable_bitmapscan"):  # a few hundred rows: the index when it must choose
                conn.execute(text(f"SET LOCAL {off} = off"))
            plan = "\n".join(r[0] for r in conn.execute(text(
                "EXPLAIN SELECT examination, band, phantom_cm, facility, percentile_cont(0.5) WITHIN GROUP "
                "(ORDER BY ctdivol) FROM dose_exams WHERE examination IS NOT NULL GROUP BY 1, 2, 3, 4")))
        assert "ix_dose_exams_local_drl_facility" in plan
    finally:
        lite.dispose()
        pg.dispose()
