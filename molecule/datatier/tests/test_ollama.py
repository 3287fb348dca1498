"""Verify aegis.rag.ollama on the scenario's two Ollama hosts (testinfra over nsenter). The service
enabled and running on the fleet's Ollama host: tests/fleet/test_services.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

testinfra_hosts = ["nsenter://aegis-ollama", "nsenter://aegis-ollama-gpu"]

INVENTORY = yaml.safe_load((Path(__file__).parents[1] / "molecule.yml").read_text())["provisioner"]["inventory"]
MODELS = [m["name"] for m in INVENTORY["group_vars"]["ollama"]["ollama_models"]]
GPU_HOST = "aegis-ollama-gpu"
RECORDED_GPU_UUIDS = "GPU-5d2c9c3e-4f0b-8b8e-1a0c-3a7b3c1b2f10,GPU-8e0f1d2a-77c1-4b7e-9a0e-0c4f1b2d3e4f"
ENV_FILE = "/etc/ollama/ollama.env"


def is_gpu_host(host) -> bool:
    return host.backend.hostname == GPU_HOST


def host_vars(host) -> dict:
    return INVENTORY["host_vars"][host.backend.hostname]


def port_of(host) -> int:
    return host_vars(host).get("ollama_port", 11434)


def api(host, path: str) -> dict:
    """GET from the server on the host itself, with the host's python3."""
    url = f"http://127.0.0.1:{port_of(host)}{path}"
    out = host.check_output(f"python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], "
                            f"timeout=10).read().decode())' {url}")
    return json.loads(out)


def server_environment(host) -> dict[str, str]:
    pid = host.check_output("systemctl show -p MainPID --value ollama")
    # As the ollama user: the container's root may not read another user's environ (no CAP_SYS_PTRACE).
    raw = host.check_output(f"runuser -u ollama -- cat /proc/{pid}/environ | tr '\\0' '\\n'")
    return dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)


def test_installed_like_the_official_install(host):
    assert host.file("/usr/bin/ollama").mode == 0o755
    assert host.file("/usr/lib/ollama").is_directory
    user = host.user("ollama")
    assert (user.home, user.shell, user.group) == ("/usr/share/ollama", "/bin/false", "ollama")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ExecStart", "/usr/bin/ollama serve"),
        ("User", "ollama"),
        ("Restart", "always"),
        ("RestartUSec", "3s"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("CapabilityBoundingSet", ""),
        # GPU access: devices not hidden nor filtered
        ("PrivateDevices", "no"),
        ("DevicePolicy", "auto"),
        ("DeviceAllow", ""),
    ],
)
def test_unit_properties(host, name, value):
    shown = host.check_output(f"systemctl show -p {name} --value ollama")
    if name == "ExecStart":
        assert f"argv[]={value} " in shown
    else:
        assert shown == value


def test_listening_address_and_port(host):
    listening = {str(s) for s in host.socket.get_listening_sockets() if str(s).startswith("tcp")}
    expected = "tcp://0.0.0.0:11500" if is_gpu_host(host) else "tcp://127.0.0.1:11434"
    assert {s for s in listening if s.endswith(f":{port_of(host)}")} == {expected}


def test_environment_file_is_readable_by_root_and_ollama_only(host):
    env = host.file(ENV_FILE)
    assert (env.user, env.group, env.mode) == ("root", "ollama", 0o640)


def test_server_runs_with_the_settings_of_the_variables(host):
    env = server_environment(host)
    expected = {"OLLAMA_MODELS": "/usr/share/ollama/.ollama/models", "OLLAMA_FLASH_ATTENTION": "0",
                "OLLAMA_MAX_LOADED_MODELS": "0"}
    if is_gpu_host(host):
        expected |= {"OLLAMA_HOST": "0.0.0.0:11500", "OLLAMA_NUM_PARALLEL": "2", "OLLAMA_MAX_QUEUE": "64",
                     "OLLAMA_KEEP_ALIVE": "10m"}
    else:
        expected |= {"OLLAMA_HOST": "127.0.0.1:11434", "OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_QUEUE": "512",
                     "OLLAMA_KEEP_ALIVE": "5m"}
    assert {k: env.get(k) for k in expected} == expected
    settings = api(host, "/_control")["settings"]  # the stand-in server took them up
    assert (settings["num_parallel"], settings["max_queue"]) == (int(expected["OLLAMA_NUM_PARALLEL"]),
                                                                 int(expected["OLLAMA_MAX_QUEUE"]))


def test_cuda_settings_only_on_the_gpu_host(host):
    env_file = host.file(ENV_FILE).content_string
    cuda = server_environment(host).get("CUDA_VISIBLE_DEVICES")
    if is_gpu_host(host):
        assert f"CUDA_VISIBLE_DEVICES={RECORDED_GPU_UUIDS}\n" in env_file
        assert cuda == RECORDED_GPU_UUIDS
    else:
        assert "CUDA_VISIBLE_DEVICES" not in env_file
        assert cuda is None


def test_render_and_video_groups_only_on_the_gpu_host(host):
    groups = set(host.user("ollama").groups)
    if is_gpu_host(host):
        assert {"render", "video"} <= groups
    else:
        assert not groups & {"render", "video"}


def test_models_are_present(host):
    assert {m["name"] for m in api(host, "/api/tags")["models"]} >= set(MODELS)


def test_models_survive_a_restart(host):
    models_json = host.file("/usr/share/ollama/.ollama/models/models.json")
    assert models_json.user == "ollama"
    host.check_output("systemctl restart ollama")
    for _ in range(50):
        try:
            api(host, "/api/version")
            break
        except AssertionError:  # not listening yet
            host.check_output("sleep 0.2")
    assert {m["name"] for m in api(host, "/api/tags")["models"]} >= set(MODELS)
