"""site.yml on the converged fleet again changes nothing, and neither does check mode: the roles are idempotent
on real hosts, and a no-change run is what an operator's drift check sees."""

from __future__ import annotations

from tests.fleet.conftest import FLEET_TEST, GROUPS, SCENARIO, recap

pytestmark = FLEET_TEST


def assert_nothing_changed(output: str) -> None:
    hosts = recap(output)
    assert set(GROUPS) <= set(hosts), f"hosts missing from the recap: {sorted(hosts)}\n{output[-5000:]}"
    changed = {name: counts for name, counts in hosts.items() if counts["changed"] or counts["failed"]
               or counts["unreachable"]}
    assert not changed, f"changes on the converged fleet: {changed}\n{output[-15000:]}"


def test_a_second_converge_changes_nothing(fleet):
    assert_nothing_changed(fleet.playbook(SCENARIO / "converge.yml"))


def test_check_mode_changes_nothing(fleet):
    assert_nothing_changed(fleet.playbook(SCENARIO / "converge.yml", "--check"))
