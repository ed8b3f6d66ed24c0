"""`radtriage import` next to a running server removes only leftovers of dead writers."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import make_ct_series

HOLD = """
import sys, time
from pathlib import Path
from radtriage.ingest.spool import Spool
staged = Spool(Path(sys.argv[1])).stage(b"half of an instance still arriving")
print(staged.path, flush=True)
if sys.argv[2] == "live":
    time.sleep(60)
"""


def test_import_keeps_a_running_writers_partial_file(tmp_path):
    data = tmp_path / "data"
    spool = data / "spool"
    dead = subprocess.run([sys.executable, "-c", HOLD, str(spool), "dead"], capture_output=True, text=True,
                          check=True).stdout.strip()
    live = subprocess.Popen([sys.executable, "-c", HOLD, str(spool), "live"], stdout=subprocess.PIPE, text=True)
    try:
        live_path = live.stdout.readline().strip()
        assert os.path.exists(live_path) and os.path.exists(dead)
        make_ct_series(tmp_path / "src", 1)
        env = {"RADTRIAGE_DATA_DIR": str(data), "RADTRIAGE_CONFIG_FILE": str(tmp_path / "none.yaml"),
               "PATH": "/usr/bin:/bin"}
        run = subprocess.run([sys.executable, "-m", "radtriage.cli", "import", str(tmp_path / "src")],
                             capture_output=True, text=True, env=env, timeout=120)
        assert run.returncode == 0, run.stderr
        assert os.path.exists(live_path), "a live writer's staged file was deleted"
        assert not os.path.exists(dead), "a dead writer's leftover was kept"
    finally:
        live.kill()
        live.wait()
