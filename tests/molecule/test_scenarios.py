"""Runs each Molecule scenario but the fleet (molecule/<name>/; the fleet, `default`, is tests/fleet/, converged
once per run) on real systemd test hosts: podman containers from the Debian image that scripts/testhosts.sh builds
and caches. `make test` runs this file and the fleet's tests on two pytest workers at once (tests/conftest.py)."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.molecule.conftest import (SCENARIOS, host_containers, leftover_processes, molecule_test, run_molecule,
                                     scenario_hosts)

RUN = [s for s in SCENARIOS if s != "default"]


def test_every_tier_has_its_scenario():
    """aegis.rag.aegis_api's is the fleet (tests/fleet/test_api_hosts.py, test_client_loop.py)."""
    assert {"default", "datatier", "qdrant", "loadbalancer"} <= set(SCENARIOS)


@pytest.mark.slow
@pytest.mark.timeout(1900)
@pytest.mark.parametrize("scenario", RUN)
def test_scenario(test_hosts, scenario):
    molecule_test(scenario, timeout_s=1800)


AFTER_CREATE = re.compile(r"\[qdrant > create\] Executed: Successful[\s\S]*TASK \[")


# Here, not in a file of its own: `make test` spreads files over two workers, and this one must not run the qdrant
# scenario while test_scenario does.
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_killed_run_leaves_nothing(test_hosts):
    """A run cut mid-way (as by its timeout) leaves no host and no molecule/ansible-playbook process of its
    scenario: cut at the first task after its hosts were created, an ansible-playbook at work."""
    returncode, output = run_molecule("qdrant", timeout_s=300, cut_at=AFTER_CREATE)
    assert returncode is None, f"molecule test -s qdrant was not cut:\n{output[-4000:]}"
    assert AFTER_CREATE.search(output), f"cut before its hosts existed:\n{output[-4000:]}"
    assert "--- cut: killed; molecule destroy -s qdrant" in output
    left = set(host_containers()) & scenario_hosts("qdrant")
    assert not left, f"hosts left after the kill: {sorted(left)}\n{output[-4000:]}"
    assert scenario_hosts("qdrant") == {"aegis-qdrant-1", "aegis-qdrant-2"}
    everything = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
                                check=True, timeout=60).stdout.split()
    assert not set(everything) & scenario_hosts("qdrant")
    procs = leftover_processes("qdrant")
    assert not procs, f"processes left after the kill: {procs}"
