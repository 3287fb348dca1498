"""Runs the fleet scenario (molecule/default: site.yml on five hosts, then monitoring, the scheduler, an
unannounced stop, a rolling upgrade and a rollback under client loops).
About 40 minutes on an idle 2-core machine, over 55 while `make test`'s other worker runs; `make test` starts it
first, on a pytest worker of its own. The runbooks' break and heal (runbooks.yml) run only with
AEGIS_FLEET_RUNBOOKS=1."""

from __future__ import annotations

import pytest

from tests.molecule.conftest import molecule_test


@pytest.mark.slow
@pytest.mark.timeout(4300)
def test_fleet_scenario(test_hosts):
    molecule_test("default", timeout_s=4200)
