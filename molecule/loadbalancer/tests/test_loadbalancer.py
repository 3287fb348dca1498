"""Verify aegis.rag.loadbalancer on the converged host (testinfra over nsenter). The service enabled
and running on the fleet's load balancer: tests/fleet/test_services.py."""

import json

import pytest
import yaml
from pathlib import Path

testinfra_hosts = ["nsenter://aegis-loadbalancer"]

SCENARIO = yaml.safe_load((Path(__file__).parents[1] / "molecule.yml").read_text())
GROUP_VARS = SCENARIO["provisioner"]["inventory"]["group_vars"]["loadbalancer"]
PORT = GROUP_VARS["loadbalancer_port"]
STATS_PORT = 8404
SOCKET = "/run/haproxy/admin.sock"


def runtime_api(host, command):
    """One command through the admin socket, as the role's tool sends it."""
    script = (
        "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);"
        " s.sendall(sys.argv[2].encode()+b'\\n'); print(b''.join(iter(lambda: s.recv(65536), b'')).decode())"
    )
    return host.check_output(f"python3 -c \"{script}\" {SOCKET} '{command}'")


def test_frontend_listens_everywhere_and_stats_on_loopback_only(host):
    listening = {str(s) for s in host.socket.get_listening_sockets() if s.startswith("tcp")}
    assert f"tcp://0.0.0.0:{PORT}" in listening
    assert {s for s in listening if s.endswith(f":{STATS_PORT}")} == {f"tcp://127.0.0.1:{STATS_PORT}"}


def test_configuration_is_readable_by_root_and_haproxy_only(host):
    config = host.file("/etc/haproxy/haproxy.cfg")
    assert (config.user, config.group, config.mode) == ("root", "haproxy", 0o640)


def test_configuration_is_valid(host):
    assert host.run("haproxy -c -f /etc/haproxy/haproxy.cfg").rc == 0


def test_admin_socket_is_for_root_and_haproxy_only(host):
    sock = host.file(SOCKET)
    assert sock.is_socket
    assert (sock.user, sock.group, sock.mode) == ("root", "haproxy", 0o660)


def test_backend_holds_the_api_group_at_its_mapped_addresses(host):
    lines = runtime_api(host, "show servers state aegis_api").splitlines()
    servers = {f[3]: (f[4], f[18]) for f in (line.split() for line in lines[2:]) if len(f) > 18}
    assert servers == {"api-1": ("127.0.0.1", "8001"), "api-2": ("127.0.0.1", "8002")}


def test_both_servers_are_up_and_ready(host):
    for server in ("api-1", "api-2"):
        state = json.loads(host.check_output(f"aegis-haproxy-server show aegis_api {server}"))["after"]
        assert (state["admin"], state["status"]) == ("ready", "UP")


def test_frontend_balances_both_servers(host):
    answers = json.loads(host.check_output(f"molecule-requests http://127.0.0.1:{PORT}/ready 10"))
    assert answers == {"answers": {"api-1": 5, "api-2": 5}, "failures": []}


def test_stats_page_and_prometheus_metrics_answer_on_loopback(host):
    page = host.check_output(f"python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{STATS_PORT}/').read().decode())\"")
    metrics = host.check_output(f"python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{STATS_PORT}/metrics').read().decode())\"")
    assert "aegis_api" in page
    assert 'haproxy_server_status{proxy="aegis_api",server="api-1"' in metrics


def test_server_states_survive_reloads(host):
    """The drop-in saved the servers' state before the side effect's reloads; HAProxy reads it at start."""
    state_file = host.file("/var/lib/haproxy/server-state")
    assert state_file.exists
    assert state_file.content_string.startswith("1\n")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("BindReadOnlyPaths", ""),
    ],
)
def test_unit_is_hardened(host, name, value):
    assert host.check_output(f"systemctl show haproxy --property {name} --value") == value
