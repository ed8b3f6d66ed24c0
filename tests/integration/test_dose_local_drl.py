"""Local DRLs on a known data set equal the hand-computed percentiles (SQLite: medians in Python;
PostgreSQL: percentile_cont in the database), phantoms apart; CSV and XLSX exports."""

from __future__ import annotations

import datetime as dt
import io

import pytest

from radtriage.db import Database, open_database
from radtriage.db import dose as rows
from radtriage.dose.local import csv_text, local_drls, percentile, table_xlsx

WHEN = dt.datetime(2026, 6, 1, 10, 0, tzinfo=dt.UTC)
# facility -> CT head CTDIvol values (adult, 16 cm)
DATA = {"A": [40, 50, 60], "B": [30, 70], "C": [55], "D": [20, 40, 60, 80]}
# medians by hand: A 50, B 50, C 55, D 50  -> sorted 50, 50, 50, 55
# P75: h = 3 * 0.75 = 2.25 -> 50 + 0.25 * (55 - 50) = 51.25; P25: h = 0.75 -> 50; P50: h = 1.5 -> 50


def _fill(db: Database) -> None:
    n = 0
    with db.write() as conn:
        for facility, values in DATA.items():
            for v in values:
                n += 1
                rows.save_exam(conn, dict(
                    study_uid=f"1.2.{n}", performed_at=WHEN, modality="CT", facility=facility, scanner=f"{facility}-CT1",
                    examination="CT head", band="adult", pregnant=False, source="rdsr", estimated=False, phantom_cm=16,
                    ctdivol=float(v), dlp=float(v) * 15), WHEN)
        # the same examination on the 32 cm phantom: its own row, never pooled with the 16 cm ones
        rows.save_exam(conn, dict(study_uid="1.3.1", performed_at=WHEN, modality="CT", facility="A", scanner="A-CT1",
                                  examination="CT head", band="adult", pregnant=False, source="rdsr", estimated=False,
                                  phantom_cm=32, ctdivol=20.0), WHEN)
        # outside the period
        rows.save_exam(conn, dict(study_uid="1.4.1", performed_at=WHEN - dt.timedelta(days=400), modality="CT",
                                  facility="E", scanner="E-CT1", examination="CT head", band="adult", pregnant=False,
                                  source="rdsr", estimated=False, phantom_cm=16, ctdivol=500.0), WHEN)


def test_percentile_by_hand():
    assert percentile([50, 50, 50, 55], 0.75) == pytest.approx(51.25)
    assert percentile([1, 2, 3, 4, 5], 0.25) == 2 and percentile([7], 0.9) == 7
    assert percentile([20, 40, 60, 80], 0.5) == 50


def test_local_drls_equal_hand_computed_percentiles(db_url):
    db = open_database(db_url)
    try:
        _fill(db)
        table = local_drls(db, since=WHEN - dt.timedelta(days=30), until=WHEN + dt.timedelta(days=1),
                           quantities=["CTDIvol"])
        by_phantom = {r.phantom_cm: r for r in table}
        head16 = by_phantom[16]
        assert (head16.drl, head16.achievable, head16.median) == pytest.approx((51.25, 50.0, 50.0))
        assert (head16.groups, head16.exams, head16.unit) == (4, 10, "mGy")
        assert by_phantom[32].groups == 1 and by_phantom[32].drl == 20.0
        scanners = local_drls(db, by="scanner", quantities=["DLP"], since=WHEN - dt.timedelta(days=30))
        assert [(r.phantom_cm, r.drl) for r in scanners] == [(16, pytest.approx(51.25 * 15))]
        text = csv_text(table, "2026-05-02 to 2026-06-02")
        assert "percentile method: linear interpolation" in text and "CT head,adult,16,CTDIvol,mGy,51.25,50,50,4,10" in text
        from openpyxl import load_workbook

        ws = load_workbook(io.BytesIO(table_xlsx(table, "p"))).active
        cells = [[c.value for c in r] for r in ws.iter_rows()]
        assert cells[3][:4] == ["examination", "band", "phantom_cm", "quantity"]
        assert cells[4][5] == pytest.approx(51.25) or cells[5][5] == pytest.approx(51.25)
    finally:
        db.dispose()
