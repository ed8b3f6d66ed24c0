"""Model replicas on two worker nodes of a Ray cluster (on one machine); one node dies mid-inference.

Every job still completes, exactly once: the dispatcher retries the jobs whose
replica died, Serve restarts the replica on the surviving node, and results
are keyed by (job, pipeline) so nothing is recorded twice.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from radtriage.db import ledger
from tests.helpers import end_ray_cluster, make_ct_series, storescu

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.dcmtk]


def test_a_worker_node_dies_and_every_job_completes_once(make_settings, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from radtriage.service import Runtime, build_services
    from radtriage.synth import synthesize

    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    shutil.copy(REPO / "pipelines" / "stroke_ich.yaml", pipelines)
    heads = [synthesize("ct-head", 1, 70 + i, tmp_path / f"in{i}", {"matrix": 256})[0] for i in range(6)]

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1, resources={"pipeline_node": 1}) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="WARNING")
    settings = make_settings(
        inference={"enabled": True, "use_ray": True, "pipelines_dir": str(pipelines),
                   "models_dir": str(REPO / "models"), "in_flight": 2, "poll_s": 0.1, "retry_backoff_s": 0.5,
                   "max_attempts": 4,
                   "default": {"num_cpus": 0.5, "replicas": 2, "threads": 1, "resources": {"pipeline_node": 0.75}}},
    )
    services = build_services(settings)
    runtime = Runtime(services)
    try:
        runtime.start()
        # each replica needs 0.75 of the 1 "pipeline_node" a worker node has: one replica per worker node
        assert ray.available_resources().get("pipeline_node", 0.0) == pytest.approx(0.5)

        killer = threading.Thread(target=lambda: (_wait_running(services.db), cluster.remove_node(workers[0])))
        killer.start()
        for folder in heads:
            assert storescu(runtime.scp.port, sorted(folder.glob("*.dcm")), "SCANNER", settings.ae_title).returncode == 0
        killer.join(120)
        end = time.monotonic() + 600
        while time.monotonic() < end:
            jobs = ledger.job_rows(services.db)
            if len(jobs) >= 18 and all(j["state"] in ("done", "no_ai", "failed") for j in jobs):
                break
            time.sleep(0.5)
    finally:
        runtime.stop()
        end_ray_cluster(cluster)
    done = [j for j in jobs if j["state"] == "done"]
    assert not [j for j in jobs if j["state"] == "failed"], [j["last_error"] for j in jobs]
    assert len(done) == 6, [(j["case_id"], j["state"]) for j in jobs]
    rows = ledger.result_rows(services.db)
    assert sorted(r["job_id"] for r in rows) == sorted(j["id"] for j in done)  # exactly one result each
    assert len(jobs) == 18  # localizer, soft-tissue and bone series of each head: no job lost or doubled


def _wait_running(db, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(j["state"] == "running" for j in ledger.job_rows(db)):
            return
        time.sleep(0.05)
