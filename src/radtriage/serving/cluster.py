"""Joining Ray: a local Ray this process starts, or a cluster; what a cluster must offer before series go to it.

* Transport security (`tls_problem`): series and results cross the network between the gateway and
  Ray's nodes. A cluster with nodes on other machines is refused unless Ray's own TLS is on
  (``RAY_USE_TLS=1`` with ``RAY_TLS_SERVER_CERT``, ``RAY_TLS_SERVER_KEY`` and ``RAY_TLS_CA_CERT`` naming
  files) or the operator sets ``inference.trusted_network: true``.
* Versions (`version_problems`): the gateway and every replica must run the same radtriage and the
  same model (id, version, file hash). The gateway asks each deployment at start-up, and every request
  carries what the gateway expects, so a replica restarted later on a node with another image refuses it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import radtriage
from radtriage.config.settings import Settings
from radtriage.inference.card import ModelCard, ModelCardError, load_card
from radtriage.pipelines import PipelineSpec
from radtriage.security import kept_secret

log = logging.getLogger(__name__)
# Ray puts sockets at <temp>/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store (~62 characters
# after <temp>) and a Unix socket path may hold 107 bytes.
RAY_TMP_MAX = 44
TLS_FILES = ("RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT")
LOCAL_NAMES = {"auto", "local", "localhost"}


class ClusterError(RuntimeError):
    """A Ray cluster radtriage must not or cannot use as configured; the message says what to change."""


def _is_loopback(host: str) -> bool:
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def address_is_remote(address: str | None) -> bool:
    """Whether a Ray address names another machine (``ray://head:10001``, ``head:6379``); None, ``auto``,
    ``local`` and loopback addresses are this machine."""
    if not address or address in LOCAL_NAMES:
        return False
    host = urlsplit(address if "://" in address else f"//{address}").hostname or ""
    return not _is_loopback(host)


def tls_problem(env: dict[str, str] | os._Environ) -> str | None:
    """What Ray's TLS lacks in this environment, or None when it is on with its three files."""
    if env.get("RAY_USE_TLS", "0").lower() not in ("1", "true"):
        return "Ray's TLS is off (RAY_USE_TLS is not 1)"
    missing = [name for name in TLS_FILES if not env.get(name) or not Path(env[name]).is_file()]
    return f"Ray's TLS lacks {', '.join(missing)} (each must name a readable file)" if missing else None


def check_transport(settings: Settings, address: str | None, remote_nodes: list[str] | None = None) -> None:
    """Refuse a remote cluster (its address, or nodes found on other machines) without Ray's TLS,
    unless ``inference.trusted_network`` is set."""
    remote = address_is_remote(address) or bool(remote_nodes)
    problem = tls_problem(os.environ)
    if not remote or problem is None or settings.inference.trusted_network:
        return
    where = f"the Ray cluster at {address}" if address_is_remote(address) else \
        f"Ray nodes on other machines ({', '.join(sorted(remote_nodes or []))})"
    raise ClusterError(
        f"refusing to send series to {where}: {problem}. Series and results would cross the network in clear. "
        "Turn on Ray's TLS on every node and here (RAY_USE_TLS=1, RAY_TLS_SERVER_CERT, RAY_TLS_SERVER_KEY, "
        "RAY_TLS_CA_CERT), or, on a network you trust, set inference.trusted_network: true "
        "(RADTRIAGE_INFERENCE__TRUSTED_NETWORK=true)")


def other_machines() -> list[str]:
    """Addresses of live Ray nodes that are not this machine (after `ray.init`)."""
    import ray

    here = ray.util.get_node_ip_address()
    return [n["NodeManagerAddress"] for n in ray.nodes()
            if n.get("Alive") and n["NodeManagerAddress"] != here and not _is_loopback(n["NodeManagerAddress"])]


def connect(settings: Settings) -> bool:
    """Join the cluster named by ``inference.ray_address`` / ``RAY_ADDRESS``, or start a local Ray under the
    data directory. True when this process started Ray (and must shut it down). Transport security is checked
    before connecting and again on the nodes found."""
    import ray

    address = settings.inference.ray_address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():  # joined by whoever embeds the service: its nodes are checked all the same
        check_transport(settings, address, other_machines())
        return False
    if address:
        check_transport(settings, address)
        ray.init(address=address, logging_level=logging.WARNING)
        try:
            check_transport(settings, address, other_machines())
        except ClusterError:
            ray.shutdown()
            raise
        return True
    tmp = (settings.data_dir / "ray").resolve()
    if len(str(tmp)) > RAY_TMP_MAX:  # Ray's Unix sockets live under it (107-byte limit)
        raise ValueError(f"the data directory's path is too long for Ray's sockets ({len(str(tmp))} > "
                         f"{RAY_TMP_MAX} characters in {tmp}): choose a shorter data_dir or set ray_address")
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_TMPDIR", str(tmp))
    # Ray caches the token per process: one token for every local Ray this process starts
    # (an operator's RAY_AUTH_TOKEN wins), kept in the data directory rather than ~/.ray
    os.environ.setdefault("RAY_AUTH_TOKEN", kept_secret(tmp / "auth_token"))
    ray.init(include_dashboard=False, _temp_dir=str(tmp), logging_level=logging.WARNING, configure_logging=False)
    return True


# -- versions -----------------------------------------------------------------------------------------


def versions(card: ModelCard) -> dict[str, str]:
    """What must match between the gateway and a replica of one pipeline."""
    return {"radtriage": radtriage.__version__, "model": f"{card.id} {card.version} (sha256 {card.sha256[:12]})"}


def expected_versions(specs: list[PipelineSpec], models_dir: Path) -> dict[str, dict[str, str]]:
    """The gateway's versions per pipeline, from its own models folder (pipelines whose card fails are left out:
    they are not deployed)."""
    out = {}
    for spec in specs:
        try:
            out[spec.id] = versions(load_card(models_dir / spec.model))
        except ModelCardError:
            continue
    return out


def version_problems(pipeline_id: str, expected: dict[str, str] | None, actual: dict[str, str]) -> list[str]:
    """Each difference between what the gateway expects of a pipeline and what its replica runs."""
    if expected is None:
        return []
    return [f"pipeline {pipeline_id}: the gateway runs {key} {expected[key]}, the node {actual.get(key)}"
            for key in sorted(expected) if expected[key] != actual.get(key)]


def check_versions(expected: dict[str, dict[str, str]], found: dict[str, Any]) -> None:
    """Raise `ClusterError` naming every pipeline whose replica runs other versions than the gateway."""
    problems = [p for pid, want in expected.items() if pid in found for p in version_problems(pid, want, found[pid])]
    if problems:
        raise ClusterError("; ".join(problems) + ". Run the same radtriage package and models/ on every Ray node "
                           "(the image, or the runtime_env's working_dir/py_modules) as on the gateway")
