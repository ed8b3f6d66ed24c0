"""Helpers for tests: peers, ports, synthetic series, dcmtk and service processes."""


from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_ADMIN_URL = os.environ.get("RADTRIAGE_TEST_PG", "postgresql+psycopg://127.0.0.1:5432/test")
REPO = Path(__file__).resolve().parents[1]


def need_peer(ok: bool, what: str) -> None:
    """A test that needs a missing peer fails in CI and is skipped elsewhere."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} not available")


# dcmtk's tools; pynetdicom installs scripts of the same names (storescu, echoscu...) into a virtualenv's bin
DCMTK_TOOLS = {"storescu", "storescp", "echoscu", "findscu", "movescu", "getscu", "dsrdump", "dcmdump"}


def dcmtk(name: str) -> str | None:
    """The path of dcmtk's program ``name`` on PATH (or /usr/bin), never a same-named script of another
    package: the first whose ``--version`` names dcmtk."""
    seen = set()
    for folder in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/local/bin"]:
        path = Path(folder or ".") / name
        if path in seen or not (path.is_file() and os.access(path, os.X_OK)):
            continue
        seen.add(path)
        try:
            out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "dcmtk" in (out.stdout + out.stderr).lower():
            return str(path)
    return None


def need_binary(name: str) -> str:
    path = dcmtk(name) if name in DCMTK_TOOLS else shutil.which(name)
    need_peer(path is not None, f"the program {name!r}" + (" (dcmtk's)" if name in DCMTK_TOOLS else ""))
    return path  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port}")



def make_ct_series(out: Path, n: int, source: Path | None = None, **attrs) -> list[Path]:
    """Write ``n`` synthetic CT instances (new UIDs, positions) built from a real slice."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(source or get_testdata_file("CT_small.dcm"))
    out.mkdir(parents=True, exist_ok=True)
    ds.StudyInstanceUID = attrs.pop("StudyInstanceUID", generate_uid())
    ds.SeriesInstanceUID = attrs.pop("SeriesInstanceUID", generate_uid())
    for k, v in attrs.items():
        setattr(ds, k, v)
    paths = []
    for i in range(n):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(i)]
        p = out / f"{i:04d}.dcm"
        ds.save_as(p)
        paths.append(p)
    return paths


def storescu(port: int, paths: list[Path] | Path, aet: str = "TESTSCU", aec: str = "RADTRIAGE", *extra: str, timeout: float = 120):
    """Run dcmtk's storescu (TCP_NODELAY set, as the benchmarks do)."""
    exe = need_binary("storescu")
    args = [exe, "-aet", aet, "-aec", aec, *extra, "127.0.0.1", str(port)]
    if isinstance(paths, Path) and paths.is_dir():
        args[1:1] = ["+sd", "+r"]
        args.append(str(paths))
    else:
        args.extend(str(p) for p in ([paths] if isinstance(paths, Path) else paths))
    env = dict(os.environ, TCP_NODELAY="1")
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)


def serve_process(data_dir: Path, dicom_port: int, http_port: int, **env_extra: str) -> subprocess.Popen:
    """Start ``radtriage serve`` as its own process (for crash tests)."""
    env = dict(
        os.environ,
        RADTRIAGE_CONFIG_FILE=str(data_dir / "absent.yaml"),
        RADTRIAGE_DATA_DIR=str(data_dir),
        RADTRIAGE_DICOM_HOST="127.0.0.1",
        RADTRIAGE_DICOM_PORT=str(dicom_port),
        RADTRIAGE_HTTP_PORT=str(http_port),
        RADTRIAGE_MIN_FREE_BYTES="0",
        **{"RADTRIAGE_INFERENCE__ENABLED": "false", **env_extra},
    )
    log = open(data_dir.parent / f"serve-{dicom_port}.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "radtriage.cli", "serve"], env=env, stdout=log, stderr=log, cwd=data_dir.parent
    )


def wait_jobs_final(db, count: int, timeout: float = 300) -> list[dict]:
    """The job ledger's rows once at least ``count`` jobs exist and all have ended (done, failed, no_ai)."""
    from radtriage.db import ledger

    end = time.monotonic() + timeout
    jobs: list[dict] = []
    while time.monotonic() < end:
        jobs = ledger.job_rows(db)
        if len(jobs) >= count and all(j["state"] in ("done", "failed", "no_ai") for j in jobs):
            return jobs
        time.sleep(0.2)
    raise AssertionError(f"jobs not finished in {timeout} s: {[(j['case_id'], j['state'], j['attempts']) for j in jobs]}")


def start_orthanc(work: Path, aet: str = "ORTHANC") -> tuple[subprocess.Popen, int, int]:
    """A fresh Orthanc (Debian package) in ``work``: (process, DICOM port, HTTP port); stop it with
    `stop_process`. It accepts every storage SOP class from any calling AE, as a PACS in a test should."""
    import json

    exe = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    need_peer(Path(exe).exists(), "Orthanc")
    (work / "storage").mkdir(parents=True, exist_ok=True)
    dicom_port, http_port = free_port(), free_port()
    cfg = work / "orthanc.json"
    cfg.write_text(json.dumps({"Name": "test", "StorageDirectory": str(work / "storage"),
                               "IndexDirectory": str(work / "storage"), "DicomAet": aet, "DicomPort": dicom_port,
                               "HttpPort": http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False}))
    log = open(work / "orthanc.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen([exe, str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "TCP_NODELAY": "1"})
    wait_port(dicom_port, proc=proc)
    wait_port(http_port, proc=proc)
    return proc, dicom_port, http_port


def start_storescp(work: Path, sop_classes: list[str], aet: str = "STORESCP") -> tuple[subprocess.Popen, int]:
    """dcmtk's storescp accepting only the named SOP classes (dcmtk names, e.g. CTImageStorage), writing
    what it receives under ``work/in``: a PACS that refuses what is not in its list (many refuse SEG)."""
    exe = need_binary("storescp")
    (work / "in").mkdir(parents=True, exist_ok=True)
    contexts = "\n".join(f"PresentationContext{i + 1} = {c}\\Uncompressed"
                         for i, c in enumerate(["VerificationSOPClass", *sop_classes]))
    cfg = work / "storescp.cfg"
    cfg.write_text("[[TransferSyntaxes]]\n[Uncompressed]\nTransferSyntax1 = LocalEndianExplicit\n"
                   "TransferSyntax2 = LittleEndianImplicit\n"
                   f"[[PresentationContexts]]\n[Listed]\n{contexts}\n"
                   "[[Profiles]]\n[Listed]\nPresentationContexts = Listed\n")
    port = free_port()
    log = open(work / "storescp.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen([exe, "-aet", aet, "-xf", str(cfg), "Listed", "-od", str(work / "in"), str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    wait_port(port, proc=proc)
    return proc, port


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


CHROMIUM = "/usr/bin/chromium"  # Debian's, driven by Playwright


@contextlib.contextmanager
def browser_site(settings, users: dict[str, str], password: str, seed=None) -> Iterator[dict]:
    """The API for a browser test, served on loopback (Chromium needed): ``users`` (name: role) with
    ``password``, then ``seed(services)`` (a dict of what the test needs); yields ``{"url", "db", **seeded}``."""
    from radtriage.api import create_app
    from radtriage.db import accounts
    from radtriage.service import build_services

    need_peer(Path(CHROMIUM).exists(), "Chromium at /usr/bin/chromium (Debian package chromium)")
    services = build_services(settings)
    try:
        for name, role in users.items():
            accounts.add_user(services.db, name, role, password)
        seeded = seed(services) if seed is not None else {}
        with serving(create_app(services)) as url:
            yield {"url": url, "db": services.db, **(seeded or {})}
    finally:
        services.close()


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """The FastAPI ``app`` served by uvicorn on an ephemeral loopback port in a thread; yields its base URL."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def three_destinations(dicom_port: int, mllp_port: int, fhir_url: str, token_env: str) -> dict:
    """`exports:` settings naming a PACS (an Orthanc, AE ORTHANC), a RIS (an MLLP receiver) and an EMR (a FHIR
    receiver whose bearer token is in ``token_env``), all on loopback."""
    return {"dicom": [{"name": "pacs", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": dicom_port}],
            "hl7": [{"name": "ris", "host": "127.0.0.1", "port": mllp_port}],
            "fhir": [{"name": "emr", "base_url": fhir_url, "token_env": token_env}]}


def wait_settled(rows, n: int, timeout: float = 120, what: str = "exports") -> list:
    """``rows()`` once it holds at least ``n`` rows whose last field is delivered or failed (outbox rows)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = rows()
        if len(got) >= n and all(r[-1] in ("delivered", "failed") for r in got):
            return got
        time.sleep(0.2)
    raise AssertionError(f"{what} not delivered in time: {rows()}")


def end_ray_cluster(cluster) -> None:
    """Shut a test's `ray.cluster_utils.Cluster` down with Serve: this process keeps Serve's controller
    client otherwise, and the next test's cluster finds a stale one (its deployments then never answer)."""
    import ray
    from ray import serve

    try:
        if ray.is_initialized():
            serve.shutdown()
    finally:
        ray.shutdown()
        cluster.shutdown()
