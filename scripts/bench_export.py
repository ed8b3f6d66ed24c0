#!/usr/bin/env python3
"""Benchmark results out: from a result recorded to its last destination's acknowledgement.

What it measures
----------------
``--n`` (default 20) synthetic head CTs (half with a bleed) are C-STOREd by dcmtk's ``storescu`` to a
radtriage runtime in this process (listener, assembly, the ICH reference model in this process, the
export workers), configured with three destinations started by this script on loopback: a real Orthanc
(DICOM SR, key images as SC, KOS), an MLLP receiver answering AA (HL7 v2 ORU^R01) and a FHIR receiver
that validates each transaction Bundle with fhir.resources (R4B) before answering. For each live result,
the time from the result's row (``results.created_at``) to the newest ``delivered_at`` of its export rows
(the last destination's acknowledgement), both written by the service's clock. Inference time is not
part of it. Checks: every export delivered, and Orthanc holds an SR for each result.

The last line printed is machine-readable::

    RESULT export_p95_s=<s> export_p50_s=<s> n=<results> objects=<Orthanc instances>

Usage: ``.venv/bin/python scripts/bench_export.py [--n 20]``. Needs dcmtk and Orthanc (``make peers``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers import start_orthanc, stop_process, storescu, three_destinations, wait_jobs_final  # noqa: E402
from tests.integration.test_export_fhir_hl7 import TOKEN, FhirServer, Listener  # noqa: E402


def _serve(server) -> None:
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


def _latencies(db) -> list[float]:
    from sqlalchemy import func, select

    from radtriage.db.tables import outbox, results

    q = (select(results.c.id, results.c.created_at, func.max(outbox.c.delivered_at), func.count(outbox.c.id),
                func.count(outbox.c.delivered_at))
         .join(outbox, outbox.c.subject == results.c.id.cast(outbox.c.subject.type))
         .where(outbox.c.kind == "export").group_by(results.c.id, results.c.created_at))
    with db.read() as conn:
        rows = conn.execute(q).all()
    if any(n != delivered for *_, n, delivered in rows):
        raise SystemExit(f"not every export was delivered: {[(r[0], r[3], r[4]) for r in rows]}")
    return [(last - created).total_seconds() for _, created, last, *_ in rows]


def run(n: int) -> int:
    import os

    from radtriage.config import load_settings
    from radtriage.db.ledger import result_rows
    from radtriage.service import Runtime, build_services
    from radtriage.synth import synthesize

    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    os.environ["RADTRIAGE_BENCH_FHIR_TOKEN"] = TOKEN
    orthanc, dicom_port, http_port = start_orthanc(work / "orthanc")
    mllp, fhir = Listener(), FhirServer()
    _serve(mllp)
    _serve(fhir)
    settings = load_settings(
        config_file=work / "absent.yaml", data_dir=work / "data", dicom_host="127.0.0.1", dicom_port=0,
        quiet_period_s=0.3, min_free_bytes=0, alerting_file=None,
        inference={"enabled": True, "use_ray": False, "pipelines_dir": str(REPO / "pipelines"),
                   "models_dir": str(REPO / "models"), "poll_s": 0.1},
        exports=three_destinations(dicom_port, mllp.port, fhir.url, "RADTRIAGE_BENCH_FHIR_TOKEN"))
    services = build_services(settings)
    runtime = Runtime(services)
    runtime.start()
    try:
        series = 0
        for i in range(n):
            folder = synthesize("ct-head", 1, 100 + i, work / "studies" / str(i),
                                {"positive": i % 2 == 0, "matrix": 256})[0]
            series += len(json.loads((folder / "truth.json").read_text())["series"])
            r = storescu(runtime.scp.port, sorted(folder.glob("*.dcm")), "SCANNER", settings.ae_title, timeout=300)
            if r.returncode != 0:
                raise SystemExit(f"storescu failed: {r.stderr[-500:]}")
        wait_jobs_final(services.db, series, timeout=900)
        results = [r for r in result_rows(services.db) if r["state"] == "live"]
        deadline = time.monotonic() + 300
        while True:
            try:
                lat = _latencies(services.db)
                if len(lat) == len(results):
                    break
            except SystemExit:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.5)
    finally:
        runtime.stop()
        services.close()
        mllp.shutdown()
        fhir.shutdown()
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/instances", timeout=10) as r:
        objects = len(json.load(r))
    stop_process(orthanc)
    lat.sort()
    p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
    print(f"{len(lat)} results; seconds from result to last acknowledgement: min {lat[0]:.2f} "
          f"median {statistics.median(lat):.2f} p95 {p95:.2f} max {lat[-1]:.2f}; ORU received {len(mllp.received)}, "
          f"DiagnosticReports {len(fhir.store.get('DiagnosticReport', {}))}, Orthanc instances {objects}")
    print(f"RESULT export_p95_s={p95:.2f} export_p50_s={statistics.median(lat):.2f} n={len(lat)} objects={objects}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20, help="studies (default 20)")
    return run(p.parse_args(argv).n)


if __name__ == "__main__":
    raise SystemExit(main())
