"""playbooks/scale_out.yml on the fleet, run as an operator runs it: two new hosts made as the fleet's are (podman
containers from the fleet's image, on its network), added to the inventory (a second inventory file beside the
fleet's: fleet-api-3 in aegis_api, fleet-ollama-2 in ollama), then named with -e scale_out_hosts. The load balancer
balances Ollama for this run (loadbalancer_ollama_enabled: the run refuses Ollama hosts otherwise); the fleet's API
hosts keep their own Ollama address.

Proven here, in one run for both hosts under a client loop through the load balancer: no request fails; HAProxy
learned each new server held out and put it in the pool only once it answered ready from the load balancer (the
report's before/after: maint -> ready); both are UP in their backends, the new API host serves /chat through the load
balancer and the Ollama frontend answers with the fleet's model; Prometheus scrapes both; a second run changes
nothing. Afterwards (also when the test fails) the fleet is as it was: the load balancer and Prometheus configured
from the fleet's own inventory again (site.yml, their phases only: Ollama frontend gone), the two containers removed,
every API host in the pool."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import yaml

from tests.fleet.conftest import FLEET_TEST, LB_TOOL, VARS, hosts_of, http, load_json_report, recap
from tests.fleet.test_model_update import client_loop

pytestmark = FLEET_TEST

PLAYBOOK = "playbooks/scale_out.yml"
LB, API_1 = hosts_of("loadbalancer")[0], hosts_of("aegis_api")[0]
NEW_API, NEW_OLLAMA = "fleet-api-3", "fleet-ollama-2"
MODEL = VARS["all"]["fleet_model"]
PROMETHEUS = "http://127.0.0.1:9090"
# The load balancer's and Prometheus's phases of site.yml: their configuration from the fleet's own inventory
RESTORE_TAGS = "loadbalancer_configure,loadbalancer_run,monitoring_configure,monitoring_run"


def podman(*args: str, timeout_s: float = 120) -> str:
    run = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout_s, check=False)
    assert run.returncode == 0, f"podman {' '.join(args)}: {run.stdout}{run.stderr}"
    return run.stdout.strip()


def make_host(name: str) -> None:
    """A host as Molecule makes the fleet's (.config/molecule/config.yml, molecule/default/molecule.yml): the fleet's
    image, systemd as PID 1, on the load balancer's network. Without Molecule's owner label, so that no scenario's
    sweep (tests/molecule/conftest.py) takes it for one of its leftovers."""
    image = podman("inspect", "--format", "{{.ImageName}}", LB)
    network = podman("inspect", "--format", "{{range $name, $net := .NetworkSettings.Networks}}{{$name}} {{end}}",
                     LB).split()[0]
    podman("run", "--detach", f"--name={name}", f"--hostname={name}", f"--network={network}", "--systemd=always",
           image, "/sbin/init", timeout_s=300)
    deadline = time.monotonic() + 120
    while subprocess.run(["podman", "exec", name, "systemctl", "is-system-running"], capture_output=True, text=True,
                         check=False).stdout.strip() not in ("running", "degraded"):
        assert time.monotonic() < deadline, f"{name}: systemd not up after 120 s"
        time.sleep(1)


def new_hosts_inventory(fleet, folder: Path) -> Path:
    """The new hosts in the fleet's groups, reached as the fleet's hosts are; the Ollama hosts' address for the load
    balancer's Ollama backend (the fleet's own inventory sets it for the API hosts only)."""
    fleet_inventory = yaml.safe_load(fleet.inventory.read_text())
    connection = fleet_inventory["aegis_api"]["hosts"][API_1]
    path = folder / "new_hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"children": {
        "aegis_api": {"hosts": {NEW_API: connection}},
        "ollama": {"hosts": {NEW_OLLAMA: connection},
                   "vars": {"loadbalancer_backend_address": "{{ fleet_address }}"}}}}}))
    return path


def scale_out(fleet, inventory: Path, reports: Path) -> tuple[str, dict]:
    extra = {"scale_out_hosts": [NEW_API, NEW_OLLAMA], "loadbalancer_ollama_enabled": True,
             "aegis_report_dir": str(reports)}
    output = fleet.playbook(PLAYBOOK, f"--inventory={inventory}", f"--extra-vars={json.dumps(extra)}", timeout_s=1800)
    return output, load_json_report(reports, "scale_out")


def lb_state(fleet, backend: str, name: str) -> dict:
    return json.loads(fleet.host(LB).check_output(f"{LB_TOOL} show {backend} {name}"))["after"]


def searches_served(fleet, name: str) -> float:
    """The vector searches an API host has made (one per /chat), from its own /metrics."""
    status, text = http(fleet.host(name), "http://127.0.0.1:8910/metrics")
    assert status == 200, text[:300]
    return sum(float(value) for value in re.findall(r"^aegis_vector_searches_total(?:\{[^}]*\})? (\S+)$", text,
                                                     re.MULTILINE))


def scraped(fleet, address: str) -> set[str]:
    """The jobs whose Prometheus targets at `address` are up."""
    status, text = http(fleet.host(LB), f"{PROMETHEUS}/api/v1/targets")
    assert status == 200, text[:300]
    at = re.compile(rf"(?:^|//){re.escape(address)}:")  # instance: address:port, or a probed URL
    return {t["labels"]["job"] for t in json.loads(text)["data"]["activeTargets"]
            if at.search(t["labels"]["instance"]) and t["health"] == "up"}


def wait_for(check, timeout_s: float = 90):
    """check()'s value once truthy, else its last value after timeout_s (the assertion shows it)."""
    deadline = time.monotonic() + timeout_s
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(2)
    return value


def restore(fleet) -> None:
    """The load balancer and Prometheus configured from the fleet's own inventory, then the new hosts removed."""
    try:
        fleet.playbook("playbooks/site.yml", f"--tags={RESTORE_TAGS}", timeout_s=1200)
    finally:
        subprocess.run(["podman", "rm", "--force", "--time=0", NEW_API, NEW_OLLAMA], capture_output=True,
                       check=False, timeout=300)
    fleet.wait_ready(timeout_s=180)


def test_an_api_host_and_an_ollama_host_join_the_pool_with_no_failed_request(fleet, tmp_path):
    try:
        make_host(NEW_API)
        make_host(NEW_OLLAMA)
        inventory = new_hosts_inventory(fleet, tmp_path)
        with client_loop(fleet) as loop:
            output, report = scale_out(fleet, inventory, tmp_path / "run")
            served = wait_for(lambda: searches_served(fleet, NEW_API), timeout_s=60)  # the loop still asking
        assert loop["failed"] == 0 and loop["answered"] > 0, loop
        assert served > 0, f"{NEW_API} served no /chat through the load balancer"

        assert report["status"] == "changed", report
        for name, backend in ((NEW_API, "aegis_api"), (NEW_OLLAMA, "ollama")):
            host = report["hosts"][name]
            assert host["status"] == "changed", host
            assert host["summary"] == f"joined the pool of {LB}, ready from {LB}", host
            [row] = host["data"]["pool"]
            assert (row["backend"], row["before"], row["after"], row["joined"]) == (backend, "absent", "ready", True)
            state = lb_state(fleet, backend, name)
            assert (state["admin"], state["status"]) == ("ready", "UP"), (name, state)
        assert report["hosts"][LB]["data"]["held_out"] == [f"aegis_api/{NEW_API}", f"ollama/{NEW_OLLAMA}"]
        assert all(counts["failed"] == 0 for counts in recap(output).values()), recap(output)

        status, tags = http(fleet.host(LB), "http://127.0.0.1:11434/api/tags")  # the load balancer's Ollama frontend
        assert status == 200 and MODEL in {m["name"] for m in json.loads(tags)["models"]}, tags[:300]
        api_address, ollama_address = fleet.address(NEW_API), fleet.address(NEW_OLLAMA)
        assert wait_for(lambda: {"node", "aegis-api"} <= scraped(fleet, api_address)), scraped(fleet, api_address)
        assert wait_for(lambda: {"node", "blackbox-ollama"} <= scraped(fleet, ollama_address)), scraped(
            fleet, ollama_address)

        output, report = scale_out(fleet, inventory, tmp_path / "again")
        assert report["status"] == "ok", report
        assert all(counts["changed"] == 0 for counts in recap(output).values()), recap(output)
    finally:
        restore(fleet)
    assert not fleet.host(LB).file("/etc/haproxy/haproxy.cfg").contains("^backend ollama")
