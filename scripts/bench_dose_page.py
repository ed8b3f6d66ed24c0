"""How long the Dose page (/admin/dose) takes to draw over N examinations of a 90-day period.

SQLite in a temporary data directory, the app in process (FastAPI's TestClient), a physicist's bearer
token. The registry is filled directly (`radtriage.db.dose.save_exam`): CT head (16 cm) and CT chest
(32 cm), adult, log-normal CTDIvol, 8 facilities with 2 scanners each, one examination in 50 flagged.
Prints one RESULT line per N: the fastest and slowest of 3 page loads and the page's size.

    .venv/bin/python scripts/bench_dose_page.py --n 1000 --n 10000 --n 50000
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from radtriage.api import create_app
from radtriage.config import load_settings
from radtriage.db import accounts
from radtriage.db import dose as rows
from radtriage.dose.registry import load_registry
from radtriage.service import build_services

ROOT = Path(__file__).resolve().parents[1]
END = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
FLAG = {"reason": "above_drl", "quantity": "CTDIvol", "urgent": False, "detail": "synthetic: above the DRL",
        "value": None, "level": None, "unit": "mGy"}


def fill(db, n: int, rng: random.Random) -> None:
    with db.write() as conn:
        for i in range(n):
            facility = rng.choice("ABCDEFGH")
            exam, phantom, mu = ("CT head", 16, 3.8) if rng.random() < 0.5 else ("CT chest", 32, 2.2)
            ctdi = rng.lognormvariate(mu, 0.3)
            rows.save_exam(conn, dict(
                study_uid=f"1.2.826.0.1.3680043.10.998.{i}", modality="CT", facility=facility,
                performed_at=END - dt.timedelta(minutes=rng.randrange(0, 89 * 1440)), protocol="P",
                scanner=f"{facility} CT{rng.randrange(1, 3)}", examination=exam, band="adult", pregnant=False,
                source="rdsr", estimated=False, phantom_cm=phantom, ctdivol=ctdi, dlp=ctdi * 15,
                drl_set="EXAMPLE - not a published DRL v1"), END)
            if i % 50 == 0:
                rows.add_flags(conn, f"1.2.826.0.1.3680043.10.998.{i}", [FLAG], END)


def run(n: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(config_file=Path(tmp) / "absent.yaml", data_dir=Path(tmp) / "data", dicom_port=0,
                                 inference={"enabled": False}, alerting_file=None)
        services = build_services(settings)
        try:
            load_registry(services.db, ROOT / "configs" / "dose.yaml")  # imports the example DRL set
            fill(services.db, n, random.Random(1))
            accounts.add_user(services.db, "bench-physicist", "physicist", "a-long-enough-password-1")
            who = {"Authorization": f"Bearer {accounts.issue_token(services.db, 'bench-physicist')}"}
            times = []
            with TestClient(create_app(services)) as client:
                for _ in range(3):
                    t = time.perf_counter()
                    r = client.get("/admin/dose", params={"since": "2026-09-01", "until": "2026-11-30"}, headers=who)
                    times.append(time.perf_counter() - t)
                    r.raise_for_status()
            return (f"RESULT exams={n} page_s_min={min(times):.2f} page_s_max={max(times):.2f} "
                    f"html_kb={len(r.content) / 1024:.0f}")
        finally:
            services.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, action="append", help="examinations (repeatable; default 1000 and 10000)")
    for n in ap.parse_args().n or [1000, 10000]:
        print(run(n), flush=True)


if __name__ == "__main__":
    main()
