#!/usr/bin/env python3
"""Benchmark DICOM C-STORE ingest: radtriage against Orthanc, over loopback.

What it measures
----------------
How many CT instances per second each receiver stores when dcmtk's
``storescu`` sends them, and how much memory the radtriage server uses.

* Data: ``--n`` (default 300) CT instances of 512x512 16-bit, made from a real
  slice (``693_UNCR.dcm`` from pydicom-data), each with new Study / Series /
  SOP Instance UIDs and its own ImagePositionPatient / InstanceNumber. A fresh
  set (new UIDs) is written for every round, so each round stores new
  instances, never duplicates. Writing the files is not timed, and the
  script runs ``sync`` before each send so their write-back does not land on
  the receiver's fsyncs.
* Receivers, both started by this script with fresh state in a temporary
  folder: radtriage (``python -m radtriage.cli serve``, fsync on, its
  defaults otherwise) and Orthanc (Debian package, SQLite index, no
  compression, no plugins, its defaults otherwise). Start-up is not timed.
* Reference ceiling: a third receiver, "pynetdicom", is a bare pynetdicom
  storage SCP in its own process (``BARE_SCP_SOURCE`` below) that reads each
  data set and stores nothing. It shows the most any pynetdicom-based
  receiver, radtriage included, can reach in CPython on this machine, so
  radtriage's figures can be read as a share of that ceiling as well as
  against Orthanc. It is timed like the others but has nothing to verify.
* Cases: (a) one association carrying all instances; (b) four scanners
  sending at once: four ``storescu`` processes of n/4 instances each, each
  its own study and series, timed from the first start to the last exit.
  Receivers take turns within each round, and their order rotates from one
  round to the next.
* Checks: every ``storescu`` must exit 0 and log no E:/F: lines. For radtriage, every spooled file's
  data set (the bytes after its file meta group) must equal the data set
  sent, and ``radtriage studies --json`` must list the right instance count
  for every series. For Orthanc, ``/statistics`` must count every instance,
  every series must hold its instances, and a sample of stored files
  (``/instances/{id}/file``) must carry the data set sent.
* Memory: the peak resident set of the radtriage server (and any children)
  over the whole run: VmHWM at the end, and a 0.2 s poll of the RSS sum.

Why TCP_NODELAY=1
-----------------
Debian's dcmtk 3.6.7 (``storescu``, and Orthanc, which uses dcmtk for DICOM
networking) leaves Nagle's algorithm on unless the environment variable
``TCP_NODELAY`` is set. With Nagle on, each small C-STORE response waits
for the peer's delayed ACK (~40 ms), which caps any receiver at ~20
instances/s and would make the comparison meaningless. The variable is set
for ``storescu`` and for Orthanc; radtriage sets TCP_NODELAY on its own
sockets.

MB here means MiB (2**20 bytes), for throughput and for memory. The last
line printed is machine-readable::

    RESULT radtriage_ips=<n> orthanc_ips=<n> ratio=<n> ratio4=<n> peak_rss_mb=<n>

where the instances/s are medians of case (a) and ratio / ratio4 are
radtriage / Orthanc medians of cases (a) / (b).

Usage: ``.venv/bin/python scripts/bench_ingest.py [--rounds 3] [--n 300]``.
Needs dcmtk's ``storescu``, Orthanc, pydicom-data and psutil.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers import dcmtk  # noqa: E402 - the repository's test helpers

MiB = 1024 * 1024
SCANNERS = 4
RADTRIAGE_AE = "RADTRIAGE"
ORTHANC_AE = "ORTHANC"
BARE_AE = "BARE"
CALLING_AE = "BENCH"
STARTUP_TIMEOUT_S = 90.0
SEND_TIMEOUT_S = 600.0
ORTHANC_SAMPLE = 10  # stored files fetched back from Orthanc per set

# The reference ceiling: a bare pynetdicom storage SCP that reads every data
# set and stores nothing. Run as ``python -c BARE_SCP_SOURCE PORT``.
BARE_SCP_SOURCE = """
import socket, sys
import pynetdicom
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

def on_open(event):
    event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

def on_store(event):
    event.encoded_dataset(include_meta=False)  # read the data set, store nothing
    return 0x0000

ae = AE(ae_title="BARE")
ae.maximum_pdu_size = 4 * 1024 * 1024
for cx in AllStoragePresentationContexts:
    ae.add_supported_context(cx.abstract_syntax, [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
print("bare pynetdicom", pynetdicom.__version__, "SCP on port", sys.argv[1], flush=True)
ae.start_server(
    ("127.0.0.1", int(sys.argv[1])),
    block=True,
    evt_handlers=[(evt.EVT_CONN_OPEN, on_open), (evt.EVT_C_STORE, on_store)],
)
"""


# --- test data ----------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One instance as written to disk for sending."""

    study_uid: str
    series_uid: str
    sop_uid: str
    path: Path


@dataclass
class SendSet:
    """The folders one round sends to one receiver, and what is in them."""

    folders: list[Path]
    instances: list[Sent]

    @property
    def nbytes(self) -> int:
        return sum(s.path.stat().st_size for s in self.instances)

    def series_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.instances:
            counts[s.series_uid] = counts.get(s.series_uid, 0) + 1
        return counts


def load_template() -> pydicom.Dataset:
    path = get_testdata_file("693_UNCR.dcm")
    if path is None:
        raise SystemExit("pydicom-data's 693_UNCR.dcm is not installed (pip install pydicom-data)")
    ds = pydicom.dcmread(path)
    if (ds.Rows, ds.Columns, ds.BitsAllocated) != (512, 512, 16):
        raise SystemExit(f"unexpected template geometry {ds.Rows}x{ds.Columns}x{ds.BitsAllocated}")
    return ds


def write_series(template: pydicom.Dataset, folder: Path, count: int, scanner: int) -> list[Sent]:
    """Write ``count`` slices of one new study and series into ``folder``."""
    folder.mkdir(parents=True)
    ds = copy.deepcopy(template)  # mutated per slice, then written
    study_uid, series_uid = generate_uid(), generate_uid()
    x, y, z0 = (float(v) for v in template.ImagePositionPatient)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = generate_uid()
    ds.SeriesNumber = 100 + scanner
    ds.StationName = f"BENCHCT{scanner}"
    out: list[Sent] = []
    for i in range(count):
        sop_uid = generate_uid()
        ds.SOPInstanceUID = sop_uid
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.InstanceNumber = i + 1
        z = z0 - i * 1.0
        ds.ImagePositionPatient = [x, y, round(z, 3)]
        if "SliceLocation" in ds:
            ds.SliceLocation = round(z, 3)
        path = folder / f"{i + 1:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(Sent(study_uid, series_uid, sop_uid, path))
    return out


def make_set(template: pydicom.Dataset, root: Path, n: int, scanners: int) -> SendSet:
    """Fresh instances in ``scanners`` folders (1: one folder of n; 4: n/4 each)."""
    if root.exists():
        shutil.rmtree(root)
    sizes = [n // scanners + (1 if k < n % scanners else 0) for k in range(scanners)]
    folders, instances = [], []
    for k, size in enumerate(sizes):
        folder = root / f"scanner{k + 1}"
        instances += write_series(template, folder, size, k + 1)
        folders.append(folder)
    os.sync()  # do not let write-back of the input land inside a timed send
    return SendSet(folders, instances)


def dataset_offset(buf: bytes) -> int:
    """Offset of the data set in a Part 10 file: just past the 0002 meta group."""
    if buf[128:132] != b"DICM":
        raise ValueError("not a Part 10 file")
    pos = 132
    long_vrs = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
    while pos + 8 <= len(buf):
        group = struct.unpack_from("<H", buf, pos)[0]
        if group != 0x0002:
            return pos
        vr = buf[pos + 4 : pos + 6]
        if vr in long_vrs:
            pos += 12 + struct.unpack_from("<I", buf, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", buf, pos + 6)[0]
    return pos


def dataset_bytes(buf: bytes) -> bytes:
    return buf[dataset_offset(buf) :]


def same_instance(sent: Sent, received: bytes) -> tuple[bool, bool]:
    """(intact, byte_identical): data set bytes equal, or else UID + pixels equal."""
    expected = dataset_bytes(sent.path.read_bytes())
    if dataset_bytes(received) == expected:
        return True, True
    try:
        got = pydicom.dcmread(io.BytesIO(received), stop_before_pixels=False)
        want = pydicom.dcmread(sent.path, stop_before_pixels=False)
    except Exception:  # noqa: BLE001 - unreadable means not intact
        return False, False
    ok = got.SOPInstanceUID == want.SOPInstanceUID and got.PixelData == want.PixelData
    return ok, False


# --- processes ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, name: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} at start-up:\n{tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not open port {port} in {STARTUP_TIMEOUT_S:.0f} s:\n{tail(log)}")


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_process(proc: subprocess.Popen | None, name: str, timeout: float = 20.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"{name} did not stop in {timeout:.0f} s after SIGTERM: killing it", flush=True)
        proc.kill()
        proc.wait()


def dcmtk_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"  # Debian's dcmtk leaves Nagle on otherwise
    return env


class RssMonitor:
    """Polls the RSS of a process and its children; keeps the largest sum."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sample(self) -> None:
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak = max(self.peak, total)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def high_water_mark(self) -> int:
        """VmHWM of the process plus its live children (Linux); 0 if unknown."""
        total = 0
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return 0
        for p in procs:
            try:
                for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) * 1024
            except (OSError, ValueError):
                pass
        return total

    def stop(self) -> int:
        """Stop polling; return the peak in bytes (max of polled sum and VmHWM)."""
        self.sample()
        hwm = self.high_water_mark()
        self._stop.set()
        self._thread.join(timeout=2)
        return max(self.peak, hwm)


@dataclass
class Receiver:
    """A running C-STORE SCP under test."""

    name: str
    ae_title: str
    dicom_port: int
    http_port: int
    proc: subprocess.Popen
    log: Path
    sent_series: dict[str, int] = field(default_factory=dict)  # series UID -> instances
    sent_total: int = 0

    def stop(self) -> None:
        stop_process(self.proc, self.name)


def launch(name: str, ae: str, argv: list[str], env: dict[str, str], cwd: Path,
           dicom_port: int, http_port: int, log: Path) -> Receiver:
    """Start a receiver as its own process (output to ``log``) and wait for its port."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    rx = Receiver(name, ae, dicom_port, http_port, proc, log)
    try:
        wait_for_port(dicom_port, proc, name, log)
    except BaseException:
        rx.stop()
        raise
    return rx


def start_radtriage(work: Path, processes: int | None = None) -> tuple[Receiver, dict[str, str]]:
    data_dir = work / "radtriage-data"
    data_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADTRIAGE_")}
    dicom_port, http_port = free_port(), free_port()
    env.update(
        RADTRIAGE_CONFIG_FILE=str(work / "no-such-radtriage.yaml"),
        RADTRIAGE_DATA_DIR=str(data_dir),
        RADTRIAGE_DICOM_HOST="127.0.0.1",
        RADTRIAGE_DICOM_PORT=str(dicom_port),
        RADTRIAGE_HTTP_PORT=str(http_port),
        RADTRIAGE_MIN_FREE_BYTES="0",
        RADTRIAGE_INFERENCE__ENABLED="false",  # ingest only: the models have their own benchmark
        ORT_DISABLE_TELEMETRY="1",
        PYTHONUNBUFFERED="1",
    )
    if processes is not None:  # else the service's default: one listener process per core
        env["RADTRIAGE_DICOM_PROCESSES"] = str(processes)
    rx = launch("radtriage", RADTRIAGE_AE, [sys.executable, "-m", "radtriage.cli", "serve"], env, work,
                dicom_port, http_port, work / "radtriage.log")
    return rx, env


def start_orthanc(work: Path) -> Receiver:
    exe = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not Path(exe).exists():
        raise SystemExit("Orthanc is not installed (apt-get install orthanc)")
    root = work / "orthanc"
    (root / "storage").mkdir(parents=True)
    (root / "index").mkdir()
    dicom_port, http_port = free_port(), free_port()
    config = {
        "Name": "bench",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "index"),
        "StorageCompression": False,
        "DicomAet": ORTHANC_AE,
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
    }
    cfg = root / "orthanc.json"
    cfg.write_text(json.dumps(config, indent=2))
    return launch("orthanc", ORTHANC_AE, [exe, str(cfg)], dcmtk_env(), root,
                  dicom_port, http_port, work / "orthanc.log")


def start_bare_scp(work: Path) -> Receiver:
    """The reference ceiling: a bare pynetdicom SCP (no storage), own process."""
    dicom_port = free_port()
    return launch("pynetdicom", BARE_AE, [sys.executable, "-c", BARE_SCP_SOURCE, str(dicom_port)],
                  {**os.environ, "PYTHONUNBUFFERED": "1"}, work, dicom_port, 0, work / "pynetdicom.log")


# --- sending --------------------------------------------------------------------


def send(rx: Receiver, folders: list[Path], logdir: Path, tag: str) -> float:
    """Run one storescu per folder, all at once; return seconds to the last exit."""
    exe = dcmtk("storescu")  # not the storescu pynetdicom puts in a virtualenv's bin
    if exe is None:
        raise SystemExit("dcmtk's storescu is not installed (apt-get install dcmtk)")
    env = dcmtk_env()
    jobs = []
    for k, folder in enumerate(folders):
        cmd = [exe, "+sd", "+r", "-aet", CALLING_AE, "-aec", rx.ae_title,
               "127.0.0.1", str(rx.dicom_port), str(folder)]  # fmt: skip
        jobs.append((cmd, logdir / f"storescu-{tag}-{k + 1}.log"))
    procs: list[tuple[subprocess.Popen, Path]] = []
    t0 = time.perf_counter()
    try:
        for cmd, log in jobs:
            with open(log, "wb") as out:
                p = subprocess.Popen(
                    cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            procs.append((p, log))
        for p, _ in procs:
            p.wait(SEND_TIMEOUT_S)
        elapsed = time.perf_counter() - t0  # the last storescu has exited
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    failed = [(p.returncode, log) for p, log in procs if p.returncode != 0]
    if failed:
        rc, log = failed[0]
        raise RuntimeError(f"storescu to {rx.name} exited with {rc}:\n{tail(log)}")
    for _, log in procs:
        text = log.read_text(errors="replace")
        if any(line.startswith(("E:", "F:")) for line in text.splitlines()):
            raise RuntimeError(f"storescu to {rx.name} reported errors:\n{tail(log)}")
    return elapsed


# --- verification ---------------------------------------------------------------


def verify_radtriage(data_dir: Path, sset: SendSet) -> tuple[int, int]:
    """Every spooled file must hold the data set sent. Returns (intact, identical)."""
    spool = data_dir / "spool"
    intact = identical = 0
    problems: list[str] = []
    for s in sset.instances:
        path = spool / s.study_uid / s.series_uid / f"{s.sop_uid}.dcm"
        try:
            received = path.read_bytes()
        except OSError as exc:
            problems.append(f"{s.sop_uid}: {exc.strerror}")
            continue
        ok, same = same_instance(s, received)
        intact += ok
        identical += same
        if not ok:
            problems.append(f"{s.sop_uid}: data set differs from the one sent")
    if problems:
        raise RuntimeError(
            f"radtriage: {len(problems)} of {len(sset.instances)} instances missing or damaged, "
            f"e.g. {problems[:3]}"
        )
    return intact, identical


def verify_radtriage_index(rx: Receiver, env: dict[str, str], work: Path) -> int:
    """``radtriage studies --json`` must list every series with its instance count."""
    out = subprocess.run(
        [sys.executable, "-m", "radtriage.cli", "studies", "--json"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"radtriage studies --json exited {out.returncode}:\n{out.stderr[-3000:]}")
    listed = {se["series_uid"]: se["instances"] for st in json.loads(out.stdout) for se in st["series"]}
    wrong = {uid: (n, listed.get(uid)) for uid, n in rx.sent_series.items() if listed.get(uid) != n}
    if wrong:
        raise RuntimeError(f"radtriage index: series with wrong counts (sent, listed): {wrong}")
    return sum(listed.get(uid, 0) for uid in rx.sent_series)


def orthanc_get(rx: Receiver, path: str, body: bytes | None = None) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(f"http://127.0.0.1:{rx.http_port}{path}", data=body)
    with opener.open(req, timeout=60) as resp:
        return resp.read()


def orthanc_lookup(rx: Receiver, uid: str, kind: str) -> str:
    found = [r for r in json.loads(orthanc_get(rx, "/tools/lookup", uid.encode())) if r["Type"] == kind]
    if len(found) != 1:
        raise RuntimeError(f"Orthanc: {kind} {uid} found {len(found)} times")
    return found[0]["ID"]


def verify_orthanc(rx: Receiver, sset: SendSet) -> tuple[int, int]:
    """Counts via /statistics and per series; a sample of files fetched back."""
    stats = json.loads(orthanc_get(rx, "/statistics"))
    if stats["CountInstances"] != rx.sent_total:
        raise RuntimeError(f"Orthanc holds {stats['CountInstances']} instances, sent {rx.sent_total}")
    for series_uid, n in sset.series_counts().items():
        sid = orthanc_lookup(rx, series_uid, "Series")
        held = len(json.loads(orthanc_get(rx, f"/series/{sid}"))["Instances"])
        if held != n:
            raise RuntimeError(f"Orthanc series {series_uid}: {held} instances, sent {n}")
    step = max(1, len(sset.instances) // ORTHANC_SAMPLE)
    intact = identical = 0
    for s in sset.instances[::step][:ORTHANC_SAMPLE]:
        iid = orthanc_lookup(rx, s.sop_uid, "Instance")
        ok, same = same_instance(s, orthanc_get(rx, f"/instances/{iid}/file"))
        if not ok:
            raise RuntimeError(f"Orthanc instance {s.sop_uid}: data set differs from the one sent")
        intact += ok
        identical += same
    return intact, identical


# --- the benchmark --------------------------------------------------------------


@dataclass
class Measure:
    receiver: str
    case: str
    seconds: list[float] = field(default_factory=list)
    nbytes: list[int] = field(default_factory=list)
    count: list[int] = field(default_factory=list)

    def ips(self) -> list[float]:
        return [n / s for n, s in zip(self.count, self.seconds)]

    def mbps(self) -> list[float]:
        return [b / MiB / s for b, s in zip(self.nbytes, self.seconds)]

    def total_seconds(self) -> float:
        return sum(self.seconds)


def cpu_seconds(rx: Receiver) -> float:
    """User + system CPU time of a server process and its children so far."""
    try:
        procs = [psutil.Process(rx.proc.pid)]
        procs += procs[0].children(recursive=True)
    except psutil.Error:
        return float("nan")
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def radtriage_store_stats(rx: Receiver) -> tuple[int, float] | None:
    """(instances, mean seconds) of ``radtriage_store_seconds`` from /metrics."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{rx.http_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("radtriage_store_seconds_sum{") and 'source="dimse"' in line:
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith("radtriage_store_seconds_count{") and 'source="dimse"' in line:
            count = float(line.rsplit(" ", 1)[1])
    return (int(count), total / count) if count else None


def server_log_problems(rx: Receiver) -> list[str]:
    """Warning and error lines of a server's log.

    radtriage logs one JSON object per line (``"level": "warning"``); anything
    else it prints (a traceback) counts too, past its start-up banner. Orthanc
    uses glog's letters (``E1123 ...``; its W lines are routine). The bare
    pynetdicom SCP logs nothing, so any line past its banner counts.
    """
    try:
        lines = rx.log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    if rx.name == "orthanc":
        return [ln for ln in lines if ln[:1] in ("E", "F") and ln[1:5].isdigit()]
    if rx.name == "pynetdicom":
        return [ln for ln in lines if not ln.startswith("bare pynetdicom ")]
    found = []
    for ln in lines:
        try:
            entry = json.loads(ln)
        except ValueError:
            if not ln.startswith(("radtriage ", "  ")):  # the start-up banner
                found.append(ln)
            continue
        if isinstance(entry, dict) and entry.get("level") in ("warning", "error", "critical"):
            found.append(ln)
    return found


def bench_one(
    rx: Receiver,
    case: str,
    scanners: int,
    rnd: int,
    n: int,
    template: pydicom.Dataset,
    work: Path,
    results: dict[tuple[str, str], Measure],
) -> None:
    """One round of one case against one receiver: generate, send (timed), verify."""
    tag = f"r{rnd}{case}-{rx.name}"
    sset = make_set(template, work / "sets" / tag, n, scanners)
    secs = send(rx, sset.folders, work / "logs", tag)
    rx.sent_series.update(sset.series_counts())
    rx.sent_total += len(sset.instances)
    if rx.name == "radtriage":
        intact, same = verify_radtriage(work / "radtriage-data", sset)
    elif rx.name == "orthanc":
        intact, same = verify_orthanc(rx, sset)
    else:  # the bare SCP stores nothing: storescu's exit status is the only check
        intact = same = None
    m = results[(rx.name, case)]
    m.seconds.append(secs)
    m.nbytes.append(sset.nbytes)
    m.count.append(len(sset.instances))
    checked = (
        "nothing stored to check" if intact is None
        else f"checked {intact} ({same} byte-identical data sets)"
    )  # fmt: skip
    print(
        f"round {rnd} case ({case}) {rx.name:10} {len(sset.instances)} instances "
        f"in {secs:6.3f} s = {len(sset.instances) / secs:7.1f} inst/s, "
        f"{sset.nbytes / MiB / secs:6.1f} MB/s; {checked}",
        flush=True,
    )
    shutil.rmtree(work / "sets" / tag)


def print_diagnostics(
    rt: Receiver, orth: Receiver, bare: Receiver, results: dict[tuple[str, str], Measure]
) -> None:
    """Server CPU time, and radtriage's own per-instance store time from /metrics."""
    for rx in (rt, orth, bare):
        sending = sum(results[(rx.name, c)].total_seconds() for c in ("a", "b"))
        print(
            f"{rx.name} server CPU over the run: {cpu_seconds(rx):.1f} s "
            f"(wall time spent sending to it: {sending:.1f} s)",
            flush=True,
        )
    store = radtriage_store_stats(rt)
    if store:
        count, mean = store
        wall = sum(results[("radtriage", c)].total_seconds() for c in ("a", "b")) / count
        print(
            f"radtriage store_instance (parse, write, fsync, index): {count} instances, "
            f"mean {mean * 1000:.1f} ms; wall time per instance while sending {wall * 1000:.1f} ms",
            flush=True,
        )


def print_log_problems(rx: Receiver) -> None:
    found = server_log_problems(rx)
    print(
        f"{rx.name} log: {len(found)} warning/error lines"
        + "".join(f"\n    {ln[:300]}" for ln in found[:10]),
        flush=True,
    )


def print_summary(results: dict[tuple[str, str], Measure], peak_rss: int, elapsed: float) -> None:
    print("\nSummary (MB = 2**20 bytes; median of the rounds, then every round)")
    for (name, case), m in results.items():
        label = "(a) 1 association" if case == "a" else f"(b) {SCANNERS} concurrent"
        print(
            f"  {name:10} {label:18} {statistics.median(m.ips()):7.1f} inst/s "
            f"{statistics.median(m.mbps()):6.1f} MB/s   rounds: "
            + ", ".join(f"{v:.1f}" for v in m.ips())
            + " inst/s; "
            + ", ".join(f"{v:.1f}" for v in m.mbps())
            + " MB/s"
        )
    med = {key: statistics.median(m.ips()) for key, m in results.items()}
    rt_a, or_a = med[("radtriage", "a")], med[("orthanc", "a")]
    rt_b, or_b = med[("radtriage", "b")], med[("orthanc", "b")]
    bare_a, bare_b = med[("pynetdicom", "a")], med[("pynetdicom", "b")]
    print(f"  radtriage server peak RSS {peak_rss / MiB:.1f} MB")
    print(f"  total run time {elapsed:.1f} s")
    print(
        f"ceiling: a bare pynetdicom SCP (no storage) reaches {bare_a:.1f} inst/s (a) and "
        f"{bare_b:.1f} inst/s (b), i.e. {bare_a / or_a:.2f} and {bare_b / or_b:.2f} of Orthanc; "
        f"radtriage reaches {rt_a / bare_a:.2f} and {rt_b / bare_b:.2f} of that ceiling"
    )
    print(
        f"RESULT radtriage_ips={rt_a:.1f} orthanc_ips={or_a:.1f} ratio={rt_a / or_a:.2f} "
        f"ratio4={rt_b / or_b:.2f} peak_rss_mb={peak_rss / MiB:.1f}"
    )


def run(rounds: int, n: int) -> int:
    t_start = time.perf_counter()
    template = load_template()
    receivers = ("radtriage", "orthanc", "pynetdicom")
    results = {(r, c): Measure(r, c) for r in receivers for c in ("a", "b")}
    peak_rss = 0
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        work = Path(tmp)
        (work / "sets").mkdir()
        (work / "logs").mkdir()
        rt = orth = bare = monitor = None
        try:
            rt, rt_env = start_radtriage(work, PROCESSES)
            monitor = RssMonitor(rt.proc.pid)
            monitor.start()
            orth = start_orthanc(work)
            bare = start_bare_scp(work)
            print(
                f"radtriage pid {rt.proc.pid} DICOM :{rt.dicom_port}; "
                f"Orthanc pid {orth.proc.pid} DICOM :{orth.dicom_port} HTTP :{orth.http_port}; "
                f"bare pynetdicom SCP pid {bare.proc.pid} DICOM :{bare.dicom_port}; "
                f"{n} instances a round, {os.cpu_count()} CPUs, load average "
                + " ".join(f"{v:.2f}" for v in os.getloadavg()),
                flush=True,
            )
            for rnd in range(1, rounds + 1):
                k = (rnd - 1) % 3  # rotate the order: who goes first changes every round
                order = (rt, orth, bare)[k:] + (rt, orth, bare)[:k]
                for case, scanners in (("a", 1), ("b", SCANNERS)):
                    for rx in order:
                        bench_one(rx, case, scanners, rnd, n, template, work, results)
            indexed = verify_radtriage_index(rt, rt_env, work)
            print(
                f"radtriage studies --json: {len(rt.sent_series)} series, {indexed} instances, "
                "every count as sent",
                flush=True,
            )
            peak_rss = monitor.stop()
            monitor = None
            print_diagnostics(rt, orth, bare, results)
            print("load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()), flush=True)
        finally:
            if monitor is not None:
                peak_rss = monitor.stop()
            for rx in (rt, orth, bare):
                if rx is not None:
                    rx.stop()
                    print_log_problems(rx)
    print_summary(results, peak_rss, time.perf_counter() - t_start)
    return 0


PROCESSES: int | None = None  # --processes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds per receiver and case (default 3)")
    p.add_argument("--n", type=int, default=300, help="instances per round (default 300)")
    p.add_argument("--processes", type=int, default=None,
                   help="radtriage's DICOM listener processes (default: the service's, one per core)")
    args = p.parse_args(argv)
    global PROCESSES
    PROCESSES = args.processes
    if args.rounds < 1 or args.n < SCANNERS:
        p.error(f"--rounds must be >= 1 and --n >= {SCANNERS}")
    return run(args.rounds, args.n)


if __name__ == "__main__":
    sys.exit(main())
