"""playbooks/emergency_recovery.yml against a Qdrant double, moto S3 and a real Aegis API (server mode, on that
double) on loopback: the collection wiped after a backup is restored (a safety snapshot first), the tiers are
waited for in order and the health check passes, /chat answers with sources again; check mode gives the plan only;
a run without backup_date is refused.

Untested here (no systemd, no HAProxy on the test host): the drain and enable on the load balancers and the
restart of the units (the tiers are only waited for: "no unit"). The lead's Molecule fleet covers those, and a day
without backups failing before anything is touched (tests/fleet/test_backup_recovery.py)."""

from __future__ import annotations

import datetime as dt
import re
import socket

import httpx
import pytest
import yaml

from tests.collection.conftest import COLLECTION_ROOT, VENV_BIN
from tests.collection.qdrant_helpers import Rest
from tests.module_python import MODULE_PYTHON
from tests.runbooks.conftest import run_ansible

pytestmark = pytest.mark.slow

API_KEY = "emergency-recovery-test-key"
COLLECTION = "aegis_docs_v2"


@pytest.fixture
def fleet(tmp_path, local_embedder, start_double, run_playbook, s3_bucket):
    """A Qdrant double, an Aegis API on it with one document, and a backup of today in s3_bucket."""
    from tests.collection.aegis_app import AegisServer

    qdrant = start_double("qdrant")
    server = AegisServer(tmp_path / "aegis-data", embedder=local_embedder, api_keys=[API_KEY],
                         qdrant_url=qdrant.url, collection=COLLECTION).start()
    server.add_document(headers={"Authorization": f"Bearer {API_KEY}"})
    run_playbook("backup", hosts={"qdrant-a": qdrant}, aegis_backup_s3_bucket=s3_bucket)
    yield server, qdrant, Rest(qdrant)
    server.stop()


def recover(run_playbook, server, qdrant, bucket, date, **kwargs):
    return run_playbook("emergency_recovery", hosts={"qdrant-a": qdrant}, api_hosts={"api-a": server.url},
                        aegis_backup_s3_bucket=bucket, aegis_runbook_api_key=API_KEY, backup_date=date,
                        aegis_emergency_ready_timeout=20, **kwargs)


def sources(server) -> int:
    r = httpx.post(server.url + "/chat", json={"question": "When are snapshots uploaded?", "history": []},
                   headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    r.raise_for_status()
    return len(r.json()["sources"])


def today() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")


def test_wiped_collection_is_restored_after_a_safety_snapshot(run_playbook, fleet, s3, s3_bucket):
    server, qdrant, rest = fleet
    points = len(rest.points(COLLECTION))
    assert points > 0 and sources(server) > 0
    rest.delete_all_points(COLLECTION)
    assert rest.points(COLLECTION) == {} and sources(server) == 0
    snapshots = rest.snapshots(COLLECTION)  # the backup's own

    # check mode: the plan, nothing restored, no snapshot taken
    dry = recover(run_playbook, server, qdrant, s3_bucket, today(), check=True)
    assert dry.report["check_mode"] is True and dry.report["status"] == "would change"
    plan = dry.host("qdrant-a")["actions"]
    assert any(a.startswith("would download s3://") for a in plan), plan
    assert f"would safety snapshot of {COLLECTION}" in plan
    assert any(a.startswith("would verify with the health check") for a in dry.host("localhost")["actions"])
    assert rest.points(COLLECTION) == {} and rest.snapshots(COLLECTION) == snapshots

    out = recover(run_playbook, server, qdrant, s3_bucket, today())
    section = out.host("qdrant-a")
    assert out.report["status"] == "changed", out.report
    assert len(rest.points(COLLECTION)) == points
    [restore] = section["data"]["restores"]
    assert restore["points_count"] == restore["expected_points_count"] == points
    snapshot = restore["safety_snapshot"]
    assert snapshot and snapshot not in snapshots and snapshot in rest.snapshots(COLLECTION), "kept on the node"
    assert section["actions"][0] == f"safety snapshot {snapshot} of {COLLECTION} (kept on the Qdrant node)"
    assert section["actions"][1].startswith(f"restored s3://{s3_bucket}/qdrant/qdrant-a/{COLLECTION}/{today()}/")
    fleet_section = out.host("localhost")
    assert "no load balancer: the API is not drained" in fleet_section["actions"]
    assert "qdrant on qdrant-a ready (no qdrant unit: not restarted)" in fleet_section["actions"]
    assert "aegis_api on api-a ready (no aegis-api unit: not restarted)" in fleet_section["actions"]
    checks = {row[0]: row[1] for row in fleet_section["tables"][0]["rows"]}
    assert checks == {"aegis_health": "ok", "aegis_ready": "ok", "aegis_chat": "ok", "qdrant_ready": "ok"}
    assert sources(server) > 0
    assert API_KEY not in out.stdout and API_KEY not in out.markdown


def test_backup_date_is_required(run_playbook, qdrant, s3_bucket):
    """The settings are checked first, before any call: the session's Qdrant double and an API that does not
    answer do."""
    out = run_playbook("emergency_recovery", hosts={"qdrant-a": qdrant}, api_hosts={"api-a": "http://127.0.0.1:9"},
                       aegis_backup_s3_bucket=s3_bucket, expect_failure=True)
    assert "set backup_date=YYYYMMDD" in out.host("qdrant-a")["summary"]


def test_the_wait_for_a_hanging_tier_ends_at_its_deadline(tmp_path):
    """A tier that accepts connections and never answers: each attempt takes the uri timeout (10 s), so a wait of
    8 s (4 retries) made 4 attempts, 46 s, without a deadline; with it, the attempt that crosses the 8 s is the last,
    and the task still fails."""
    hanging = socket.create_server(("127.0.0.1", 0))  # listens, never accepts: the kernel completes the connects
    tasks = COLLECTION_ROOT / "playbooks" / "tasks" / "emergency_restart.yml"
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "Restart one tier", "ansible.builtin.include_tasks": str(tasks),
        "vars": {"_er_item": {"tier": "api", "host": "localhost"}, "_er_units": {"api": "aegis-test-no-such-unit"},
                 "_er_ready_urls": {"api": f"http://127.0.0.1:{hanging.getsockname()[1]}/ready"},
                 "_er_ready_timeout": 8, "_er_delegate": "localhost", "_er_actions": []}}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": MODULE_PYTHON}}}}))
    try:
        out = run_ansible([str(VENV_BIN / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
                           str(tmp_path / "play.yml")], tmp_path, tmp_path / "reports", "none", expect_failure=True)
    finally:
        hanging.close()
    wait = out.stdout.split("TASK [Wait for the tier to answer on localhost]")[1]
    assert "fatal: [localhost]: FAILED!" in wait, out.describe()
    assert re.findall(r'"attempts": (\d+)', wait) == ["1"], out.describe()
