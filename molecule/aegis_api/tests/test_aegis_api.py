"""Verify aegis.rag.aegis_api on the converged host (testinfra over nsenter).

The side effect planted an older release 0.1.0-m0, then deployed 0.1.0-m2 after 0.1.0-m1 (kept: 1, and `previous`).
The service enabled and running on the fleet's API hosts: tests/fleet/test_services.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

testinfra_hosts = ["nsenter://aegis-api"]

GROUP_VARS = yaml.safe_load((Path(__file__).parents[1] / "molecule.yml").read_text())["provisioner"]["inventory"][
    "group_vars"]["api"]
API_KEY = GROUP_VARS["aegis_api_keys"][0]
RELEASES = "/opt/aegis/releases"
HTTP = ("python3 -c 'import sys, urllib.request as u, urllib.error as e\n"
        "r = u.Request(sys.argv[1], data=sys.argv[2].encode() or None, headers=dict(h.split(\"=\", 1) for h in sys.argv[3:]))\n"
        "try: print(u.urlopen(r, timeout=30).status)\n"
        "except e.HTTPError as x: print(x.code)' ")


def http_status(host, path: str, body: str = "", *headers: str) -> int:
    args = " ".join(f"'{h}'" for h in headers)
    return int(host.check_output(HTTP + f"'http://127.0.0.1:8910{path}' '{body}' {args}"))


def show(host, *properties: str) -> dict[str, str]:
    args = " ".join(f"-p {p}" for p in properties)
    lines = host.check_output(f"systemctl show aegis-api {args}").splitlines()
    return dict(line.split("=", 1) for line in lines)


def main_pid(host) -> str:
    return show(host, "MainPID")["MainPID"]


def read_as_service_user(host, path: str) -> str:
    """/proc files another user may not read: the containers' root has no CAP_SYS_PTRACE."""
    return host.check_output(f"runuser -u aegis -- cat {path} | tr '\\0' '\\n'")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("User", "aegis"),
        ("Group", "aegis"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/var/lib/aegis"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("KillMode", "mixed"),
        ("LimitNOFILE", "20000"),
        ("EnvironmentFiles", "/etc/aegis/aegis-api.env (ignore_errors=no)"),
    ],
)
def test_unit_hardening(host, name, value):
    assert show(host, name)[name] == value


def test_process_runs_unprivileged(host):
    status = host.file(f"/proc/{main_pid(host)}/status").content_string
    fields = dict(line.split(":", 1) for line in status.splitlines())
    assert fields["Uid"].split()[0] != "0"
    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["NoNewPrivs"].strip() == "1"


def test_listens_on_the_api_port(host):
    listening = {str(s) for s in host.socket.get_listening_sockets() if s.startswith("tcp")}
    assert "tcp://0.0.0.0:8910" in listening


def test_environment_file_is_root_only_and_holds_the_settings(host):
    env = host.file("/etc/aegis/aegis-api.env")
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    lines = set(env.content_string.splitlines())
    assert {'AEGIS_WORKERS="1"', 'AEGIS_BACKLOG="2048"', 'AEGIS_KEEP_ALIVE_S="2"', 'AEGIS_LIMIT_MAX_REQUESTS="1000"',
            'AEGIS_LIMIT_MAX_REQUESTS_JITTER="50"', 'MALLOC_ARENA_MAX="2"', 'AEGIS_TOP_K="3"',
            f'AEGIS_API_KEYS="{API_KEY}"', 'AEGIS_LOCAL_MODEL_DIR="/opt/aegis/current/model"'} <= lines


def test_process_has_the_production_environment(host):
    environ = read_as_service_user(host, f"/proc/{main_pid(host)}/environ").splitlines()
    assert {"MALLOC_ARENA_MAX=2", "MALLOC_TRIM_THRESHOLD_=131072", "AEGIS_WORKERS=1"} <= set(environ)


def test_pruning_keeps_the_newest_release_and_previous_only(host):
    assert sorted(host.file(RELEASES).listdir()) == ["0.1.0-m1", "0.1.0-m2"]  # m0 went
    assert host.file("/opt/aegis/current").linked_to == f"{RELEASES}/0.1.0-m2"
    assert host.file("/opt/aegis/previous").linked_to == f"{RELEASES}/0.1.0-m1"


def test_the_running_process_is_the_current_release(host):
    maps = read_as_service_user(host, f"/proc/{main_pid(host)}/maps")
    assert f"{RELEASES}/0.1.0-m2/venv/" in maps
    assert f"{RELEASES}/0.1.0-m1/" not in maps


@pytest.mark.parametrize("release", ["0.1.0-m1", "0.1.0-m2"])
def test_release_holds_a_venv_and_the_model_but_no_torch_nor_wheels(host, release):
    folder = f"{RELEASES}/{release}"
    assert host.file(f"{folder}/venv/bin/aegis-rag").exists
    assert host.file(f"{folder}/model/all-MiniLM-L6-v2.onnx").exists
    assert host.file(f"{folder}/model/tokenizer.json").exists
    assert not host.file(f"{folder}/wheels").exists
    assert not host.file(f"{folder}/venv/lib/python3.11/site-packages/torch").exists
    assert len(host.file(f"{folder}/.aegis-release").content_string.strip()) == 64


def test_ready_and_the_key_is_required(host):
    assert http_status(host, "/ready") == 200
    question = '{"question": "test query"}'
    assert http_status(host, "/chat", question, "Content-Type=application/json") == 401
    assert http_status(host, "/chat", question, "Content-Type=application/json", f"X-API-Key={API_KEY}") == 200
