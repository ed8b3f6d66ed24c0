"""The monitor's view for people (`radtriage.monitor.view`): rate history blocks, score bins, input shares."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from radtriage.db.monitor import Seen
from radtriage.monitor import stats
from radtriage.monitor.baseline import reference
from radtriage.monitor.defaults import monitor_for
from radtriage.monitor.signals import Window, positive_rate
from radtriage.monitor.view import decision_marks, input_shares, rate_history, score_counts
from radtriage.pipelines import load_pipelines

REPO = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)


def seen(i: int, positive: bool, score: float = 0.1, state: str = "live", kernel: str = "STANDARD") -> Seen:
    return Seen(i, state, positive, score, f"1.2.{i}", T0 + dt.timedelta(minutes=i), ("GE", "R", kernel, "5", "120", "0.5"))


def ich():
    [spec] = [s for s in load_pipelines(REPO / "pipelines") if s.id == "stroke_ich"]
    return monitor_for(spec)


def test_rate_history_blocks_count_from_the_newest_and_judge_as_the_rule_does():
    spec = ich()
    results = [seen(i, i % 5 == 0) for i in range(70)] + [seen(100 + i, True, state="shadow") for i in range(5)]
    results += [seen(200 + i, True) for i in range(30)]  # a surge: 30 positive
    blocks = rate_history(spec, results, 30)
    assert [b.signal.n for b in blocks] == [10, 30, 30, 30]  # shadow results left out; the oldest block short
    assert blocks[-1].signal == positive_rate(spec, Window(results[-30:]))
    assert blocks[-1].signal.out == "above" and blocks[1].signal.out is None
    assert (blocks[-1].low, blocks[-1].high) == pytest.approx(stats.wilson(30, 30))
    assert (blocks[0].first_id, blocks[0].last_id, blocks[-1].end) == (0, 9, T0 + dt.timedelta(minutes=229))
    assert rate_history(spec, [], 30) == []
    marks = decision_marks(blocks, [{"decided_at": T0 + dt.timedelta(minutes=150), "action": "demote",
                                     "decided_by": "monitor"}])
    assert marks == [(3, "demote by monitor")]


def test_score_counts_and_input_shares():
    ref = reference(ich(), "ich", None)
    w = Window([seen(i, False, 0.01 * i, kernel="FC21" if i >= 3 else "STANDARD") for i in range(4)],
               before=[seen(-1, False)])
    assert score_counts(w, ref) == [int(c) for c in stats.histogram([0.0, 0.01, 0.02, 0.03], ref.edges)] \
        == [4, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert score_counts(Window([]), ref) == [0] * 10
    assert input_shares(w)["ConvolutionKernel"] == {"FC21": (0.25, 0.0), "STANDARD": (0.75, 1.0)}
