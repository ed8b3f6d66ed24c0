"""`serving.cluster`: a remote Ray cluster needs Ray's TLS (or a declared trusted network); versions must match."""

from __future__ import annotations

from pathlib import Path

import pytest

import radtriage
from radtriage.inference.card import load_card
from radtriage.pipelines import load_pipeline
from radtriage.serving.cluster import (
    ClusterError,
    address_is_remote,
    check_transport,
    check_versions,
    connect,
    expected_versions,
    tls_problem,
    version_problems,
    versions,
)

REPO = Path(__file__).resolve().parents[2]
TLS_VARS = ("RAY_USE_TLS", "RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT")


@pytest.mark.parametrize(("address", "remote"), [
    (None, False), ("auto", False), ("local", False), ("127.0.0.1:6379", False), ("ray://localhost:10001", False),
    ("[::1]:6379", False), ("head.radiology.local:6379", True), ("ray://10.1.2.3:10001", True),
    ("192.0.2.7:6379", True)])
def test_which_addresses_are_remote(address, remote):
    assert address_is_remote(address) is remote


def _tls_files(tmp_path: Path) -> dict[str, str]:
    env = {"RAY_USE_TLS": "1"}
    for name in TLS_VARS[1:]:
        (tmp_path / name).write_text("PEM")
        env[name] = str(tmp_path / name)
    return env


def test_tls_is_on_only_with_its_three_files(tmp_path):
    env = _tls_files(tmp_path)
    assert tls_problem(env) is None
    assert "RAY_USE_TLS" in tls_problem({**env, "RAY_USE_TLS": "0"})
    assert "RAY_TLS_CA_CERT" in tls_problem({**env, "RAY_TLS_CA_CERT": str(tmp_path / "absent.crt")})


def test_a_remote_cluster_without_tls_is_refused_at_start(make_settings, monkeypatch):
    for name in TLS_VARS:
        monkeypatch.delenv(name, raising=False)
    settings = make_settings(inference={"enabled": True, "ray_address": "ray://head.radiology.local:10001"})
    with pytest.raises(ClusterError, match="refusing to send series to the Ray cluster at ray://head.radiology.local"
                                           ".*RAY_USE_TLS=1.*inference.trusted_network: true"):
        connect(settings)  # refused before any connection is tried
    check_transport(settings, "127.0.0.1:6379")  # this machine: no network crossed
    with pytest.raises(ClusterError, match=r"Ray nodes on other machines \(10.0.0.9\)"):
        check_transport(settings, None, ["10.0.0.9"])


def test_tls_or_a_declared_trusted_network_lets_it_through(make_settings, monkeypatch, tmp_path):
    remote = "ray://head.radiology.local:10001"
    for name in TLS_VARS:
        monkeypatch.delenv(name, raising=False)
    check_transport(make_settings(inference={"ray_address": remote, "trusted_network": True}), remote)
    for name, value in _tls_files(tmp_path).items():
        monkeypatch.setenv(name, value)
    check_transport(make_settings(inference={"ray_address": remote}), remote)


def test_versions_name_radtriage_and_the_model_file():
    spec = load_pipeline(REPO / "pipelines" / "stroke_ich.yaml")
    card = load_card(REPO / "models" / spec.model)
    mine = versions(card)
    assert mine["radtriage"] == radtriage.__version__
    assert card.version in mine["model"] and card.sha256[:12] in mine["model"]
    assert expected_versions([spec], REPO / "models") == {spec.id: mine}
    assert version_problems(spec.id, mine, dict(mine)) == []
    assert version_problems(spec.id, None, {}) == []  # a request without expectations (an older gateway)


def test_a_node_with_another_radtriage_or_model_is_named():
    gateway = {"radtriage": "0.2.0", "model": "ich 0.3.0 (sha256 aaaaaaaaaaaa)"}
    node = {"radtriage": "0.1.0", "model": "ich 0.2.0 (sha256 bbbbbbbbbbbb)"}
    problems = version_problems("stroke_ich", gateway, node)
    assert problems == ["pipeline stroke_ich: the gateway runs model ich 0.3.0 (sha256 aaaaaaaaaaaa), "
                        "the node ich 0.2.0 (sha256 bbbbbbbbbbbb)",
                        "pipeline stroke_ich: the gateway runs radtriage 0.2.0, the node 0.1.0"]
    with pytest.raises(ClusterError, match="the gateway runs radtriage 0.2.0, the node 0.1.0.*same radtriage package"):
        check_versions({"stroke_ich": gateway}, {"stroke_ich": node})
    check_versions({"stroke_ich": gateway}, {"stroke_ich": dict(gateway)})
