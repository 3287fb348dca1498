"""aegis.rag.aegis_api on the fleet's API hosts (testinfra over nsenter): the unit's hardening, an unprivileged
process with the production environment, the environment file root's alone, and releases that hold a virtualenv
and the model but neither torch nor wheels. Release pruning and `current`/`previous` across an upgrade and a
rollback, and both releases' contents: test_client_loop.py."""

from __future__ import annotations

from tests.fleet.conftest import FLEET_TEST, VARS, assert_release_contents, hosts_of, read_as_service_user

pytestmark = FLEET_TEST
testinfra_hosts = [f"nsenter://{name}" for name in hosts_of("aegis_api")]
API_KEY = VARS["all"]["fleet_api_key"]


def show(host, *properties: str) -> dict[str, str]:
    lines = host.check_output("systemctl show aegis-api " + " ".join(f"--property={p}" for p in properties))
    return dict(line.split("=", 1) for line in lines.splitlines())


HARDENING = {"User": "aegis", "Group": "aegis", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
             "ReadWritePaths": "/var/lib/aegis", "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
             "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
             "RestrictNamespaces": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "", "KillMode": "mixed",
             "LimitNOFILE": "20000", "EnvironmentFiles": "/etc/aegis/aegis-api.env (ignore_errors=no)"}


def test_the_unit_is_hardened(host):
    assert show(host, *HARDENING) == HARDENING


def test_the_process_is_unprivileged_with_the_production_environment(host):
    pid = show(host, "MainPID")["MainPID"]
    status = dict(line.split(":", 1) for line in host.file(f"/proc/{pid}/status").content_string.splitlines())
    assert status["Uid"].split()[0] != "0"
    assert (status["CapEff"].strip(), status["NoNewPrivs"].strip()) == ("0000000000000000", "1")
    environ = set(read_as_service_user(host, f"/proc/{pid}/environ").splitlines())
    assert {"MALLOC_ARENA_MAX=2", "MALLOC_TRIM_THRESHOLD_=131072", "AEGIS_WORKERS=2"} <= environ


def test_the_environment_file_is_root_s_alone_and_holds_the_settings(host):
    env = host.file("/etc/aegis/aegis-api.env")
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    assert {'AEGIS_WORKERS="2"', 'AEGIS_BACKLOG="2048"', 'AEGIS_KEEP_ALIVE_S="2"', 'AEGIS_LIMIT_MAX_REQUESTS="1000"',
            'AEGIS_LIMIT_MAX_REQUESTS_JITTER="50"', 'MALLOC_ARENA_MAX="2"', f'AEGIS_API_KEYS="{API_KEY}"',
            'AEGIS_LOCAL_MODEL_DIR="/opt/aegis/current/model"'} <= set(env.content_string.splitlines())


def test_the_current_release_holds_a_virtualenv_and_the_model_but_neither_torch_nor_wheels(host):
    assert_release_contents(host, host.file("/opt/aegis/current").linked_to)
