#!/usr/bin/env python3
"""Benchmark a share of one study: issue (mark, seal, store), open (passcode, key, session), one viewer frame,
the DICOM zip with its DICOMDIR.

What it measures
----------------
A synthetic head CT (``--matrix``, default 512, as scanners write; about 60 instances) is imported into a
radtriage data directory in a temporary folder; a clinician issues a share through the API (in-process
TestClient, so HTTP framing but no network), the holder opens it with the passcode, asks ``--frames`` frames
(default 20) in the brain window, and downloads the zip. Each step is timed with ``time.perf_counter``; the
frame figure is the median of the frames asked. Checks: the zip's DICOMDIR lists every instance.

The last line printed is machine-readable::

    RESULT issue_s=<s> open_s=<s> frame_p50_s=<s> zip_s=<s> instances=<n> sealed_mb=<MB> zip_mb=<MB>

Usage: ``.venv/bin/python scripts/bench_share.py [--matrix 512] [--frames 20]``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--frames", type=int, default=20)
    args = parser.parse_args()

    import pydicom
    from fastapi.testclient import TestClient

    from radtriage.api import create_app
    from radtriage.config import load_settings
    from radtriage.db import accounts
    from radtriage.ingest.importer import import_folder
    from radtriage.service import build_services
    from radtriage.synth import synthesize

    tmp = Path(tempfile.mkdtemp(prefix="bench_share_"))
    settings = load_settings(config_file=tmp / "absent.yaml", data_dir=tmp / "data", dicom_host="127.0.0.1",
                             dicom_port=0, min_free_bytes=0, inference={"enabled": False}, alerting_file=None)
    services = build_services(settings)
    folder = synthesize("ct-head", 1, 11, tmp / "src", {"positive": False, "matrix": args.matrix})[0]
    n = import_folder(services.store, folder).stored
    study = str(pydicom.dcmread(next(folder.glob("*.dcm"))).StudyInstanceUID)
    accounts.add_user(services.db, "cli1", "clinician", "correct horse battery")
    auth = {"Authorization": f"Bearer {accounts.issue_token(services.db, 'cli1')}"}
    with TestClient(create_app(services)) as api:
        t = time.perf_counter()
        issued = api.post(f"/api/v1/studies/{study}/shares", headers=auth, json={
            "consent": "patient", "legal_basis": "benchmark", "audience": "anyone", "expires_in_hours": 1}).json()
        issue_s = time.perf_counter() - t
        path, _, key = issued["link"].partition("#")
        share = "/s/" + path.split("/s/")[1]
        holder = TestClient(api.app)
        t = time.perf_counter()
        view = holder.post(share + "/open", data={"key": key, "passcode": issued["passcode"]}, follow_redirects=True)
        open_s = time.perf_counter() - t
        assert view.status_code == 200, view.text
        frames = []
        for i in range(args.frames):
            t = time.perf_counter()
            r = holder.get(f"{share}/frames/i{1 + i % (n - 1):05d}/0.png", params={"w": "brain"})
            frames.append(time.perf_counter() - t)
            assert r.status_code == 200
        t = time.perf_counter()
        zipped = holder.get(share + "/download.zip")
        zip_s = time.perf_counter() - t
    names = zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()
    dicomdir = pydicom.dcmread(io.BytesIO(zipfile.ZipFile(io.BytesIO(zipped.content)).read("DICOMDIR")))
    images = sum(1 for r in dicomdir.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE")
    assert images == n and len(names) == n + 1, (images, n, len(names))
    sealed = sum(p.stat().st_size for p in (settings.data_dir / "shares").rglob("*") if p.is_file())
    services.close()
    print(f"{n} instances, matrix {args.matrix}: issue {issue_s:.2f} s, open {open_s:.2f} s, frame median "
          f"{statistics.median(frames):.3f} s (max {max(frames):.3f}), zip {zip_s:.2f} s")
    print(f"RESULT issue_s={issue_s:.2f} open_s={open_s:.2f} frame_p50_s={statistics.median(frames):.3f} "
          f"zip_s={zip_s:.2f} instances={n} sealed_mb={sealed / 1e6:.1f} zip_mb={len(zipped.content) / 1e6:.1f}")


if __name__ == "__main__":
    main()
