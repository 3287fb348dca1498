"""Requests through the load balancer while API hosts stop or change release: a client loop on the load balancer
host asks /chat throughout, and no request may fail (molecule/default/tasks/under_client_loop.yml asserts it)."""

from __future__ import annotations

import json

from tests.fleet.conftest import (FLEET_TEST, SCENARIO, VARS, assert_release_contents, hosts_of, http,
                                  read_as_service_user, recap)

pytestmark = FLEET_TEST
QDRANT_KEY = VARS["all"]["fleet_qdrant_api_key"]


def test_an_api_host_stopped_unannounced_fails_no_request_and_raises_its_alert(fleet):
    """The second API host's unit stops without a drain: HAProxy replays its requests in flight, marks it DOWN,
    AegisServiceDown for that host reaches Alertmanager; then it is started and enabled again."""
    fleet.playbook(SCENARIO / "unannounced_stop.yml")
    fleet.wait_ready()


def test_a_rolling_upgrade_and_a_rollback_fail_no_request(fleet):
    """deploy_api.yml to release 2 takes a snapshot first and prunes an older release (one kept besides `current` and
    `previous`); rollback_api.yml returns to release 1 (converge.yml's), keeping both; the running API is release 1's;
    then site.yml would change nothing in the API's configuration (a change there restarts every API host at once)."""
    try:
        fleet.playbook(SCENARIO / "upgrade_rollback.yml", timeout_s=1500)
    except BaseException:
        # Leave the next test a healthy fleet on release 1 (a deploy drains and enables host by host).
        fleet.playbook("playbooks/deploy_api.yml", f"--extra-vars=aegis_api_version={fleet.release(1)}",
                       timeout_s=1500)
        raise
    status, snapshots = http(fleet.host("fleet-data"), "http://127.0.0.1:6333/collections/aegis_docs_v2/snapshots",
                             f"api-key={QDRANT_KEY}")
    assert status == 200 and json.loads(snapshots)["result"], snapshots
    first, second = fleet.release(1), fleet.release(2)
    for name in hosts_of("aegis_api"):
        api = fleet.host(name)
        assert api.file("/opt/aegis/current").linked_to == f"/opt/aegis/releases/{first}"
        assert api.file("/opt/aegis/previous").linked_to == f"/opt/aegis/releases/{second}"
        releases = api.check_output("ls /opt/aegis/releases").split()
        assert sorted(releases) == sorted([first, second]), (name, releases)  # 0.1.0-fleet0, planted, went
        for release in releases:
            assert_release_contents(api, f"/opt/aegis/releases/{release}")
        pid = api.check_output("systemctl show --property=MainPID --value aegis-api")
        maps = read_as_service_user(api, f"/proc/{pid}/maps")
        assert f"/opt/aegis/releases/{first}/venv/" in maps and f"/opt/aegis/releases/{second}/" not in maps, name
    check = fleet.playbook("playbooks/site.yml", "--check", "--diff", "--tags=aegis_api_configure")
    assert all(counts["changed"] == 0 for counts in recap(check).values()), check[-6000:]
