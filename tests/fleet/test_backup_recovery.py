"""backup, restore_drill and emergency_recovery on the fleet, run as an operator runs them (ansible-playbook, the
fleet's inventory, a variables file), S3 being a moto server started here on the podman bridge's gateway (the
machine's address on the hosts' network), on a free port, stopped at the end:
- backup uploads fleet-data's collections to qdrant/fleet-data/<collection>/<YYYYMMDD>/ with sha256 and point count;
  restore_drill restores it into a scratch collection, finds it equal to the live one ("match" in the reports),
  drops it; live only read;
- emergency_recovery for a day without backups stops at its first step, says how to continue, touches nothing
  (points, node snapshots, S3, the load balancer's pool, the units);
- aegis_docs_v2 dropped through Qdrant's API: emergency_recovery drains every API host, restores the same points,
  restarts the tiers in order, passes the health check, puts the API back; /chat through the load balancer answers
  from index.md. A restore is an action (its header): every run restores, so no second run here; the run that
  must change nothing is the day without backups.
The Qdrant and S3 calls run on the controller (aegis_runbook_delegate_to's default: the hosts have no boto3), the
hosts reached by address (podman's network resolves no names). The fleet is left as found: aegis_docs_v2 green with
index.md's points (after a failed recovery, recovered from the backup directly), every API host in the pool, the
node snapshots added here deleted."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest

from tests import stack
from tests.fleet.conftest import FLEET_TEST, GROUPS, LB_TOOL, VARS, hosts_of, http, load_json_report, wait_until

pytestmark = FLEET_TEST

LB, API, DATA, OLLAMA = hosts_of("loadbalancer")[0], hosts_of("aegis_api"), hosts_of("qdrant")[0], hosts_of("ollama")[0]
COLLECTION = "aegis_docs_v2"
BUCKET = "aegis-fleet-backups"
NO_BACKUP_DAY = "20000101"
# What emergency_recovery restarts, in its order (tiers qdrant, redis, ollama, aegis_api; one host at a time).
UNITS = [(DATA, "qdrant"), (DATA, "redis-server"), (OLLAMA, "ollama"), *((name, "aegis-api") for name in API)]
# A host's URL as the controller reaches it: its address, from the variables file (the hosts' names do not resolve).
URL = "http://{{ backup_test_addresses[inventory_hostname] }}:%d"


class Qdrant:
    """fleet-data's Qdrant REST API, called from the controller as the playbooks call it here."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"api-key": VARS["all"]["fleet_qdrant_api_key"]}, timeout=60)

    def points(self) -> list[dict]:
        """aegis_docs_v2's points (ids and payloads) in id order; [] when the collection is gone."""
        answer = self.http.post(f"/collections/{COLLECTION}/points/scroll",
                                json={"limit": 10000, "with_payload": True, "with_vector": False})
        if answer.status_code == 404:
            return []
        return sorted(answer.raise_for_status().json()["result"]["points"], key=lambda p: str(p["id"]))

    def status(self, name: str = COLLECTION) -> str | None:
        answer = self.http.get(f"/collections/{name}")
        return None if answer.status_code == 404 else answer.raise_for_status().json()["result"]["status"]

    def snapshots(self) -> set[str]:
        answer = self.http.get(f"/collections/{COLLECTION}/snapshots")
        return set() if answer.status_code == 404 else {s["name"] for s in answer.raise_for_status().json()["result"]}

    def ready(self) -> bool:
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def green(self) -> None:
        """Resume aegis_docs_v2 if grey (the Qdrant stand-in greys every collection at a restart, until its next
        update), then wait for green."""
        if self.status() == "grey":
            self.http.patch(f"/collections/{COLLECTION}", json={"optimizers_config": {}}).raise_for_status()
        wait_until(lambda: self.status() == "green", 60, f"{COLLECTION} green")


@dataclass
class Backup:
    report: dict
    key: str  # aegis_docs_v2's object in S3
    points: list[dict]  # aegis_docs_v2's points when it was taken

    @property
    def date(self) -> str:
        return self.key.split("/")[-2]


def run(fleet, folder: Path, playbook: str, variables: dict, expect_failure: bool = False, **extra) -> tuple[str, dict]:
    """playbooks/<playbook>.yml with its variables from a file; its output and JSON report. It must fail when
    expect_failure, else succeed."""
    reports, vars_file = folder / playbook, folder / f"{playbook}.json"
    vars_file.write_text(json.dumps({**variables, "aegis_report_dir": str(reports), **extra}))
    output = fleet.playbook(f"playbooks/{playbook}.yml", f"--extra-vars=@{vars_file}", expect_failure=expect_failure)
    return output, load_json_report(reports, playbook)


def rows(section: dict) -> dict[str, dict]:
    """The first table of a report section, as {first column: {column: value}}."""
    table = section["tables"][0]
    return {row[0]: dict(zip(table["columns"], row)) for row in table["rows"]}


def unit_starts(fleet) -> dict[str, str]:
    """Each unit emergency_recovery restarts -> its invocation id (a new one at every start)."""
    return {f"{host} {unit}": fleet.host(host).check_output(f"systemctl show -p InvocationID --value {unit}")
            for host, unit in UNITS}


def pool(fleet) -> dict[str, tuple[str, str]]:
    """HAProxy's view of each API host: (admin state, status)."""
    states = {name: fleet.lb_server(name) for name in API}
    return {name: (state["admin"], state["status"]) for name, state in states.items()}


def chat_sources(fleet) -> set[str]:
    """The documents /chat through the load balancer answers from."""
    status, text = http(fleet.host(LB), f"http://127.0.0.1:{VARS['loadbalancer']['loadbalancer_port']}/chat",
                        f"Content-Type=application/json,X-API-Key={VARS['all']['fleet_api_key']}",
                        json.dumps({"question": "What is Aegis?"}))
    assert status == 200, text
    return {source["document"] for source in json.loads(text)["sources"]}


def repair(fleet, qdrant: Qdrant, s3_store, backup: Backup) -> None:
    """Whatever a failed recovery left, repaired without the playbook: every unit it restarts running, the backup
    recovered straight into Qdrant when the points differ, the collection green, every API host in the pool."""
    for host, unit in UNITS:
        fleet.host(host).run(f"systemctl start {unit}")
    wait_until(qdrant.ready, 120, "Qdrant ready")
    if qdrant.points() != backup.points:
        snapshot = s3_store.get_object(Bucket=BUCKET, Key=backup.key)["Body"].read()
        qdrant.http.post(f"/collections/{COLLECTION}/snapshots/upload", params={"wait": "true", "priority": "snapshot"},
                         files={"snapshot": (backup.key.rsplit("/", 1)[-1], snapshot)}, timeout=300).raise_for_status()
    qdrant.green()
    for name in API:
        fleet.host(LB).run(f"{LB_TOOL} set aegis_api {name} ready")
    fleet.wait_ready(timeout_s=180)


@pytest.fixture(scope="module")
def s3_store(fleet, tmp_path_factory) -> Iterator:
    """moto on the bridge's gateway (the default route of the hosts: the machine's address on podman's network),
    a free port there, with the bucket; a boto3 client of it. Stopped at the end."""
    gateway = fleet.host(DATA).check_output("ip -4 route show default").split()[2]
    with socket.socket() as sock:
        sock.bind((gateway, 0))
        port = sock.getsockname()[1]
    keys = {"AWS_ACCESS_KEY_ID": stack.S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": stack.S3_SECRET_KEY}
    moto = stack.Process("s3-bridge", lambda p: [stack.python(), "-m", "moto.server", "-H", gateway, "-p", str(p)],
                         ready=lambda p: stack.http_ready(f"http://{gateway}:{p}/moto-api/data.json"),
                         url_of=lambda p: f"http://{gateway}:{p}", log_path=tmp_path_factory.mktemp("moto") / "s3.log",
                         port=port, env=keys, die_with_parent=True)
    moto.start()
    try:
        client = boto3.client("s3", endpoint_url=moto.url, region_name=stack.S3_REGION,
                              aws_access_key_id=stack.S3_ACCESS_KEY, aws_secret_access_key=stack.S3_SECRET_KEY)
        client.create_bucket(Bucket=BUCKET)
        yield client
    finally:
        moto.stop()


@pytest.fixture(scope="module")
def playbook_vars(fleet, s3_store) -> dict:
    """What every run gets, as an operator's variables file: the S3 store, each host's URLs by address."""
    return {"aegis_backup_s3_bucket": BUCKET, "aegis_backup_s3_endpoint_url": s3_store.meta.endpoint_url,
            "aegis_backup_s3_region": stack.S3_REGION, "aegis_backup_s3_access_key": stack.S3_ACCESS_KEY,
            "aegis_backup_s3_secret_key": stack.S3_SECRET_KEY,
            "backup_test_addresses": {name: fleet.address(name) for name in GROUPS},
            "aegis_runbook_qdrant_url": URL % 6333, "aegis_runbook_ollama_url": URL % 11434,
            "aegis_runbook_api_url": URL % 8910}


@pytest.fixture(scope="module")
def qdrant(fleet) -> Qdrant:
    return Qdrant(f"http://{fleet.address(DATA)}:6333")


@pytest.fixture(scope="module")
def backup(fleet, playbook_vars, qdrant, tmp_path_factory) -> Iterator[Backup]:
    """backup.yml run once: today's backup of fleet-data's collections. At the end, the node snapshots that this
    module's runs added (backups, safety snapshots, recovered uploads) are deleted."""
    snapshots, points = qdrant.snapshots(), qdrant.points()
    assert points, f"{COLLECTION} on {DATA} has no points: the fleet is not as converge.yml leaves it"
    _, report = run(fleet, tmp_path_factory.mktemp("backup"), "backup", playbook_vars)
    yield Backup(report, rows(report["hosts"][DATA])[COLLECTION]["key"], points)
    for name in qdrant.snapshots() - snapshots:
        qdrant.http.delete(f"/collections/{COLLECTION}/snapshots/{name}")
    # the stand-in keeps an uploaded snapshot in the target's folder, which outlives the drill's scratch collection
    fleet.host(DATA).run(f"rm -rf /var/lib/qdrant/snapshots/{COLLECTION}_restore_drill")


def test_the_backup_is_in_s3_and_the_restore_drill_matches_it_leaving_the_live_collection_alone(
        fleet, playbook_vars, qdrant, s3_store, backup, tmp_path):
    section = backup.report["hosts"][DATA]
    assert backup.report["status"] == "changed" and section["findings"] == [], section
    row = rows(section)[COLLECTION]
    assert row["result"] == "uploaded" and row["points"] == len(backup.points), row
    assert re.fullmatch(rf"qdrant/{DATA}/{COLLECTION}/\d{{8}}/{COLLECTION}-\S+\.snapshot", backup.key), backup.key
    metadata = s3_store.head_object(Bucket=BUCKET, Key=backup.key)["Metadata"]
    assert metadata["points-count"] == str(len(backup.points)) and metadata["sha256"].startswith(row["sha256"])

    _, report = run(fleet, tmp_path, "restore_drill", playbook_vars)
    section = report["hosts"][DATA]
    assert report["status"] == "ok" and section["findings"] == [], section
    drill = next(d for d in section["data"]["drills"] if d["collection"] == COLLECTION)
    assert drill["backup"] == backup.key and drill["differences"] == [] and drill["sample"] > 0, drill
    assert drill["backup_points"] == drill["restored_points"] == drill["live_points"] == len(backup.points), drill
    assert rows(section)[COLLECTION]["result"] == "match", rows(section)
    markdown = sorted((tmp_path / "restore_drill").glob("restore_drill-*.md"))[-1].read_text()
    assert f"| {COLLECTION} |" in markdown and "| match |" in markdown, markdown
    assert f"dropped {COLLECTION}_restore_drill" in section["actions"]
    assert qdrant.status(f"{COLLECTION}_restore_drill") is None, "the scratch collection was left behind"
    assert qdrant.points() == backup.points


def test_a_day_without_backups_stops_before_touching_anything(
        fleet, playbook_vars, qdrant, s3_store, backup, tmp_path):
    def state() -> dict:
        keys = sorted(o["Key"] for o in s3_store.list_objects_v2(Bucket=BUCKET).get("Contents", []))
        return {"points": qdrant.points(), "status": qdrant.status(), "snapshots": qdrant.snapshots(), "s3": keys,
                "pool": pool(fleet), "units": unit_starts(fleet)}

    before = state()
    output, report = run(fleet, tmp_path, "emergency_recovery", playbook_vars, expect_failure=True,
                         backup_date=NO_BACKUP_DAY)
    data, local = report["hosts"][DATA], report["hosts"]["localhost"]
    assert report["status"] == "failed" and data["summary"].startswith("stopped at find: "), data
    assert f"no backup of {NO_BACKUP_DAY} under s3://{BUCKET}/qdrant/{DATA}/" in data["summary"], data["summary"]
    assert "nothing was drained, restored or deleted" in data["summary"]
    assert local["actions"] == [] and local["data"]["drained"] == [], local
    assert f"-e backup_date={NO_BACKUP_DAY} -e aegis_emergency_start_at=drain" in local["data"]["continue"]
    assert "continue with: ansible-playbook -i " in " ".join(local["findings"]), local["findings"]
    assert "emergency_recovery failed" in output
    assert state() == before


def test_emergency_recovery_restores_a_dropped_collection_and_puts_the_api_back(
        fleet, playbook_vars, qdrant, s3_store, backup, tmp_path):
    started = unit_starts(fleet)
    try:
        qdrant.http.delete(f"/collections/{COLLECTION}").raise_for_status()
        assert qdrant.status() is None

        _, report = run(fleet, tmp_path, "emergency_recovery", playbook_vars, backup_date=backup.date)
        data, local = report["hosts"][DATA], report["hosts"]["localhost"]
        assert report["status"] == "changed", (data, local)
        restore = next(r for r in data["data"]["restores"] if r["item"] == COLLECTION)
        assert restore["key"] == backup.key, restore
        assert restore["points_count"] == restore["expected_points_count"] == len(backup.points), restore
        assert local["data"]["drained"] == API and local["actions"][0] == f"drain {', '.join(API)} on {LB}", local
        assert [a for a in local["actions"] if a.startswith("restarted ")] == [
            f"restarted {unit} on {host}, ready" for host, unit in UNITS], local["actions"]
        checks = local["tables"][0]["rows"]  # [check, status, detail, url]: /health, /ready, /chat per API host, /readyz
        assert len(checks) == 3 * len(API) + 1 and {c[1] for c in checks} == {"ok"}, checks
        assert f"verified: {len(checks)} health checks ok" in local["actions"]
        assert local["actions"][-1] == f"put {', '.join(API)} back on the load balancers", local["actions"]
        restarted = unit_starts(fleet)
        assert all(restarted[unit] != started[unit] for unit in started), (started, restarted)

        # the stand-in greys every collection at a restart (Qdrant does when work pends): the recovery resumed it
        assert f"resumed {COLLECTION} on {DATA}: green" in local["actions"], local["actions"]
        assert qdrant.status() == "green"
        assert qdrant.points() == backup.points
        fleet.wait_ready(timeout_s=60)
        assert pool(fleet) == dict.fromkeys(API, ("ready", "UP"))
        assert chat_sources(fleet) == {"index.md"}
    finally:
        repair(fleet, qdrant, s3_store, backup)
