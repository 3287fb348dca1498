"""Self-healing on the fleet (issue 25): aegis.rag.remediation on the scheduler host (fleet-lb) and Alertmanager's
self-healing receiver pointed at it (molecule/default/remediation.yml, variables in vars/remediation.yml; intervals
5 s, alert_for 10 s, rate windows 1m in the fleet). A game day in closed-loop mode under a client loop through the
load balancer: an API unit stopped, the Ollama model deleted and Qdrant stopped, one at a time; each alert fires,
Alertmanager sends it to the service, whose rulebook runs the dispatcher, which runs the alert's runbook over SSH;
each fault healed with no step of the test's (every API host ready, /chat with sources, the alert resolved), the
dispatcher's records and the runbooks' reports written, no escalation, scored in a report with its chart. A fault
the runbook may not repair (the API host whose runbook may not restart its unit) is attempted
remediation_max_attempts times, then escalated, and nothing more runs. The module's teardown removes the service,
the receiver and the SSH access: the fleet as converge.yml leaves it.

The seconds from fault to healed are recorded as properties (`--junitxml`) and printed (`-rP` shows them)."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import pytest
import yaml

from tests.fleet.conftest import FLEET_TEST, LB_TOOL, SCENARIO, VARS, hosts_of, http, load_json_report

pytestmark = FLEET_TEST
V = yaml.safe_load((SCENARIO / "vars" / "remediation.yml").read_text())
SCHEDULER = hosts_of("scheduler")[0]  # fleet-lb: also the load balancer and the monitoring server
API, UNREPAIRABLE = hosts_of("aegis_api")[0], V["fleet_remediation_unrepairable"]
LB_PORT = VARS["loadbalancer"]["loadbalancer_port"]
REPORTS, STATE = V["remediation_report_dir"], V["remediation_state_dir"]
ALERTMANAGER = "http://127.0.0.1:9093/api/v2/alerts"
ESCALATION_TIMEOUT_S = 600
assert UNREPAIRABLE in hosts_of("aegis_api") and UNREPAIRABLE != API

# The JSON files matching a glob whose mtime is at least an epoch, each with its path; one `podman exec`.
RECORDS = ("python3 -c 'import glob, json, os, sys\n"
           "out = []\n"
           "for p in sorted(glob.glob(sys.argv[1])):\n"
           "    if os.path.getmtime(p) >= float(sys.argv[2]):\n"
           "        out.append(dict(json.load(open(p)), _path=p))\n"
           "print(json.dumps(out))' ")


class SelfHealing:
    """The service on the fleet in one of its two modes: as shipped (fast=False), or with the rulebook's cool-down
    and Alertmanager's repeat cut to seconds (fast=True), so an unrepaired alert comes back within the test."""

    def __init__(self, fleet) -> None:
        self.fleet, self.fast = fleet, None

    def apply(self, fast: bool, reset: bool = False) -> None:
        if self.fast is fast and not reset:
            return
        # the role's second converge and check mode run only when the service is first set up
        extra = json.dumps({"fleet_remediation_fast": fast, "fleet_remediation_reset": reset,
                            "fleet_remediation_verify": self.fast is None})
        self.fleet.playbook(SCENARIO / "remediation.yml", f"--extra-vars={extra}", timeout_s=1800)
        self.fast = fast


@pytest.fixture(scope="module")
def healing(fleet):
    service = SelfHealing(fleet)
    try:
        service.apply(fast=False, reset=True)  # no attempts left over from an earlier run
        yield service
    finally:
        fleet.playbook(SCENARIO / "remediation.yml", "--extra-vars=fleet_remediation_state=absent", timeout_s=1800)


def epoch(host) -> int:
    return int(host.check_output("date +%s"))


def records(host, pattern: str, since: int) -> list[dict]:
    return json.loads(host.check_output(RECORDS + f"'{pattern}' {since}"))


def remediation_records(host, kind: str, since: int, limit: str) -> list[dict]:
    return [r for r in records(host, f"{REPORTS}/remediation-{kind}-*.json", since)
            if r.get("alert") == "AegisServiceDown" and r.get("limit") == limit]


def decisions(host, since: int, limit: str) -> list[str]:
    journal = host.file(f"{STATE}/decisions.jsonl")
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
    lines = [json.loads(line) for line in journal.content_string.splitlines()] if journal.exists else []
    return [d["decision"] for d in lines if d["at"] >= start and d.get("limit") == limit]


def firing(host, service: str, address: str) -> list[dict]:
    status, text = http(host, ALERTMANAGER)
    assert status == 200, text
    return [a for a in json.loads(text) if a["labels"].get("alertname") == "AegisServiceDown"
            and a["labels"].get("service") == service and address in a["labels"].get("instance", "")]


def unit_active(host, unit: str) -> bool:
    return host.run(f"systemctl is-active {unit}").stdout.strip() == "active"


def stop_unit(host, unit: str, timeout_s: float = 60) -> None:
    """`systemctl stop` once no job of the unit is queued (a stop issued while a start job runs is canceled, and the
    fault would not be injected); once only: a second stop could undo the repair under test."""
    deadline = time.monotonic() + timeout_s
    while unit in host.run("systemctl list-jobs --no-legend").stdout:
        assert time.monotonic() < deadline, f"a job of {unit} still queued after {timeout_s:g} s"
        time.sleep(1)
    stop = host.run(f"systemctl stop {unit}")
    assert not unit_active(host, unit), f"{unit} still active after systemctl stop: {stop.stderr}"


def diagnosis(lb, since: int, limit: str) -> str:
    journal = lb.run("journalctl --unit=aegis-remediation --lines=120 --no-pager --output=cat").stdout
    return (f"decisions for {limit}: {decisions(lb, since, limit)}\n"
            f"Alertmanager: {http(lb, ALERTMANAGER)[1][:3000]}\n"
            f"aegis-remediation's journal:\n{journal[-8000:]}")


def assert_every_api_host_in_the_pool(fleet, lb) -> None:
    """No API host held out of the load balancer's pool (admin maint or drain), else what the service ran for it:
    its decisions and the outcome records of its runs, with the runbook's output (the unit's stop waits for the
    runs in flight, so none is still going after a role run restarted it)."""
    for name in hosts_of("aegis_api"):
        server = fleet.lb_server(name)
        if server["admin"] != "ready":
            outcomes = [{key: r.get(key) for key in ("alert", "runbook", "generated_at", "outcome", "stdout_tail")}
                        for r in records(lb, f"{REPORTS}/remediation-outcome-*.json", 0) if r.get("limit") == name]
            raise AssertionError(f"{name} held out of the pool: {server}\noutcomes: {json.dumps(outcomes)[-6000:]}\n"
                                 f"{diagnosis(lb, 0, name)}")


# Ollama stopped on its host: tests/fleet/test_game_day.py (the game day's runbooks mode)
GAME_DAY_FAULTS = ["api_unit_stopped", "model_deleted", "qdrant_stopped"]


def test_a_closed_loop_game_day_heals_three_faults_with_no_step_of_its_own(fleet, healing, tmp_path,
                                                                           record_property):
    """The service as shipped: the rulebook's 10-minute cool-down keeps a still-firing alert, whose rate window has
    not yet let a repaired fault go, from reaching the dispatcher again. Fault to healed = seconds to detect +
    seconds to repair (alert resolved)."""
    healing.apply(fast=False)
    reports, lb = tmp_path / "reports", fleet.host(SCHEDULER)
    fleet.wait_ready()
    since = epoch(lb)
    fleet.playbook("playbooks/game_day.yml", "-e", "aegis_environment=test-fleet", "-e", "aegis_game_day_mode=closed_loop",
                   "-e", f"aegis_game_day_faults={','.join(GAME_DAY_FAULTS)}", "-e", f"aegis_report_dir={reports}",
                   timeout_s=1800)
    fleet.wait_ready()

    report = load_json_report(reports, "game_day")
    (section,) = report["hosts"].values()
    score, faults = section["data"]["score"], {f["fault"]: f for f in section["data"]["faults"]}
    assert report["status"] == "ok" and score["score"] == "3/3" and score["failed_faults"] == [], section
    assert section["data"]["mode"] == "closed_loop" and list(faults) == GAME_DAY_FAULTS
    for fault in faults.values():
        assert not fault["failed"] and fault["seconds_to_detect"] > 0 and fault["seconds_to_repair"] > 0, fault
    assert faults["api_unit_stopped"]["failed_requests"] == 0, faults["api_unit_stopped"]  # one API host of two
    chart = ET.parse(section["data"]["chart"]).getroot()
    assert chart.tag.endswith("svg") and "3/3" in "".join(chart.itertext())
    # the service ran each fault's runbook (the game day runs none in this mode); a stopped Qdrant fires
    # AegisServiceDown and QdrantQuerySuccessRateCritical, and either may be the one that repairs it
    ran = {r["runbook"] for r in records(lb, f"{REPORTS}/remediation-outcome-*.json", since)
           if r.get("alert") in {"AegisServiceDown", "OllamaModelGenerationFailure", "QdrantQuerySuccessRateCritical"}}
    assert {"aegis.rag.runbook_api_failure", "aegis.rag.runbook_llm", "aegis.rag.runbook_vector_db"} <= ran, ran
    assert records(lb, f"{REPORTS}/remediation-escalation-*.json", since) == []  # no repaired fault paged anyone
    # the API host's repair as the dispatcher recorded it: run, finished, ok, its runbook's report on that host
    (outcome,) = remediation_records(lb, "outcome", since, API)
    assert outcome["outcome"]["status"] == "ok" and outcome["runbook"] == "aegis.rag.runbook_api_failure", outcome
    assert decisions(lb, since, API)[:2] == ["run", "finished"], diagnosis(lb, since, API)
    assert any(API in r["hosts"] for r in records(lb, f"{REPORTS}/runbook_api_failure-*.json", since))
    server = fleet.lb_server(API)
    assert server["admin"] == "ready" and server["status"].startswith("UP"), server
    for name, fault in faults.items():
        healed = round(fault["seconds_to_detect"] + fault["seconds_to_repair"], 1)
        record_property(f"{name}_fault_to_healed_s", healed)
        print(f"self-healing {name}: detect {fault['seconds_to_detect']} s, repair {fault['seconds_to_repair']} s, "
              f"fault to healed {healed} s, failed {fault['failed_requests']}/{fault['answered']}")


def test_a_fault_no_runbook_repairs_escalates_after_the_attempts_and_runs_nothing_more(fleet, healing,
                                                                                      record_property):
    healing.apply(fast=True)
    lb, target = fleet.host(SCHEDULER), fleet.host(UNREPAIRABLE)
    address = fleet.address(UNREPAIRABLE)
    attempts = V["remediation_max_attempts"]
    assert_every_api_host_in_the_pool(fleet, lb)  # what an earlier test's faults left (seen: fleet-api-2 in maint)
    fleet.wait_ready()
    since = epoch(lb)
    try:
        stop_unit(target, "aegis-api")
        fault = time.monotonic()
        # each run fails (its runbook may not restart the unit); Alertmanager repeats the alert every few seconds
        # and the rulebook passes it on after its cool-down, until the dispatcher escalates, then again: it must
        # only escalate again
        while decisions(lb, since, UNREPAIRABLE).count("escalate") < 2:
            assert time.monotonic() - fault < ESCALATION_TIMEOUT_S, diagnosis(lb, since, UNREPAIRABLE)
            time.sleep(3)
        escalated_after = time.monotonic() - fault
        decided = decisions(lb, since, UNREPAIRABLE)
        outcomes = remediation_records(lb, "outcome", since, UNREPAIRABLE)
        escalations = remediation_records(lb, "escalation", since, UNREPAIRABLE)
        assert decided.count("run") == attempts, decided
        assert "run" not in decided[decided.index("escalate"):], decided
        assert [o["outcome"]["status"] for o in outcomes] == ["failed"] * attempts, outcomes
        assert len(escalations) >= 2 and escalations[0]["attempts"] == attempts, escalations
        assert escalations[0]["max_attempts"] == attempts and escalations[0]["last_outcome"], escalations[0]
        assert not unit_active(target, "aegis-api")  # nothing repaired it
        assert firing(lb, "aegis-api", address)
        journal = lb.run("journalctl --unit=aegis-remediation --no-pager --output=cat").stdout
        assert f"ESCALATION: {attempts} attempts for AegisServiceDown on {UNREPAIRABLE}" in journal
        record_property("fault_to_second_escalation_s", round(escalated_after, 1))
        print(f"self-healing unrepairable: fault to second escalation {escalated_after:.1f} s, decisions {decided}")
    finally:
        # the fleet restored: the unit started, the host back in the pool (the failed runs left it drained)
        target.run("systemctl start aegis-api")
        lb.run(f"{LB_TOOL} set aegis_api {UNREPAIRABLE} ready")
        lb.run(f"{LB_TOOL} --timeout 60 wait aegis_api {UNREPAIRABLE} up")
        fleet.wait_ready()
        deadline = time.monotonic() + 120
        while firing(lb, "aegis-api", address) and time.monotonic() < deadline:
            time.sleep(2)
    server = fleet.lb_server(UNREPAIRABLE)
    assert server["admin"] == "ready" and server["status"].startswith("UP"), server
    assert not firing(lb, "aegis-api", address)
