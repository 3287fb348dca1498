"""Verify aegis.rag.qdrant as a single server beside Redis on the data host (testinfra over podman).

The unit's hardening and distributed mode are verified in molecule/qdrant; here: a standalone peer next to
another service, reachable from the other hosts of the fleet with its key."""

from __future__ import annotations

from pathlib import Path

import testinfra
import yaml

testinfra_hosts = ["podman://aegis-data"]

GROUP_VARS = yaml.safe_load((Path(__file__).parents[1] / "molecule.yml").read_text())["provisioner"]["inventory"][
    "group_vars"]["qdrant"]
API_KEY = GROUP_VARS["qdrant_api_key"]
HTTP_GET = ("python3 -c 'import sys, urllib.request as u, urllib.error as e\n"
            "r = u.Request(sys.argv[1], headers=dict([sys.argv[2].split(\"=\", 1)]) if len(sys.argv) > 2 else {})\n"
            "try: print(u.urlopen(r, timeout=5).status)\n"
            "except e.HTTPError as x: print(x.code)' ")


def http_status(client, url: str, api_key: str | None = None) -> int:
    header = f" 'api-key={api_key}'" if api_key else ""
    return int(client.check_output(HTTP_GET + f"'{url}'" + header))


def address_of(host) -> str:
    return host.check_output("ip -4 -o addr show scope global | awk '{ sub(\"/.*\", \"\", $4); print $4; exit }'")


def test_service_is_enabled_and_running(host):
    service = host.service("qdrant")
    assert service.is_enabled
    assert service.is_running


def test_standalone_peer_listens_on_http_and_grpc_only(host):
    listening = {str(s) for s in host.socket.get_listening_sockets() if s.startswith("tcp")}
    assert {"tcp://0.0.0.0:6333", "tcp://0.0.0.0:6334"} <= listening
    assert not any(s.endswith(":6335") for s in listening)  # no p2p port without distributed mode


def test_command_line_has_no_cluster_arguments(host):
    pid = host.check_output("systemctl show -p MainPID --value qdrant")
    args = host.file(f"/proc/{pid}/cmdline").content.decode().rstrip("\0").split("\0")
    assert args[args.index("--config-path"):] == ["--config-path", "/etc/qdrant/config.yaml", "--disable-telemetry"]


def test_config_holding_the_keys_is_readable_by_root_and_qdrant_only(host):
    config = host.file("/etc/qdrant/config.yaml")
    assert (config.user, config.group, config.mode) == ("root", "qdrant", 0o640)
    assert yaml.safe_load(config.content_string)["cluster"]["enabled"] is False


def test_reachable_from_an_ollama_host_with_the_key_only(host):
    """Another host of the fleet (as the API hosts will) reaches Qdrant by address, and only with the key."""
    client = testinfra.get_host("podman://aegis-ollama")
    url = f"http://{address_of(host)}:6333/collections"
    assert http_status(client, url) == 401
    assert http_status(client, url, API_KEY) == 200
