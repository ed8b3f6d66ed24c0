"""One log format: uvicorn's lines, Ray's driver-side lines and the lines Ray forwards from its worker
processes come out as radtriage's JSON lines, in the order the service sets them up (logging first,
then `import ray`, then `ray.init`)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.helpers import REPO

SERVICE = r'''
import logging, sys, threading, time
from radtriage.logs import setup_logging
setup_logging("INFO")                     # radtriage serve: first thing

import uvicorn                            # the API, as cmd_serve runs it (log_config=None)

async def app(scope, receive, send):
    pass

server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False))
thread = threading.Thread(target=server.run)
thread.start()
while not server.started and thread.is_alive():
    time.sleep(0.05)
server.should_exit = True
thread.join()

import ray                                # RayRunner: import, adopt, init
from ray import serve
from radtriage.logs import adopt_ray_logging
adopt_ray_logging()
ray.init(include_dashboard=False, _temp_dir=sys.argv[1], num_cpus=1, logging_level=logging.WARNING,
         configure_logging=False)
logging.getLogger("ray.serve").warning("a line from Ray Serve's driver-side logger")

seen = threading.Event()
class Seen(logging.Handler):
    def emit(self, record):
        if "hello from a worker" in record.getMessage():
            seen.set()
logging.getLogger("ray.worker").addHandler(Seen())

@ray.remote(num_cpus=0)
def task():
    print("hello from a worker", flush=True)
    return 1

assert ray.get(task.remote()) == 1
seen.wait(20)                             # the line travels to the driver asynchronously
ray.shutdown()
'''


@pytest.mark.ray
@pytest.mark.slow
def test_uvicorn_and_ray_lines_are_json_lines() -> None:
    tmp = tempfile.mkdtemp(prefix="rtlog-", dir="/tmp")  # short: Ray's socket paths live under it
    env = {**os.environ, "RAY_AUTH_TOKEN": secrets.token_hex(16), "PYTHONPATH": str(REPO / "src")}
    env.pop("RAY_ADDRESS", None)
    try:
        done = subprocess.run([sys.executable, "-c", SERVICE, tmp], cwd=REPO, capture_output=True, text=True,
                              timeout=180, env=env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    not_json = []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            not_json.append(line)
    assert not not_json, "lines that are not JSON:\n" + "\n".join(not_json[:20])
    loggers = {r["logger"] for r in records}
    assert {"uvicorn.error", "ray.serve", "ray.worker"} <= loggers, loggers
    started = [r for r in records if r["logger"] == "uvicorn.error" and "Uvicorn running on" in r["msg"]]
    assert started and started[0]["level"] == "info", records
    worker = [r for r in records if r["logger"] == "ray.worker" and r["msg"] == "hello from a worker"]
    assert worker, records
    assert worker[0]["stream"] == "stdout" and worker[0]["pid"].isdigit() and worker[0]["actor"] == "task"
