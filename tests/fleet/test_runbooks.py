"""The runbooks on the fleet, each after breaking what it repairs (molecule/default/runbooks.yml): its unit stopped
on its host, the runbook run as an operator runs it reports the restart and leaves the unit active, and a second run
on the healed fleet reports no change."""

from __future__ import annotations

import pytest

from tests.fleet.conftest import FLEET_TEST, SCENARIO

pytestmark = FLEET_TEST


@pytest.mark.parametrize("runbook", ["runbook_api_failure", "runbook_llm", "runbook_vector_db"])
def test_a_stopped_unit_is_healed(fleet, runbook):
    fleet.playbook(SCENARIO / "runbooks.yml", f"--extra-vars=fleet_runbook={runbook}")
    fleet.wait_ready()
