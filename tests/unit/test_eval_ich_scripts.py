"""scripts/eval_ich_mimics.py --model (repeatable) and scripts/eval_ich_auc.py: one report and RESULT line per model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "ich-densenet2d"


def _run(script: str, *args: str) -> list[str]:
    r = subprocess.run([sys.executable, str(REPO / "scripts" / script), *args], capture_output=True, text=True,
                       timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    return [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]


def test_eval_ich_mimics_reads_each_model_given_on_the_same_heads():
    lines = _run("eval_ich_mimics.py", "--n", "1", "--mode", "phantom", "--matrix", "64",
                 "--model", str(SHIPPED), "--model", str(SHIPPED))
    assert len(lines) == 2 and lines[0] == lines[1]
    assert "mode=phantom model=ich-densenet2d@" in lines[0]


def test_eval_ich_auc_reports_auc_with_its_interval_per_model(tmp_path):
    lines = _run("eval_ich_auc.py", "--model", str(SHIPPED), "--n", "6", "--matrix", "64", "--seed", "9")
    assert len(lines) == 1 and lines[0].startswith("RESULT model=ich-densenet2d@") and " auc_low=" in lines[0]
    assert lines[0].endswith("n=6")
