"""A long pipeline run keeps its job (the lease is renewed), and a hung one fails its attempt in time.

The model call is slowed down as a large study or a busy node would slow it; the dispatcher
runs in-process with two job threads that compete for the ledger, as two gateways would."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from radtriage.db import ledger
from radtriage.synth import synthesize
from tests.helpers import storescu, wait_jobs_final
from tests.integration.test_dispatcher import _main_series, _settings

pytestmark = [pytest.mark.slow, pytest.mark.dcmtk]


def _slow_model(monkeypatch, seconds: float, first_only: bool = False) -> list[float]:
    """Each model call waits ``seconds`` first (only the first call when ``first_only``); returns the call times."""
    from radtriage.inference.ops import OpChain

    real_infer, calls, lock = OpChain.infer, [], threading.Lock()

    def infer(model, ctx):
        with lock:
            calls.append(time.monotonic())
            first = len(calls) == 1
        if first or not first_only:
            time.sleep(seconds)
        real_infer(model, ctx)

    monkeypatch.setattr(OpChain, "infer", staticmethod(infer))
    return calls


def _run(make_settings, tmp_path: Path, **inference) -> tuple[list[dict], list[dict]]:
    from radtriage.service import Runtime, build_services

    head = _main_series(synthesize("ct-head", 1, 7, tmp_path / "in", {"matrix": 128})[0])
    services = build_services(_settings(make_settings, tmp_path, **inference))
    runtime = Runtime(services)
    runtime.start()
    try:
        assert storescu(runtime.scp.port, head, "SCANNER", services.settings.ae_title).returncode == 0
        jobs = wait_jobs_final(services.db, 1, timeout=120)
        return jobs, ledger.result_rows(services.db)
    finally:
        runtime.stop()
        services.close()


def test_a_run_longer_than_the_lease_is_not_taken_and_run_twice(make_settings, tmp_path, monkeypatch):
    calls = _slow_model(monkeypatch, 3.0)
    jobs, results = _run(make_settings, tmp_path, in_flight=2, lease_s=1.0)
    assert [j["state"] for j in jobs] == ["done"]
    assert jobs[0]["attempts"] == 1, f"the job was claimed {jobs[0]['attempts']} times"
    assert len(calls) == 1, f"the model ran {len(calls)} times for one job"
    assert len(results) == 1


def test_a_hung_pipeline_fails_its_attempt_and_the_retry_succeeds(make_settings, tmp_path, monkeypatch):
    calls = _slow_model(monkeypatch, 60.0, first_only=True)
    started = time.monotonic()
    jobs, results = _run(make_settings, tmp_path, call_timeout_s=8.0, retry_backoff_s=0.1)
    assert [j["state"] for j in jobs] == ["done"]
    assert jobs[0]["attempts"] == 2
    assert len(calls) == 2 and calls[1] - started < 45, "the retry waited for the hung call"
    assert len(results) == 1
