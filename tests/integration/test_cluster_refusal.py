"""`radtriage serve` refuses a remote Ray cluster without Ray's TLS, saying what to set, before connecting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_serve_refuses_a_remote_cluster_without_tls(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RADTRIAGE_", "RAY_"))}
    env.update(RADTRIAGE_DATA_DIR=str(tmp_path / "data"), RADTRIAGE_DICOM_PORT="0", RADTRIAGE_HTTP_PORT="0",
               RADTRIAGE_INFERENCE__RAY_ADDRESS="ray://head.radiology.example:10001")
    run = subprocess.run([sys.executable, "-m", "radtriage.cli", "serve"], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=180)
    out = run.stdout + run.stderr
    assert run.returncode == 2, out
    assert "refusing to send series to the Ray cluster at ray://head.radiology.example:10001" in run.stderr, out
    assert "RAY_USE_TLS=1" in run.stderr and "inference.trusted_network: true" in run.stderr
    assert "Traceback" not in out
