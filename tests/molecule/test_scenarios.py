"""Runs each Molecule scenario but the fleet (molecule/<name>/; the fleet, `default`, is test_fleet_scenario.py)
on real systemd test hosts: podman containers from the Debian image that scripts/testhosts.sh builds and
caches. `make test` runs this file and the fleet's on two pytest workers at once (tests/conftest.py)."""

from __future__ import annotations

import os

import pytest

from tests.molecule.conftest import SCENARIOS, molecule_test

# `loadbalancer` only with AEGIS_MOLECULE_LOADBALANCER=1 for now: the fleet runs the same role in front of real API
# hosts, and CI's whole run (81 min on a fresh clone with it) must stay inside its 90 min.
RUN = [s for s in SCENARIOS if s != "default"
       and (s != "loadbalancer" or os.environ.get("AEGIS_MOLECULE_LOADBALANCER") == "1")]


def test_every_tier_has_its_scenario():
    assert {"default", "datatier", "qdrant", "aegis_api", "loadbalancer"} <= set(SCENARIOS)


@pytest.mark.slow
@pytest.mark.timeout(1900)
@pytest.mark.parametrize("scenario", RUN)
def test_scenario(test_hosts, scenario):
    molecule_test(scenario, timeout_s=1800)
