"""Runs each Molecule scenario but the fleet (molecule/<name>/; the fleet, `default`, is test_fleet_scenario.py)
on real systemd test hosts: podman containers from the Debian image that scripts/testhosts.sh builds and
caches. `make test` runs this file and the fleet's on two pytest workers at once (tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.molecule.conftest import SCENARIOS, molecule_test


def test_every_tier_has_its_scenario():
    assert {"default", "datatier", "qdrant", "aegis_api", "loadbalancer"} <= set(SCENARIOS)


@pytest.mark.slow
@pytest.mark.timeout(1900)
@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "default"])
def test_scenario(test_hosts, scenario):
    molecule_test(scenario, timeout_s=1800)
