"""Verify aegis.rag.qdrant on the two converged peers (testinfra over nsenter).

The side effect re-converged with another log level, so both peers were restarted by the handler once. The service
enabled and running on the fleet's data host: tests/fleet/test_services.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import testinfra
import yaml

PEERS = ["aegis-qdrant-1", "aegis-qdrant-2"]
testinfra_hosts = [f"nsenter://{name}" for name in PEERS]

GROUP_VARS = yaml.safe_load((Path(__file__).parents[1] / "molecule.yml").read_text())["provisioner"]["inventory"][
    "group_vars"]["qdrant"]
API_KEY = GROUP_VARS["qdrant_api_key"]
READ_ONLY_KEY = GROUP_VARS["qdrant_read_only_api_key"]
HTTP_GET = ("python3 -c 'import sys, urllib.request as u, urllib.error as e\n"
            "r = u.Request(sys.argv[1], headers=dict([sys.argv[2].split(\"=\", 1)]) if len(sys.argv) > 2 else {})\n"
            "try: print(u.urlopen(r, timeout=5).status)\n"
            "except e.HTTPError as x: print(x.code)' ")


def name_of(host) -> str:
    return host.backend.get_hostname()


def address_of(host) -> str:
    """The host's address on its default route: the scenario's qdrant_peer_address."""
    return host.check_output("ip -4 -o addr show scope global | awk '{ sub(\"/.*\", \"\", $4); print $4; exit }'")


def peer(name: str):
    return testinfra.get_host(f"nsenter://{name}")


def http_status(host, url: str, api_key: str | None = None) -> int:
    header = f" 'api-key={api_key}'" if api_key else ""
    return int(host.check_output(HTTP_GET + f"'{url}'" + header))


def show(host, *properties: str) -> dict[str, str]:
    args = " ".join(f"-p {p}" for p in properties)
    lines = host.check_output(f"systemctl show qdrant {args}").splitlines()
    return dict(line.split("=", 1) for line in lines)


def command_line(host) -> list[str]:
    pid = show(host, "MainPID")["MainPID"]
    return host.file(f"/proc/{pid}/cmdline").content.decode().rstrip("\0").split("\0")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("User", "qdrant"),
        ("Group", "qdrant"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/var/lib/qdrant/storage /var/lib/qdrant/snapshots"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("LimitNOFILE", "20000"),
        ("WorkingDirectory", "/var/lib/qdrant/storage"),
    ],
)
def test_unit_hardening(host, name, value):
    assert show(host, name)[name] == value


def test_unit_allows_only_ip_and_unix_sockets(host):
    families = show(host, "RestrictAddressFamilies")["RestrictAddressFamilies"]
    assert sorted(families.split()) == ["AF_INET", "AF_INET6", "AF_UNIX"]


def test_process_runs_unprivileged(host):
    status = host.file(f"/proc/{show(host, 'MainPID')['MainPID']}/status").content_string
    fields = dict(line.split(":", 1) for line in status.splitlines())
    assert fields["Uid"].split()[0] != "0"
    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["NoNewPrivs"].strip() == "1"


def test_listens_on_http_grpc_and_p2p_ports(host):
    listening = {str(s) for s in host.socket.get_listening_sockets() if s.startswith("tcp")}
    assert {"tcp://0.0.0.0:6333", "tcp://0.0.0.0:6334", "tcp://0.0.0.0:6335"} <= listening


def test_config_is_readable_by_root_and_qdrant_only(host):
    config, folder = host.file("/etc/qdrant/config.yaml"), host.file("/etc/qdrant")
    assert (config.user, config.group, config.mode) == ("root", "qdrant", 0o640)
    assert (folder.user, folder.group, folder.mode) == ("root", "qdrant", 0o750)


def test_config_content(host):
    config = yaml.safe_load(host.file("/etc/qdrant/config.yaml").content_string)
    assert config["service"] == {
        "host": "0.0.0.0", "http_port": 6333, "grpc_port": 6334, "max_request_size_mb": 32, "enable_tls": False,
        "api_key": API_KEY, "read_only_api_key": READ_ONLY_KEY}
    assert config["storage"]["storage_path"] == "/var/lib/qdrant/storage"
    assert config["storage"]["snapshots_path"] == "/var/lib/qdrant/snapshots"
    assert config["storage"]["optimizers"] == GROUP_VARS["qdrant_optimizers"]
    assert config["cluster"] == {"enabled": True, "p2p": {"port": 6335}}
    assert config["telemetry_disabled"] is True
    assert config["log_level"] == "DEBUG"  # the side effect's change


@pytest.mark.parametrize("path", ["/var/lib/qdrant/storage", "/var/lib/qdrant/snapshots"])
def test_data_paths_belong_to_qdrant(host, path):
    folder = host.file(path)
    assert (folder.user, folder.group, folder.mode) == ("qdrant", "qdrant", 0o750)


def test_peer_command_line(host):
    args = command_line(host)
    args = args[args.index("--config-path"):]
    expected = ["--config-path", "/etc/qdrant/config.yaml", "--disable-telemetry"]
    if name_of(host) != PEERS[0]:
        expected += ["--bootstrap", f"http://{address_of(peer(PEERS[0]))}:6335"]
    assert args == [*expected, "--uri", f"http://{address_of(host)}:6335"]


def test_readyz_answers_without_a_key(host):
    assert http_status(host, "http://127.0.0.1:6333/readyz") == 200


def test_peers_reach_each_other_and_need_the_key(host):
    other = address_of(peer(next(p for p in PEERS if p != name_of(host))))
    assert http_status(host, f"http://{other}:6333/readyz") == 200
    assert http_status(host, f"http://{other}:6333/collections") == 401
    assert http_status(host, f"http://{other}:6333/collections", API_KEY) == 200


def starts_of(host) -> list[int]:
    """Monotonic times (µs; one kernel clock for all the containers) at which the stand-in began serving."""
    out = host.check_output("journalctl -u qdrant -o json --output-fields=MESSAGE --no-pager")
    return [int(entry["__MONOTONIC_TIMESTAMP"]) for entry in map(json.loads, out.splitlines())
            if entry.get("MESSAGE", "").startswith("Qdrant HTTP listening on")]


def test_peers_restarted_one_at_a_time_in_order():
    first, second = (peer(name) for name in PEERS)
    first_starts, second_starts = starts_of(first), starts_of(second)
    # Started once by the first converge (no extra restart), restarted once by the side effect.
    assert (len(first_starts), len(second_starts)) == (2, 2)
    second_went_down = int(show(second, "ActiveExitTimestampMonotonic")["ActiveExitTimestampMonotonic"])
    # The second peer went down only after the first one served again.
    assert first_starts[-1] < second_went_down < second_starts[-1]
