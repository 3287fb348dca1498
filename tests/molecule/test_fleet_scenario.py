"""Runs the fleet scenario (molecule/default: site.yml on five hosts, then monitoring, the scheduler, an
unannounced stop, a rolling upgrade and a rollback under client loops, and the runbooks' break and heal).
About 41 minutes on an idle 2-core machine; `make test` starts it first, on a pytest worker of its own."""

from __future__ import annotations

import pytest

from tests.molecule.conftest import molecule_test


@pytest.mark.slow
@pytest.mark.timeout(3400)
def test_fleet_scenario(test_hosts):
    molecule_test("default", timeout_s=3300)
