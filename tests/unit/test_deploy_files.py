"""deploy/compose.yaml and deploy/kuberay-raycluster.yaml name only what exists.

Neither file can be run here (no Docker daemon, no Kubernetes): each is parsed, and every command,
option, path, port, environment variable and settings key it names is checked against the project
(the radtriage CLI, `Settings`, the Dockerfile), against Ray (``ray start --help``, Ray's own code for
its environment variables), and the GPU worker against the image variant with the ``gpu`` extra.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path, PurePosixPath

import pytest
import yaml
from pydantic import BaseModel

from radtriage.cli import build_parser
from radtriage.config.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CONFIG = DEPLOY / "radtriage-cluster.yaml"
GPU_RESOURCE = "radtriage_gpu"
POSTGRES_IMAGE_VARS = {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD"}  # the postgres image's own


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def kuberay() -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kuberay-raycluster.yaml").read_text()) if d]


def k8s_containers() -> list[dict]:
    docs = kuberay()
    cluster = next(d for d in docs if d["kind"] == "RayCluster")["spec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    out = [c for g in groups for c in g["template"]["spec"]["containers"]]
    return out + [c for d in docs if d["kind"] == "Deployment" for c in d["spec"]["template"]["spec"]["containers"]]


@cache
def ray_start_options() -> set[str]:
    ray_exe = Path(sys.executable).parent / "ray"
    out = subprocess.run([str(ray_exe), "start", "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"^\s+(--[a-z][a-z-]*)", out, re.MULTILINE))


@cache
def ray_source_mentions(name: str) -> bool:
    import ray

    root = Path(ray.__file__).parent
    return any(name in p.read_text(errors="ignore") for p in root.rglob("*.py"))


def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def dockerfile_env() -> set[str]:
    block = re.search(r"^ENV (.*?)(?=^\S)", dockerfile(), re.MULTILINE | re.DOTALL).group(1)
    return set(re.findall(r"([A-Z_]+)=", block))


def settings_key_exists(env_name: str) -> bool:
    """Whether RADTRIAGE_A__B names Settings field a.b (the environment's nesting)."""
    if env_name == "RADTRIAGE_CONFIG_FILE":  # read by the settings' own source list
        return True
    model: type[BaseModel] | None = Settings
    for part in env_name.removeprefix("RADTRIAGE_").lower().split("__"):
        if model is None or part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        model = next((a for a in (annotation, *getattr(annotation, "__args__", ()))
                      if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return True


def check_env(names: set[str], image: str) -> list[str]:
    bad = []
    for name in sorted(names):
        if name.startswith("RADTRIAGE_"):
            ok = settings_key_exists(name)
        elif name.startswith("RAY_"):
            ok = ray_source_mentions(name)
        elif name.startswith("POSTGRES_"):
            ok = image.startswith("postgres:") and name in POSTGRES_IMAGE_VARS
        else:
            ok = name in dockerfile_env()
        if not ok:
            bad.append(name)
    return bad


def check_command(argv: list[str]) -> list[str]:
    """Each radtriage subcommand and ``ray start`` option in a command line (``sh -c`` lines split on &&)."""
    if argv[:2] == ["sh", "-c"]:
        return [p for part in argv[2].split("&&") for p in check_command(shlex.split(part.replace("exec ", "")))]
    if argv[0] == "radtriage":
        subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
        return [] if argv[1] in subcommands else [f"radtriage {argv[1]}"]
    if argv[:2] == ["ray", "start"]:
        return [a for a in (x.split("=")[0] for x in argv[2:]) if a not in ray_start_options()]
    return [f"unknown program {argv[0]}"]


def test_both_files_parse_and_the_cluster_settings_load():
    assert set(compose()["services"]) == {"postgres", "ray-head", "ray-gpu-worker", "gateway"}
    assert {d["kind"] for d in kuberay()} == {"RayCluster", "Deployment", "Service"}
    settings = load_settings(config_file=CONFIG)  # every key known (Settings forbids others)
    assert settings.inference.transport == "object_store" and not settings.inference.trusted_network
    copied = set(re.findall(r"^COPY (\S+) \./\1$", dockerfile(), re.MULTILINE))
    for path in (settings.inference.pipelines_dir, settings.inference.models_dir, settings.dose_file,
                 settings.recognition_file):
        assert path.parts[0] in copied, f"{path} is not in the image"
        assert (REPO / path).exists(), path


def test_compose_names_only_what_exists():
    services = compose()["services"]
    for name, svc in services.items():
        assert not check_env(set(svc.get("environment", {})), svc["image"]), name
        if "command" in svc:
            assert not check_command(svc["command"]), (name, check_command(svc["command"]))
        if "build" in svc:
            assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == REPO / "Dockerfile"
        mounts = {m.split(":")[1]: m.split(":")[0] for m in svc.get("volumes", [])}
        for source in (s for s in mounts.values() if s.startswith("./")):
            assert (DEPLOY / source).exists() or source == "./tls", source  # tls: the site's own certificates
        for var, value in svc.get("environment", {}).items():
            if var.startswith("RAY_TLS_") or var == "RADTRIAGE_CONFIG_FILE":
                assert any(PurePosixPath(value).is_relative_to(m) for m in mounts), (name, var, value)
    gateway = services["gateway"]
    settings = load_settings(config_file=CONFIG)
    assert sorted(int(p.split(":")[1].split()[0]) for p in gateway["ports"]) == sorted(
        [settings.dicom_port, settings.http_port])
    assert {settings.dicom_port, settings.http_port} <= {int(p) for p in re.findall(r"^EXPOSE (.*)$", dockerfile(),
                                                                                    re.MULTILINE)[0].split()}


def test_the_ray_nodes_meet_at_one_address_and_the_gpu_resource():
    services = compose()["services"]
    head_port = next(a.split("=")[1] for a in services["ray-head"]["command"] if a.startswith("--port="))
    worker_address = next(a.split("=")[1] for a in services["ray-gpu-worker"]["command"] if a.startswith("--address="))
    assert worker_address == f"ray-head:{head_port}"
    assert f"--address=ray-head:{head_port}" in services["gateway"]["command"][2]
    resources = next(a for a in services["ray-gpu-worker"]["command"] if a.startswith("--resources="))
    assert GPU_RESOURCE in yaml.safe_load(resources.split("=", 1)[1])
    inf = load_settings(config_file=CONFIG).inference
    assert inf.ray_address == "auto"  # the gateway joins as a node (ray start --num-cpus=0 in its command)
    for res in [inf.default, *inf.deployments.values()]:
        assert set(res.resources) == {GPU_RESOURCE} and res.num_gpus > 0


def test_the_gpu_worker_runs_the_gpu_variant_of_the_image():
    worker = compose()["services"]["ray-gpu-worker"]
    assert worker["build"]["args"] == {"VARIANT": "gpu"}
    assert re.search(r"^ARG VARIANT=cpu$", dockerfile(), re.MULTILINE)
    assert 'if [ "$VARIANT" = "gpu" ]' in dockerfile() and "pip uninstall -y onnxruntime" in dockerfile()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    gpu = project["optional-dependencies"]["gpu"]
    assert [d.split("==")[0] for d in gpu] == ["onnxruntime-gpu"]
    cpu_pin = next(d for d in project["dependencies"] if d.startswith("onnxruntime=="))
    assert gpu[0].split("==")[1] == cpu_pin.split("==")[1]  # one ONNX Runtime version, CPU or GPU build
    others = [s for n, s in compose()["services"].items() if n != "ray-gpu-worker" and "build" in s]
    assert all("args" not in s["build"] and not s["image"].endswith("-gpu") for s in others)
    cluster = next(d for d in kuberay() if d["kind"] == "RayCluster")["spec"]
    (group,) = cluster["workerGroupSpecs"]
    (container,) = group["template"]["spec"]["containers"]
    assert container["image"] == worker["image"] and container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert GPU_RESOURCE in group["rayStartParams"]["resources"]
    assert cluster["rayVersion"] == next(d for d in project["dependencies"] if d.startswith("ray[")).split("==")[1]


def test_kuberay_names_only_what_exists():
    for c in k8s_containers():
        names = {e["name"] for e in c.get("env", [])}
        assert not check_env(names, c["image"]), (c["name"], check_env(names, c["image"]))
        if "command" in c:
            assert not check_command(c["command"]), (c["name"], check_command(c["command"]))
        mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
        for e in c.get("env", []):
            if e["name"].startswith("RAY_TLS_") or e["name"] == "RADTRIAGE_CONFIG_FILE":
                assert any(PurePosixPath(e["value"]).is_relative_to(m) for m in mounts), (c["name"], e["name"])
    cluster = next(d for d in kuberay() if d["kind"] == "RayCluster")["spec"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        assert not [k for k in group["rayStartParams"] if f"--{k}" not in ray_start_options()]
    settings = load_settings(config_file=CONFIG)
    ports = {p["containerPort"] for c in k8s_containers() if c["name"] == "gateway" for p in c["ports"]}
    assert ports == {settings.dicom_port, settings.http_port}


@pytest.mark.parametrize("name", ["RADTRIAGE_INFERENCE__TRANSPORT", "RADTRIAGE_INFERENCE__TRUSTED_NETWORK",
                                  "RADTRIAGE_AUTH__SECRET_KEY", "RADTRIAGE_DATABASE_URL"])
def test_the_settings_key_check_knows_real_keys(name):
    assert settings_key_exists(name)


def test_the_checks_catch_what_does_not_exist():
    assert not settings_key_exists("RADTRIAGE_INFERENCE__TRANSPORTS")
    assert check_env({"RAY_NO_SUCH_VARIABLE_HERE"}, "radtriage:0.1.0") == ["RAY_NO_SUCH_VARIABLE_HERE"]
    assert check_command(["radtriage", "gateway"]) == ["radtriage gateway"]
    assert check_command(["ray", "start", "--gpus=1"]) == ["--gpus"]
