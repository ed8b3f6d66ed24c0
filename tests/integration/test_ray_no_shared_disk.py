"""Ray worker nodes that share no disk with the gateway (``inference.transport: object_store``).

Two Ray worker nodes run in mount namespaces of their own (``unshare --mount``) with an empty tmpfs
laid over the gateway's data directory, so nothing of the spool or the results folder is visible
to them. They join the test's Ray head on loopback; the pipeline's deployment is pinned to them by
a custom resource. Two head CT studies go in by C-STORE: each gets its result and key image in the
gateway's data directory, the replica runs in another mount namespace and cannot open a spool path
(a request that carries one fails; so does one from a gateway of another version), and when the node
running the replica is killed mid-inference every job still completes, exactly once, on the other node
(Serve sends the request again to the replica it starts there, or the dispatcher retries the job).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from radtriage.db import ledger
from tests.helpers import end_ray_cluster, need_peer, storescu, wait_jobs_final

REPO = Path(__file__).resolve().parents[2]
RESOURCE = "radtriage_worker"
POSITIVE = {"positive": True, "subtypes": ["intraparenchymal"]}

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.dcmtk]


def _can_unshare() -> bool:
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    return shutil.which("unshare") is not None and probe.returncode == 0


def _mount_ns(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/mnt")


def start_hidden_worker(head: str, hidden: Path, temp: Path, env: dict[str, str]) -> subprocess.Popen:
    """``ray start`` joined to ``head`` in a new mount namespace where ``hidden`` is an empty tmpfs
    (its Ray temporary folder ``temp``: nodes on one machine must not share their Unix sockets)."""
    ray_exe = str(Path(sys.executable).parent / "ray")
    temp.mkdir(parents=True)
    script = 'mount -t tmpfs -o size=1m,mode=0755 radtriage-hidden "$0" && exec "$@"'
    return subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(hidden),
         ray_exe, "start", "--block", f"--address={head}", "--num-cpus=1",
         f'--resources={{"{RESOURCE}": 1}}', "--object-store-memory=100000000", "--disable-usage-stats",
         f"--temp-dir={temp}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def kill_namespace(ns: str) -> int:
    """SIGKILL every process in the mount namespace ``ns`` (only a worker node this test started lives there)."""
    killed = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "mnt") == ns:
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed += 1
            except (OSError, ProcessLookupError):
                continue
    return killed


def replica_pid() -> int:
    """The process id of the pipeline's (one) live Serve replica."""
    import ray

    names = [a for a in ray.util.list_named_actors(all_namespaces=True)
             if a["namespace"] == "serve" and "pipeline-stroke_ich" in a["name"]]
    for a in names:
        try:
            actor = ray.get_actor(a["name"], namespace="serve")
            return ray.get(actor.__ray_call__.remote(lambda _self: os.getpid()), timeout=30)
        except Exception:  # noqa: BLE001 - a replica being replaced: try the next name
            continue
    raise AssertionError(f"no live replica among {names}")


def wait_for(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout} s")


@pytest.fixture
def short_dir():
    path = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_nodes_without_the_gateways_disk_get_series_and_return_key_images(short_dir):
    need_peer(os.geteuid() == 0 and _can_unshare(), "unshare --mount (root)")
    # A fresh interpreter: Ray and Serve keep per-process state (Serve's controller client among it) that the
    # local Ray sessions of earlier tests leave behind; in the whole suite this scenario then hung in its first call.
    run = subprocess.run([sys.executable, "-m", "tests.integration.test_ray_no_shared_disk", str(short_dir)],
                         cwd=REPO, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "RAY_AUTH_MODE": "disabled"})  # a throw-away cluster on loopback
    assert run.returncode == 0, (run.stdout[-3000:] + "\n" + run.stderr[-6000:])
    assert "scenario passed" in run.stdout


def scenario(short_dir: Path) -> None:
    """The whole scenario (in its own process: see the test)."""
    import ray
    from ray.cluster_utils import Cluster

    from radtriage.config import load_settings
    from radtriage.service import Runtime, build_services
    from radtriage.synth import synthesize

    pipelines = short_dir / "pipelines"
    pipelines.mkdir()
    shutil.copy(REPO / "pipelines" / "stroke_ich.yaml", pipelines)
    heads = [synthesize("ct-head", 1, 80 + i, short_dir / f"in{i}",
                        {"matrix": 256, **(POSITIVE if i == 0 else {"positive": False})})[0] for i in range(2)]
    data = short_dir / "data"
    data.mkdir()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False,
        "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 10}})  # 10 s: a loaded machine's raylet is not taken for dead
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    workers = [start_hidden_worker(cluster.address, data, short_dir / f"node{i}", env) for i in range(2)]
    services = runtime = None
    try:
        ray.init(address=cluster.address, logging_level="WARNING")
        wait_for(lambda: ray.cluster_resources().get(RESOURCE, 0) >= 2, 120, "two worker nodes")
        settings = load_settings(
            config_file=short_dir / "absent.yaml", data_dir=data, dicom_host="127.0.0.1", dicom_port=0,
            quiet_period_s=0.3, stable_age_s=3.0, assembly_poll_s=0.05, min_free_bytes=0, alerting_file=None,
            inference={"enabled": True, "use_ray": True, "transport": "object_store", "pipelines_dir": str(pipelines),
                       "models_dir": str(REPO / "models"), "in_flight": 1, "poll_s": 0.1, "retry_backoff_s": 0.5,
                       "max_attempts": 6, "call_timeout_s": 120,
                       "default": {"num_cpus": 0.5, "threads": 1, "resources": {RESOURCE: 1}}})
        services = build_services(settings)
        runtime = Runtime(services)
        runtime.start()
        ns = {w.pid: _mount_ns(w.pid) for w in workers}
        first = replica_pid()
        holder = next(w for w in workers if ns[w.pid] == _mount_ns(first))  # the replica runs on a hidden node
        assert _mount_ns(first) != _mount_ns(os.getpid())
        assert os.listdir(f"/proc/{first}/root{data}") == []  # its view of the data directory: empty

        storescu(runtime.scp.port, sorted(heads[0].glob("*.dcm")), "SCANNER", settings.ae_title)
        wait_for(lambda: [j for j in ledger.job_rows(services.db) if j["state"] == "done"], 120, "first result")
        spool_file = next(settings.spool_dir.rglob("*.dcm"))
        refused = runtime_handle_call(["stroke_ich"], [str(spool_file)])
        assert refused["stroke_ich"]["ok"] is False and "could not be read" in refused["stroke_ich"]["error"]
        other = {"stroke_ich": {"radtriage": "0.0.0-other", "model": "x"}}  # a gateway of another version
        refused = runtime_handle_call(["stroke_ich"], [str(spool_file)], other)
        assert refused["stroke_ich"]["error"].startswith("version mismatch: pipeline stroke_ich: the gateway runs")

        assert storescu(runtime.scp.port, sorted(heads[1].glob("*.dcm")), "SCANNER", settings.ae_title).returncode == 0
        wait_for(lambda: [j for j in ledger.job_rows(services.db) if j["state"] == "running"], 120, "a running job")
        assert kill_namespace(ns[holder.pid]) > 0  # the node running the replica dies mid-inference
        jobs = wait_jobs_final(services.db, 6, timeout=240)
        second = replica_pid()
        survivor = next(w for w in workers if w is not holder)
        assert _mount_ns(second) == ns[survivor.pid]
    finally:
        if runtime is not None:
            runtime.stop()
        try:
            end_ray_cluster(cluster)
        finally:
            for w in workers:
                if w.poll() is None:
                    kill_namespace(_mount_ns(w.pid))
                w.wait(30)

    assert not [j for j in jobs if j["state"] == "failed"], [j["last_error"] for j in jobs]
    done = [j for j in jobs if j["state"] == "done"]
    assert len(done) == 2 and len(jobs) == 6  # localizer, brain and bone series of each head
    rows = ledger.result_rows(services.db)
    assert sorted(r["job_id"] for r in rows) == sorted(j["id"] for j in done)  # exactly one result each
    positive = [r for r in rows if r["result"]["positive"]]
    keys = [f["key_image"] for r in positive for f in r["result"]["findings"] if f.get("key_image")]
    assert keys, [r["result"]["findings"] for r in rows]
    for key in keys:  # written by the gateway into its own data directory
        path = Path(key)
        assert path.is_relative_to(data / "results") and path.read_bytes().startswith(b"\x89PNG")


def runtime_handle_call(pipeline_ids: list[str], paths: list[str], expect: dict | None = None) -> dict:
    """A request the shared_path way (paths in the gateway's spool) straight to the application."""
    from ray import serve

    from radtriage.serving.app import APP_NAME

    return serve.get_app_handle(APP_NAME).remote(pipeline_ids, paths, None, expect).result(timeout_s=120)


if __name__ == "__main__":
    scenario(Path(sys.argv[1]))
    print("scenario passed")
