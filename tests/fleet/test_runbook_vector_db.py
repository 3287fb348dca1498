"""runbook_vector_db on the fleet's data host, run as an operator runs it (ansible-playbook with the fleet's inventory,
its variables from a file as molecule/default/runbooks.yml sets them: the Qdrant calls from the data host itself,
restarting a stuck peer allowed, the Qdrant API key from the inventory).

Each test breaks one thing on the Qdrant stand-in (tests/doubles/qdrant.py behind molecule/standins/qdrant.py), runs
the runbook, asserts the fleet and the report, and restores what it broke even when it fails:
- collections grey (Qdrant restarted with `systemctl restart qdrant`: the stand-in comes back with every stored
  collection grey, as a restarted Qdrant with pending optimisations does): each grey collection resumed and green,
  aegis_docs_v2 answering a search, Qdrant itself not restarted (it was ready; the runbook may only restart a stuck
  peer); a second run changes nothing;
- searches slower than the manual's 100 ms P95 target (a /_faults rule delays every points/query by 300 ms) under a
  client loop through the load balancer, judged from the fleet's Prometheus (the monitoring role's recording rule
  aegis:vector_search_duration_seconds:p95, a 1-minute rate window on the fleet): the host is "degraded", the report
  gives the P95 figure, nothing is changed (changed=0: a second run has nothing to change either) and no client
  request fails.
The Qdrant API key is in no report."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

from tests.fleet.conftest import FLEET_TEST, VARS, hosts_of, http, load_json_report, recap, wait_until
from tests.fleet.test_model_update import client_loop

pytestmark = FLEET_TEST

RUNBOOK = "playbooks/runbook_vector_db.yml"
LB, DATA = hosts_of("loadbalancer")[0], hosts_of("qdrant")[0]
COLLECTION = "aegis_docs_v2"  # the API's (aegis_api_collection)
QDRANT = "http://127.0.0.1:6333"  # as seen on the data host
QDRANT_KEY = VARS["all"]["fleet_qdrant_api_key"]
PROMETHEUS = "http://127.0.0.1:9090"  # as seen on the load balancer host
P95_RULE = "aegis:vector_search_duration_seconds:p95"
P95_TARGET_S = 0.1  # the manual's, the runbook's default (aegis_vector_db_search_p95_max)
# Every search (the API's and the runbook's probe) 300 ms late: in the (0.25, 0.5] bucket of the API's histogram
SLOW_SEARCH = {"path": "^/collections/[^/]+/points/query$", "method": "POST", "latency_ms": 300}
# Every collection's status on the data host, as {name: status}; with `resume`, each grey one resumed first (PATCH
# {"optimizers_config": {}}: the stand-in's next update, which changes no setting).
COLLECTIONS = """
import json, sys, urllib.request as u
def call(path, body=None):
    request = u.Request("http://127.0.0.1:6333" + path, data=body, method="PATCH" if body else "GET",
                        headers={"api-key": sys.argv[1], "Content-Type": "application/json"})
    return json.load(u.urlopen(request, timeout=30))["result"]
status = {c["name"]: call("/collections/" + c["name"])["status"] for c in call("/collections")["collections"]}
if sys.argv[2:] == ["resume"]:
    for name in [n for n, s in status.items() if s == "grey"]:
        call("/collections/" + name, b'{"optimizers_config": {}}')
        status[name] = call("/collections/" + name)["status"]
print(json.dumps(status))
"""


def run_runbook(fleet, tmp_path: Path, name: str, **variables) -> tuple[str, dict, dict, str]:
    """The runbook with molecule/default/runbooks.yml's variables (and `variables`); its output, JSON report, the
    data host's section and the Markdown report."""
    reports = tmp_path / name
    vars_file = tmp_path / f"{name}.json"
    vars_file.write_text(json.dumps({"aegis_runbook_delegate_to": "{{ inventory_hostname }}",
                                     "aegis_runbook_qdrant_url": QDRANT, "aegis_vector_db_restart_peers": True,
                                     "aegis_report_dir": str(reports), **variables}))
    output = fleet.playbook(RUNBOOK, f"--extra-vars=@{vars_file}")
    report = load_json_report(reports, "runbook_vector_db")
    markdown = sorted(reports.glob("runbook_vector_db-*.md"))[-1].read_text()
    return output, report, report["hosts"][DATA], markdown


def collections(fleet, resume: bool = False) -> dict[str, str]:
    script = base64.b64encode(COLLECTIONS.encode()).decode()
    return json.loads(fleet.host(DATA).check_output(
        f"echo {script} | base64 -d | python3 - {QDRANT_KEY}{' resume' if resume else ''}"))


def faults(fleet, rule: dict | None = None) -> int:
    """Add a fault rule to the Qdrant stand-in (none: clear them all); the HTTP status (0: Qdrant did not answer)."""
    if rule is None:
        return http(fleet.host(DATA), f"{QDRANT}/_faults", "", "", "DELETE")[0]
    return http(fleet.host(DATA), f"{QDRANT}/_faults", "Content-Type=application/json", json.dumps(rule))[0]


def invocation(fleet) -> str:
    """The qdrant unit's invocation id: a new one at every start."""
    return fleet.host(DATA).check_output("systemctl show --property=InvocationID --value qdrant")


def search_p95(fleet) -> float | None:
    """The fleet's Prometheus's current value of the search P95 recording rule (None: no value, no searches)."""
    status, text = http(fleet.host(LB), f"{PROMETHEUS}/api/v1/query?query={P95_RULE}")
    result = json.loads(text)["data"]["result"] if status == 200 else []
    value = float(result[0]["value"][1]) if result else math.nan
    return None if math.isnan(value) or math.isinf(value) else value


def table(host: dict, title: str) -> list[dict]:
    found = [t for t in host["tables"] if t["title"] == title]
    assert found, f"no table {title!r} in {[t['title'] for t in host['tables']]}"
    return [dict(zip(found[0]["columns"], row)) for row in found[0]["rows"]]


def problems(host: dict) -> list[str]:
    """The findings but the warnings (disk and memory are this machine's: limits it may not meet)."""
    return [finding for finding in host["findings"] if not finding.startswith("warning: ")]


def assert_no_secret(output: str, report: dict, markdown: str) -> None:
    assert QDRANT_KEY not in output and QDRANT_KEY not in json.dumps(report) and QDRANT_KEY not in markdown, \
        "the Qdrant API key is in the report"


def restore(fleet) -> None:
    """Qdrant as the tests found it: running, no fault rule, every collection green; every API host ready and in the
    pool (a Qdrant restart opens their circuit breakers for a while)."""
    data = fleet.host(DATA)
    if faults(fleet) != 200:  # not answering: started again (a no-op when it is only starting)
        data.run("systemctl start qdrant")
        wait_until(lambda: http(data, f"{QDRANT}/readyz")[0] == 200, 120, "Qdrant ready")
        faults(fleet)
    wait_until(lambda: set(collections(fleet, resume=True).values()) <= {"green"}, 60, "every collection green")
    fleet.wait_ready(timeout_s=180)


def test_grey_collections_are_resumed_to_green_and_a_second_run_changes_nothing(fleet, tmp_path):
    data = fleet.host(DATA)
    try:
        data.check_output("systemctl restart qdrant")
        wait_until(lambda: http(data, f"{QDRANT}/readyz")[0] == 200, 120, "Qdrant ready after its restart")
        before = collections(fleet)
        grey = sorted(name for name, status in before.items() if status == "grey")
        assert COLLECTION in grey, before
        started = invocation(fleet)

        output, report, host, markdown = run_runbook(fleet, tmp_path, "heal")
        assert host["status"] == "changed" and problems(host) == [], host
        resumed = sorted(action.removeprefix("resume the grey collection ") for action in host["actions"]
                         if action.startswith("resume the grey collection "))
        assert resumed == grey, host["actions"]
        assert host["summary"].startswith(f"{len(before)} collections, {len(grey)} repaired; cluster disabled, all "
                                          "green and answering"), host["summary"]
        rows = {row["collection"]: row for row in table(host, "Collections before -> after")}
        assert rows[COLLECTION]["status"] == "grey -> green", rows[COLLECTION]
        probes = {row["collection"]: row for row in table(host, "Search probe")}
        assert (probes[COLLECTION]["HTTP status"], probes[COLLECTION]["hits"]) == (200, 1), probes
        assert all(row["HTTP status"] == 200 for row in probes.values()), probes
        [facts] = table(host, "Host")
        assert (facts["readyz"], facts["cluster"]) == (200, "disabled"), facts
        assert host["data"]["cluster"] == {"status": "disabled"} and host["data"]["red"] == []
        assert recap(output)[DATA]["changed"] >= 1, recap(output)
        assert set(collections(fleet).values()) == {"green"}
        assert invocation(fleet) == started  # ready: resumed, not restarted (restarting a stuck peer is allowed)
        assert_no_secret(output, report, markdown)

        output, report, host, _ = run_runbook(fleet, tmp_path, "again")
        assert (host["status"], host["actions"], problems(host)) == ("ok", [], []), host
        assert all(counts["changed"] == 0 for counts in recap(output).values()), recap(output)
        assert invocation(fleet) == started
    finally:
        restore(fleet)


def test_slow_searches_are_degraded_with_the_p95_from_prometheus(fleet, tmp_path):
    prometheus = f"http://{fleet.address(LB)}:9090"  # as the data host reaches it
    try:
        collections(fleet, resume=True)  # nothing to repair but the slowness (a restart elsewhere leaves them grey)
        assert faults(fleet, SLOW_SEARCH) == 200
        with client_loop(fleet) as loop:
            # the recording rule over the fleet's 1-minute window: past the target once the slow searches weigh in
            wait_until(lambda: (search_p95(fleet) or 0) > P95_TARGET_S, 120,
                       f"{P95_RULE} over {P95_TARGET_S} s on Prometheus")
            output, report, host, markdown = run_runbook(fleet, tmp_path, "slow",
                                                         aegis_runbook_prometheus_url=prometheus)
        assert loop["failed"] == 0 and loop["answered"] > 0, loop  # slower, every request answered

        assert report["counts"] == {"degraded": 1}, report["counts"]
        assert host["status"] == "degraded" and host["actions"] == [], host
        recent = host["data"]["recent_searches"]
        assert recent["source"] == "prometheus" and recent["p95_s"] > P95_TARGET_S, recent
        figure = f"{recent['p95_s']:.3g}"
        finding = f"degraded: search P95 {figure} s over the 0.1 s target (the API, Prometheus, last 1m)"
        assert problems(host) == [finding], host["findings"]
        assert host["summary"].endswith("; " + finding.removeprefix("degraded: ")), host["summary"]
        [facts] = table(host, "Host")
        assert (facts["API search P95"], facts["API searches failed"]) == (f"{figure} s", "0%"), facts
        assert facts["measured over"] == "the API, Prometheus, last 1m", facts
        assert all(row["HTTP status"] == 200 for row in table(host, "Search probe"))  # slow, answering
        assert all(counts["changed"] == 0 for counts in recap(output).values()), recap(output)
        assert "vector database runbook failed" not in output  # a degradation is reported, the run does not fail
        assert_no_secret(output, report, markdown)
    finally:
        restore(fleet)  # the fault rule cleared first
