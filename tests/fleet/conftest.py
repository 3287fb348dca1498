"""The fleet (molecule/default: a load balancer with the monitoring server and the scheduler, two API hosts, a data
host with Qdrant and Redis, an Ollama host) converged once per pytest run and shared by every test of this folder.
Each test breaks or exercises one thing, runs the playbook as an operator would (`ansible-playbook` with the
fleet's inventory) and leaves the fleet healthy for the next.

- By default the session converges a fresh fleet (sweeping what earlier runs left) and destroys it at the end.
- AEGIS_FLEET_REUSE=1: a running fleet of this checkout (`make fleet`) is used as it is and left running; when
  none runs, one is converged and left running. `make fleet-down` removes it.
`make test` hands every test of this folder to one pytest worker (tests/conftest.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import testinfra
import yaml

import tests.testinfra_nsenter  # noqa: F401  (registers testinfra's nsenter:// hosts)

from tests.molecule.conftest import (ROOT, VENV_BIN, _run_locked, ensure_test_hosts, fleet_state_dir, molecule_env,
                                     scenario_hosts, scenario_lock)

SCENARIO = ROOT / "molecule" / "default"
CONFIG = yaml.safe_load((SCENARIO / "molecule.yml").read_text())
GROUPS = {p["name"]: p["groups"] for p in CONFIG["platforms"]}
VARS = CONFIG["provisioner"]["inventory"]["group_vars"]
CONVERGE_TIMEOUT_S = 1800
# Every test of this folder: the fleet, and a timeout that covers a first converge (the first test waits for it).
FLEET_TEST = [pytest.mark.slow, pytest.mark.usefixtures("fleet"), pytest.mark.timeout(CONVERGE_TIMEOUT_S + 900)]
LB_TOOL = "/usr/local/sbin/aegis-haproxy-server"  # the loadbalancer role's
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def hosts_of(group: str) -> list[str]:
    return [name for name, groups in GROUPS.items() if group in groups]


class Fleet:
    """The converged fleet: its inventory, the environment Molecule runs Ansible with, and its hosts."""

    def __init__(self) -> None:
        self.state = fleet_state_dir()
        self.inventory = self.state / "inventory" / "ansible_inventory.yml"
        config = yaml.safe_load((ROOT / ".config" / "molecule" / "config.yml").read_text())
        self.env = {
            **molecule_env("default"),
            **{k: str(v).replace("${MOLECULE_PROJECT_DIRECTORY}", str(ROOT)) for k, v in config["ansible"]["env"].items()},
            "ANSIBLE_CONFIG": str(self.state / "ansible.cfg"),
            "ANSIBLE_FORCE_COLOR": "0",
            "MOLECULE_INVENTORY_FILE": str(self.inventory),
            "MOLECULE_PROJECT_DIRECTORY": str(ROOT),
            "MOLECULE_SCENARIO_DIRECTORY": str(SCENARIO),
            "MOLECULE_SCENARIO_NAME": "default",
        }

    def playbook(self, playbook: str | Path, *args: str, timeout_s: float = 900, expect_failure: bool = False) -> str:
        """Run a playbook (a path relative to the repository root) against the fleet; its output, which the
        assertion shows when the run succeeds or fails against expect_failure."""
        run = subprocess.run([str(VENV_BIN / "ansible-playbook"), f"--inventory={self.inventory}", str(playbook),
                              *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout_s,
                             check=False)
        output = run.stdout + run.stderr
        assert (run.returncode != 0) == expect_failure, (
            f"ansible-playbook {playbook} {' '.join(args)} {'succeeded' if expect_failure else 'failed'}:\n"
            f"{output[-15000:]}")
        return output

    def lb_server(self, name: str) -> dict:
        """HAProxy's view of an API host: admin (ready, drain, maint), status (UP, DOWN, MAINT...) and sessions."""
        lb = self.host(hosts_of("loadbalancer")[0])
        return json.loads(lb.check_output(f"{LB_TOOL} show aegis_api {name}"))["after"]

    def release(self, n: int) -> str:
        """Release n of the source the fleet was prepared from: converge.yml deploys 1, upgrade_rollback.yml 2."""
        digest = json.loads((self.state / "source.json").read_text())["digest"]
        return f"0.1.0-fleet{n}-{digest}"

    def host(self, name: str):
        """A testinfra host, its commands run through nsenter (tests/testinfra_nsenter.py)."""
        return testinfra.get_host(f"nsenter://{name}")

    def address(self, name: str) -> str:
        """A host's address on podman's network (the hosts reach each other by address)."""
        inspect = subprocess.run(["podman", "inspect", "--format", "{{.NetworkSettings.IPAddress}}", name],
                                 capture_output=True, text=True, check=True, timeout=60)
        return inspect.stdout.strip()

    def wait_ready(self, timeout_s: float = 120) -> None:
        """Every API host answers /ready with 200 and the load balancer has it UP (the state each test leaves the
        fleet in: HAProxy takes a host back only after its health checks pass again)."""
        deadline = time.monotonic() + timeout_s
        for name in hosts_of("aegis_api"):
            while (ready := http(self.host(name), "http://127.0.0.1:8910/ready"))[0] != 200:
                assert time.monotonic() < deadline, f"{name}: /ready not 200 after {timeout_s:g} s: {ready}"
                time.sleep(2)
            while (state := self.lb_server(name))["status"] != "UP":
                assert time.monotonic() < deadline, f"{name}: not UP on the load balancer after {timeout_s:g} s: {state}"
                time.sleep(1)


def assert_release_contents(host, folder: str) -> None:
    """An installed release of aegis.rag.aegis_api: a virtualenv and the model, neither torch nor wheels, a marker."""
    assert host.file(f"{folder}/venv/bin/aegis-rag").exists, folder
    assert host.file(f"{folder}/model/all-MiniLM-L6-v2.onnx").exists and host.file(f"{folder}/model/tokenizer.json").exists
    assert not host.file(f"{folder}/wheels").exists, folder
    assert not host.file(f"{folder}/venv/lib/python3.11/site-packages/torch").exists, folder
    assert len(host.file(f"{folder}/.aegis-release").content_string.strip()) == 64, folder


def read_as_service_user(host, path: str) -> str:
    """A /proc file of the API's process, read as its user (the containers' root has no CAP_SYS_PTRACE); NULs as
    newlines."""
    return host.check_output(f"runuser -u aegis -- cat {path} | tr '\\0' '\\n'")


# GET (or POST with a body, or another method) with the host's python3 (the hosts have no curl); headers as
# "Name=value,Name=value"; prints "<status> <body>", status 0 when nothing answered.
HTTP = ("python3 -c 'import sys, urllib.request as u, urllib.error as e\n"
        "headers = dict(h.split(\"=\", 1) for h in sys.argv[2].split(\",\") if h)\n"
        "body = sys.argv[3].encode() if len(sys.argv) > 3 else None\n"
        "method = sys.argv[4] if len(sys.argv) > 4 else None\n"
        "try:\n    x = u.urlopen(u.Request(sys.argv[1], data=body, headers=headers, method=method), timeout=60)\n"
        "    print(x.status, x.read().decode())\n"
        "except e.HTTPError as x: print(x.code, x.read().decode())\n"
        "except OSError as x: print(0, x)' ")


def http(host, url: str, headers: str = "", body: str | None = None, method: str | None = None) -> tuple[int, str]:
    parts = [url, headers] + ([body or ""] if body is not None or method else []) + ([method] if method else [])
    status, _, text = host.check_output(HTTP + " ".join(f"'{part}'" for part in parts)).partition(" ")
    return int(status), text


def wait_until(condition, timeout_s: float, what: str) -> None:
    """Poll condition() every second until it is true; fail saying what did not happen within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not {what} after {timeout_s:g} s"
        time.sleep(1)


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of an ansible-playbook run: host -> {ok, changed, unreachable, failed}."""
    return {m[1]: dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()[1:])))
            for m in RECAP.finditer(output)}


def fleet_is_up() -> bool:
    """This checkout's fleet state exists and every host of the scenario is running."""
    if not (fleet_state_dir() / "inventory" / "ansible_inventory.yml").exists():
        return False
    listed = subprocess.run(["podman", "ps", "--filter", "status=running", "--format", "{{.Names}}"],
                            capture_output=True, text=True, check=True, timeout=60).stdout.split()
    return scenario_hosts("default") <= set(listed)


def _molecule(command: str) -> None:
    subprocess.run([str(VENV_BIN / "molecule"), command, "-s", "default"], cwd=ROOT, env=molecule_env("default"),
                   stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=600)


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    """The converged fleet, under the scenario's machine-wide lock for the whole session."""
    ensure_test_hosts()
    reuse = os.environ.get("AEGIS_FLEET_REUSE") == "1"
    with scenario_lock("default"):
        if not (reuse and fleet_is_up()):
            code, output = _run_locked("default", CONVERGE_TIMEOUT_S, "converge")
            if code != 0:
                _molecule("destroy")
                pytest.fail(f"molecule converge -s default {'timed out' if code is None else 'failed'} (hosts "
                            f"destroyed):\n{output[-12000:]}")
        try:
            yield Fleet()
        finally:
            if not reuse:
                _molecule("destroy")


def load_json_report(folder: Path, prefix: str) -> dict:
    """The newest `<prefix>-*.json` report written into folder."""
    reports = sorted(folder.glob(f"{prefix}-*.json"))
    assert reports, f"no {prefix} report in {folder}: {sorted(p.name for p in folder.glob('*'))}"
    return json.loads(reports[-1].read_text())
