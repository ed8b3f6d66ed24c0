"""`make test` sets up its own peers (dcmtk, Orthanc, Chromium, PostgreSQL) and says what it skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO


def test_make_test_sets_up_the_peers_before_running_the_suite() -> None:
    plan = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    lines = plan.splitlines()
    assert "sh scripts/peers.sh" in lines, plan
    pytest_line = next(i for i, line in enumerate(lines) if "-m pytest" in line)
    assert lines.index("sh scripts/peers.sh") < pytest_line, plan


def test_a_missing_peer_without_root_stops_with_the_command_to_run() -> None:
    """As an unprivileged user, a missing program is not installed: make stops and names the command."""
    cmd = ["make", "-s", "peers", "PEER_CHROMIUM=/nonexistent/chromium", "PEER_ORTHANC=/nonexistent/Orthanc"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "nobody", "--", *cmd]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "sudo apt-get update && sudo apt-get install -y orthanc chromium" in done.stderr, done.stderr


def test_the_end_of_a_run_counts_the_skipped_tests_and_their_reasons(tmp_path: Path) -> None:
    (tmp_path / "test_some.py").write_text(
        "import pytest\n"
        "def test_runs(): pass\n"
        "@pytest.mark.parametrize('n', [1, 2])\n"
        "def test_needs_a_peer(n): pytest.skip('PostgreSQL on 127.0.0.1:5432 not available')\n"
        "def test_other(): pytest.skip('the program \\'storescu\\' not available')\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-c", os.devnull,
         "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "3 tests skipped" in out, out
    assert "2  PostgreSQL on 127.0.0.1:5432 not available" in out, out
    assert "1  the program 'storescu' not available" in out, out
