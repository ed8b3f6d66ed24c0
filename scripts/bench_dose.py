"""Benchmark of the dose registry.

1. The registry's added time per examination: read a CT RDSR from disk (`radtriage.dose.rdsr.read_rdsr_file`:
   the content tree straight from the bytes, the concept-code walk), make the examination, map it to its DRL
   examination and band, and judge it (p50/p95 over N RDSRs written by `radtriage.synth.rdsr`, 2-4
   irradiation events each); the registry's transaction (keep the report, the examination, the flags, on
   SQLite in a temporary folder) is timed apart.
2. SSDE: what the dose worker does with one CT image series (`radtriage.dose.registry.read_series`: 9 evenly
   spaced 512 x 512 slices read with their pixels, the header estimate, the water-equivalent diameter), then
   the examination and its SSDE; p95 over --series body phantoms (an ellipse with lungs, spine and a table).
3. Local DRLs over 1,000,000 examinations on PostgreSQL (a temporary database on 127.0.0.1:5432, filled by
   COPY, then VACUUM ANALYZE as autovacuum leaves a registry): `radtriage.dose.local.local_drls` for every
   quantity, per facility (one query).

    .venv/bin/python scripts/bench_dose.py [--n 300] [--series 30] [--exams 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from radtriage.db import open_database
from radtriage.dose.config import load_dose_config
from radtriage.dose.judge import examination_of, judge
from radtriage.dose.local import local_drls
from radtriage.dose.rdsr import read_rdsr_file
from radtriage.dose.registry import load_registry, read_series
from radtriage.synth.dicom import CtSeries, make_study, write_ct_series
from radtriage.synth.rdsr import ct_report, write_rdsr

ROOT = Path(__file__).resolve().parents[1]
PARTS = [("head",), ("chest",), ("abdomen-pelvis",), ("chest", "abdomen-pelvis")]


def p95(xs: list[float]) -> float:
    return float(np.percentile(xs, 95))


def per_exam(n: int, work: Path) -> tuple[list[float], list[float]]:
    config, files = load_dose_config(ROOT / "configs" / "dose.yaml")
    drl = files[0][0]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        study = make_study(rng, i, "CT", age_years=(1, 90))
        paths.append(write_rdsr(work / f"s{i}", rng, study, ct_report(rng, study, PARTS[i % len(PARTS)])))
    db = open_database(f"sqlite:///{work / 'bench.db'}")
    registry = load_registry(db, ROOT / "configs" / "dose.yaml")
    judge_ms, write_ms = [], []
    for path in paths:
        t0 = time.perf_counter()
        report = read_rdsr_file(path)
        exam = examination_of([report], config, drl)
        judge(exam, config, drl)
        t1 = time.perf_counter()
        registry.add_reports([report])
        t2 = time.perf_counter()
        judge_ms.append((t1 - t0) * 1000)
        write_ms.append((t2 - t1) * 1000)
    db.dispose()
    return judge_ms, write_ms


def body_phantom(rng: np.random.Generator, slices: int, matrix: int = 512, pixel: float = 0.8) -> np.ndarray:
    """An adult trunk in HU: a soft-tissue ellipse (30-38 x 22-28 cm) with two lungs, a spine, noise and a table."""
    y, x = (np.mgrid[:matrix, :matrix] - (matrix - 1) / 2.0) * pixel
    a, b = rng.uniform(150, 190), rng.uniform(110, 140)
    hu = np.full((matrix, matrix), -1000.0)
    hu[(x / a) ** 2 + (y / b) ** 2 <= 1] = 40.0
    for side in (-1, 1):
        hu[((x - side * a * 0.45) / (a * 0.33)) ** 2 + (y / (b * 0.6)) ** 2 <= 1] = -850.0
    hu[(x / 18) ** 2 + ((y - b * 0.6) / 18) ** 2 <= 1] = 700.0
    hu[int(matrix / 2 + (b + 4) / pixel):int(matrix / 2 + (b + 16) / pixel), 20:-20] = 250.0
    return np.stack([hu + rng.normal(0, 12, hu.shape) for _ in range(slices)])


def per_series(n: int, work: Path) -> list[float]:
    """ms per CT image series for its dose and size (the dose worker's read) plus its SSDE."""
    config, files = load_dose_config(ROOT / "configs" / "dose.yaml")
    rng = np.random.default_rng(2)
    series = []
    for i in range(n):
        study = make_study(rng, i, "CT ABDOMEN PELVIS", age_years=(20, 90))
        s = CtSeries(number=2, description="ABD 5mm", protocol="ABDOMEN PELVIS", body_part="ABDOMEN", kernel="B30f",
                     ctdi_vol=round(float(rng.uniform(8, 18)), 2))
        paths = write_ct_series(work / f"ct{i}", rng, study, s, body_phantom(rng, 40), (5.0, 0.8, 0.8))
        series.append([{"path": str(p), "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "is_localizer": False}
                       for p in paths])
    took = []
    for files_ in series:
        t0 = time.perf_counter()
        _, reports = read_series(files_, "CT")
        exam = examination_of(reports, config, files[0][0])
        took.append((time.perf_counter() - t0) * 1000)
        assert exam is not None and exam.ssde is not None
    return took


def fill_postgres(url: str, n: int) -> None:
    import psycopg

    rng = np.random.default_rng(1)
    exams = np.array(["CT head", "CT chest", "CT abdomen-pelvis", "XR chest PA"])
    kind = rng.integers(0, 4, n)
    facility = rng.integers(0, 40, n)
    scanner = facility * 3 + rng.integers(0, 3, n)
    child = rng.random(n) < 0.1
    base = np.array([50.0, 10.0, 13.0, 0.08])[kind] * rng.lognormal(0, 0.35, n) * (1 + 0.01 * facility)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    buf = io.StringIO()
    for i in range(n):
        k = int(kind[i])
        ct = k < 3
        band = "child 5-<10 y" if child[i] and k == 0 else "adult"
        v = float(base[i])
        cols = [f"2.25.{i}", (start + dt.timedelta(minutes=i % 400000)).isoformat(), "CT" if ct else "DX",
                f"Hospital {facility[i]}", f"CT{scanner[i]}", exams[k], exams[k], band, "f", "rdsr", "f",
                ("16" if k == 0 else "32") if ct else r"\N", f"{v:.3f}" if ct else r"\N",
                f"{v * 30:.2f}" if ct else r"\N", r"\N" if ct else f"{v:.4f}", r"\N" if ct else f"{v * 2:.4f}",
                start.isoformat()]
        buf.write("\t".join(cols) + "\n")
    buf.seek(0)
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn, conn.cursor() as cur:
        with cur.copy("COPY dose_exams (study_uid, performed_at, modality, facility, scanner, protocol, examination, "
                      "band, pregnant, source, estimated, phantom_cm, ctdivol, dlp, dap, entrance_dose, updated_at) "
                      "FROM STDIN") as copy:
            while chunk := buf.read(1 << 20):
                copy.write(chunk)
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE dose_exams")


def local_drl_time(n: int) -> tuple[float, int]:
    import psycopg

    name = f"bench_dose_{uuid.uuid4().hex[:8]}"
    admin = "host=127.0.0.1 port=5432 dbname=test"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://127.0.0.1:5432/{name}"
    try:
        db = open_database(url)
        t0 = time.perf_counter()
        fill_postgres(url, n)
        print(f"filled {n} examinations in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        table = local_drls(db)
        took = time.perf_counter() - t0
        db.dispose()
        return took, len(table)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300, help="RDSRs read and judged")
    ap.add_argument("--series", type=int, default=30, help="CT image series measured for SSDE")
    ap.add_argument("--exams", type=int, default=1_000_000, help="examinations for the local DRLs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        judge_ms, write_ms = per_exam(args.n, Path(tmp))
    with tempfile.TemporaryDirectory() as tmp:
        ssde_ms = per_series(args.series, Path(tmp))
    print(f"read+judge per examination: p50 {statistics.median(judge_ms):.2f} ms, p95 {p95(judge_ms):.2f} ms "
          f"(n={args.n}); registry transaction (SQLite): p50 {statistics.median(write_ms):.2f} ms, "
          f"p95 {p95(write_ms):.2f} ms")
    print(f"CT image series dose + size + SSDE: p50 {statistics.median(ssde_ms):.1f} ms, p95 {p95(ssde_ms):.1f} ms "
          f"(n={args.series}, 9 of 40 slices of 512 x 512)")
    took, rows = local_drl_time(args.exams)
    print(f"local DRLs over {args.exams} examinations (PostgreSQL, per facility, 4 quantities): {took:.2f} s, "
          f"{rows} rows")
    print(f"RESULT dose_ms_p95={p95(judge_ms):.2f} ssde_ms_p95={p95(ssde_ms):.1f} local_drl_s={took:.2f} "
          f"registry_write_ms_p95={p95(write_ms):.2f}")


if __name__ == "__main__":
    main()
