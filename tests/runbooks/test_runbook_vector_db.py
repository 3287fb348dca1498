"""playbooks/runbook_vector_db.yml against the Qdrant double: a grey collection healed (check mode first:
nothing changed), a second run changing nothing, a red collection failing with the rebuild command in
the report, a peer that is down or whose consensus stopped failing with the reason when it may not be
restarted, and disk and memory warnings.
The API's recent searches against the manual's targets (P95 100 ms, 99.5 % success): from two reads of a /metrics
page (a stand-in whose counters move between the reads: only the searches in between count, not the API's past),
or from a real Prometheus (backfilled with the monitoring role's recording rules) when there is one, falling back
to /metrics when Prometheus does not answer; slower or failing more than the targets, the host is "degraded" and
nothing is changed for it.
Not covered here (no systemd on the test hosts): the restart of a stuck peer itself."""

from __future__ import annotations

import re
import socket
import time

import pytest

from tests.collection.qdrant_helpers import Rest

pytestmark = pytest.mark.slow

MANUAL = {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000, "default_segment_number": 0}
METRIC = "aegis_vector_search_duration_seconds"
# disk and memory are the test machine's own: limits it always meets, so the findings depend on the double only
MACHINE_LIMITS = {"aegis_vector_db_disk_max_percent": 100, "aegis_vector_db_memory_min_percent": 0}
WINDOW = {"aegis_runbook_latency_window": 1}  # seconds between the two reads of /metrics
BOUNDS = ("0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "+Inf")


def histogram(buckets: dict[str, int], total_seconds: float, failed: int = 0) -> str:
    """An Aegis API /metrics page as prometheus_client writes it: the search histogram from the cumulative counts
    of some of its buckets (each bucket not given holds what the one below it holds), and the search counters."""
    counts, last = {}, 0
    for le in BOUNDS:
        last = buckets.get(le, last)
        counts[le] = last
    lines = [f"# HELP {METRIC} Vector store query time", f"# TYPE {METRIC} histogram"]
    lines += [f'{METRIC}_bucket{{le="{le}"}} {float(n)}' for le, n in counts.items()]
    lines += [f"{METRIC}_count {float(counts['+Inf'])}", f"{METRIC}_sum {total_seconds}", f"{METRIC}_created 1.7e9",
              "# TYPE aegis_vector_searches_total counter", f"aegis_vector_searches_total {float(counts['+Inf'])}",
              "aegis_vector_searches_created 1.7e9", "# TYPE aegis_vector_search_failures_total counter",
              f"aegis_vector_search_failures_total {float(failed)}"]
    return "\n".join(lines) + "\n"








def table(host: dict, title: str) -> list[dict]:
    found = [t for t in host["tables"] if t["title"] == title]
    assert found, f"no table {title!r} in {[t['title'] for t in host['tables']]}"
    return [dict(zip(found[0]["columns"], row)) for row in found[0]["rows"]]


def test_grey_collection_healed_then_nothing_to_do(run_playbook, start_double, tmp_path, api_metrics):
    service = start_double("qdrant", data_dir=tmp_path / "grey-data")
    rest = Rest(service)
    rest.create("docs", optimizers_config=MANUAL)
    rest.upsert("docs", range(1, 11))
    rest.create("notes", optimizers_config={**MANUAL, "deleted_threshold": 0.5})
    rest.upsert("notes", range(1, 4))
    service.stop()
    service.start()  # the double comes back with every collection grey, as a restarted Qdrant can
    assert rest.info("docs")["status"] == rest.info("notes")["status"] == "grey"

    dry = run_playbook("runbook_vector_db", hosts={"qdrant-a": service}, check=True, **MACHINE_LIMITS)
    assert rest.info("docs")["status"] == "grey"
    assert rest.info("notes")["config"]["optimizer_config"]["deleted_threshold"] == 0.5
    host = dry.host()
    assert host["status"] == "would change", dry.describe()
    assert host["actions"] == ["would resume the grey collection docs", "would resume the grey collection notes",
                               'would set the optimizers of notes: {"deleted_threshold": 0.2}']
    assert host["findings"] == []
    assert "check mode: nothing was changed" in dry.markdown

    healed = run_playbook("runbook_vector_db", hosts={"qdrant-a": service}, **MACHINE_LIMITS)
    assert rest.info("docs")["status"] == rest.info("notes")["status"] == "green"
    assert rest.info("notes")["config"]["optimizer_config"]["deleted_threshold"] == 0.2
    host = healed.host()
    assert host["status"] == "changed" and host["findings"] == [], healed.describe()
    assert host["actions"] == ["resume the grey collection docs", "resume the grey collection notes",
                               'set the optimizers of notes: {"deleted_threshold": 0.2}']
    collections = {row["collection"]: row for row in table(host, "Collections before -> after")}
    assert collections["docs"]["status"] == "grey -> green" and collections["docs"]["points_count"] == "10"
    searches = {row["collection"]: row for row in table(host, "Search probe")}
    assert searches["docs"]["HTTP status"] == 200 and searches["docs"]["hits"] == 1
    assert searches["notes"]["HTTP status"] == 200
    assert host["data"]["cluster"] == {"status": "disabled"}  # the double, like a single-node Qdrant
    [facts] = table(host, "Host")
    assert facts["API search P95"] == "not measured" and facts["measured over"] == "no Prometheus or API metrics URL"

    # healthy now, but the searches between the two reads of the API's /metrics are slow (the API's past was
    # fast): degraded, named, and still no change
    slow = api_metrics(histogram({"0.005": 10000}, 30.0),
                       histogram({"0.005": 10000, "0.1": 10010, "0.25": 10040, "0.5": 10080, "1.0": 10100}, 82.0))
    again = run_playbook("runbook_vector_db", hosts={"qdrant-a": service}, aegis_vector_db_api_metrics_url=slow,
                         **WINDOW, **MACHINE_LIMITS)
    host = again.host()
    assert "changed=0" in again.stdout and "qdrant-a" in again.stdout
    assert host["status"] == "degraded" and host["actions"] == [], again.describe()
    assert again.report["counts"] == {"degraded": 1}
    # rank 95 of the window's 100 searches: in (0.5, 1.0], which holds 20: 0.5 + 0.5 * 15/20
    assert host["findings"] == ["degraded: search P95 0.875 s over the 0.1 s target (the API, /metrics, 100 searches "
                                "in 1 s)"], host["findings"]
    assert "search P95 0.875 s over the 0.1 s target" in host["summary"]
    [facts] = table(host, "Host")
    assert facts["API search P95"] == "0.875 s" and facts["API searches failed"] == "0%"
    assert facts["measured over"] == "the API, /metrics, 100 searches in 1 s"
    assert facts["readyz"] == 200 and facts["cluster"] == "disabled"
    assert api_metrics.reads[slow] == 2
    # disk and memory come from the host's own facts (here the test machine): read, not invented
    assert re.fullmatch(r"\d+(\.\d+)?% of /.*", facts["disk used"]), facts
    assert 0 < host["data"]["memory"]["available_percent"] <= 100


def test_fast_search_and_resource_warnings(run_playbook, start_double, api_metrics):
    service = start_double("qdrant")
    rest = Rest(service)
    rest.create("docs", optimizers_config=MANUAL)
    rest.upsert("docs", range(1, 4))
    # the API's past was slow (the P95 of its totals is over 1 s); the searches between the reads are fast
    fast = api_metrics(histogram({"0.01": 100, "+Inf": 1000}, 3000.0),
                       histogram({"0.01": 190, "0.025": 199, "0.05": 200, "+Inf": 1100}, 3000.8))
    # limits no machine meets: disk and memory warnings, which report but neither fail nor change anything
    out = run_playbook("runbook_vector_db", hosts={"qdrant-a": service}, aegis_vector_db_api_metrics_url=fast,
                       aegis_vector_db_disk_max_percent=0, aegis_vector_db_memory_min_percent=100, **WINDOW)
    host = out.host()
    assert host["status"] == "ok" and host["actions"] == [], out.describe()
    disk, memory = host["findings"]
    assert re.fullmatch(r"warning: disk of /var/lib/qdrant/storage \(/.*\) is [\d.]+% used, [\d.]+ GB free", disk)
    assert re.fullmatch(r"warning: only [\d.]+% of \d+ MB memory available", memory)
    [facts] = table(host, "Host")
    # rank 95 of 100: in (0.01, 0.025], which holds 9: 0.01 + 0.015 * 5/9
    assert facts["API search P95"] == "0.0183 s" and facts["API searches failed"] == "0%"
    assert host["data"]["recent_searches"]["searches"] == 100
    assert host["data"]["recent_searches"]["p95_s"] == pytest.approx(0.01 + 0.015 * 5 / 9)


def test_failing_searches_degrade(run_playbook, start_double, api_metrics):
    """Fast, but 2 of the window's 100 searches failed: over the manual's 0.5 %; a restart of the API between the
    reads (its counters start again) counts the new process only."""
    service = start_double("qdrant")
    Rest(service).create("docs", optimizers_config=MANUAL)
    failing = api_metrics(histogram({"0.01": 5000}, 20.0, failed=1),
                          histogram({"0.01": 5100}, 20.4, failed=3))
    out = run_playbook("runbook_vector_db", hosts={"qdrant-a": service}, aegis_vector_db_api_metrics_url=failing,
                       **WINDOW, **MACHINE_LIMITS)
    host = out.host()
    assert host["status"] == "degraded" and host["actions"] == [], out.describe()
    assert out.report["status"] == "degraded" and out.report["counts"] == {"degraded": 1}, out.report
    assert host["findings"] == ["degraded: 2% of searches failed, over the 0.5% target (the API, /metrics, 100 "
                                "searches in 1 s)"]
    [facts] = table(host, "Host")
    assert facts["API searches failed"] == "2%" and facts["API search P95"] == "0.00975 s"

    restarted = api_metrics(histogram({"0.01": 5000}, 20.0, failed=1), histogram({"0.01": 40}, 0.1))
    out = run_playbook("runbook_vector_db", hosts={"qdrant-a": service}, aegis_vector_db_api_metrics_url=restarted,
                       **WINDOW, **MACHINE_LIMITS)
    host = out.host()
    assert host["status"] == "ok" and host["findings"] == [], out.describe()
    assert host["data"]["recent_searches"]["searches"] == 40


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_prometheus_first_then_metrics_when_it_does_not_answer(run_playbook, start_double, api_metrics,
                                                               prometheus_with):
    service = start_double("qdrant")
    Rest(service).create("docs", optimizers_config=MANUAL)
    now = int(time.time())
    # the monitoring role's recording rules over the last minutes: P95 250 ms, 99.9 % success
    prom = prometheus_with({"aegis:vector_search_duration_seconds:p95": [(now - 120, 0.3), (now - 30, 0.25)],
                            "aegis:vector_search_success:ratio_rate5m": [(now - 120, 1.0), (now - 30, 0.999)]})
    fast = api_metrics(histogram({"0.01": 10}, 0.01), histogram({"0.01": 110}, 0.11))
    # the rules' window as the monitoring role's variable sets it (5m when empty: test_runbook_llm.py)
    out = run_playbook("runbook_vector_db", hosts={"qdrant-a": service}, aegis_runbook_prometheus_url=prom,
                       aegis_vector_db_api_metrics_url=fast, monitoring_rate_window="2m", **WINDOW, **MACHINE_LIMITS)
    host = out.host()
    assert host["status"] == "degraded", out.describe()
    assert host["findings"] == ["degraded: search P95 0.25 s over the 0.1 s target (the API, Prometheus, last 2m)"]
    [facts] = table(host, "Host")
    assert facts["API searches failed"] == "0.1%" and facts["measured over"] == "the API, Prometheus, last 2m"
    assert fast not in api_metrics.reads  # Prometheus answered: /metrics is not read

    # the inventory's maintenance Prometheus is the default; it does not answer: /metrics, and a warning
    down = closed_port_url()
    out = run_playbook("runbook_vector_db", hosts={"qdrant-a": service}, aegis_maintenance_prometheus_url=down,
                       aegis_vector_db_api_metrics_url=fast, **WINDOW, **MACHINE_LIMITS)
    host = out.host()
    assert host["status"] == "ok", out.describe()
    [warning] = host["findings"]
    assert warning.startswith(f"warning: recent searches not fully measured: Prometheus at {down}: "), warning
    assert "Connection refused" in warning
    [facts] = table(host, "Host")
    assert facts["measured over"] == "the API, /metrics, 100 searches in 1 s" and facts["API search P95"] == "0.00975 s"
def test_red_collection_fails_with_the_rebuild_command(run_playbook, start_double):
    service = start_double("qdrant")
    rest = Rest(service)
    rest.create("docs", optimizers_config={**MANUAL, "deleted_threshold": 0.5})
    rest.upsert("docs", range(1, 6))
    rest.create("notes", optimizers_config=MANUAL)
    # the double's fault rules answer GET /collections/docs as a Qdrant whose optimizer failed on a damaged
    # segment does: status red, optimizer_status {"error": ...}
    damaged = {**rest.info("docs"), "status": "red",
               "optimizer_status": {"error": "Service internal error: segment 3 is corrupted"}}
    service.faults.add(path="^/collections/docs$", method="GET", error_rate=1.0, status=200,
                       body={"result": damaged, "status": "ok", "time": 0.001})

    out = run_playbook("runbook_vector_db", hosts={"qdrant-a": service}, expect_failure=True,
                       aegis_backup_s3_bucket="aegis-backups", **MACHINE_LIMITS)
    host = out.host()
    assert host["status"] == "failed" and out.report["status"] == "failed"
    [finding] = host["findings"]
    assert finding.startswith("collection docs is red (optimizer: error: Service internal error: segment 3")
    assert "playbooks/emergency_recovery.yml --limit qdrant-a -e backup_date=<YYYYMMDD>" in finding
    assert (f'aegis.rag.qdrant_restore -a "qdrant_url={service.url} collection=docs bucket=aegis-backups '
            'prefix=qdrant/qdrant-a force=true"') in finding
    assert "aegis.rag.qdrant_restore" in out.markdown
    assert host["actions"] == []  # a damaged collection is not touched
    service.faults.clear()
    assert rest.info("docs")["config"]["optimizer_config"]["deleted_threshold"] == 0.5
    assert {row["collection"] for row in table(host, "Search probe")} == {"docs", "notes"}
    assert "vector database runbook failed on qdrant-a" in out.stdout


def test_stuck_peer_not_restarted_fails_with_the_reason(run_playbook, start_double):
    healthy, stuck = start_double("qdrant"), start_double("qdrant")
    Rest(healthy).create("docs", optimizers_config=MANUAL)
    stuck.stop()

    out = run_playbook("runbook_vector_db", hosts={"qdrant-a": healthy, "qdrant-b": stuck}, expect_failure=True,
                       **MACHINE_LIMITS)
    assert out.host("qdrant-a")["status"] == "ok"
    host = out.host("qdrant-b")
    assert host["status"] == "failed" and host["data"]["ready_status"] == -1
    assert host["summary"].startswith("stopped at 'Stop when the peer is still stuck': Qdrant at")
    assert "/readyz unreachable" in host["summary"]
    assert "restarting is not allowed (set aegis_vector_db_restart_peers=true)" in host["summary"]
    assert host["actions"] == []

    # allowed, but this host has no qdrant unit (a test double, not the qdrant role's service): not restarted
    allowed = run_playbook("runbook_vector_db", hosts={"qdrant-a": healthy, "qdrant-b": stuck},
                           expect_failure=True, aegis_vector_db_restart_peers=True,
                           aegis_vector_db_service="aegis-test-no-such-unit")
    host = allowed.host("qdrant-b")
    assert "no aegis-test-no-such-unit.service unit on this host" in host["summary"], allowed.describe()
    assert "changed=0" in allowed.stdout


def test_peer_with_stopped_consensus_is_stuck(run_playbook, start_double):
    service = start_double("qdrant")
    Rest(service).create("docs", optimizers_config=MANUAL)
    # GET /cluster of a distributed peer whose consensus thread died, in the real server's shape
    cluster = {"status": "enabled", "peer_id": 7, "peers": {"7": {"uri": "http://qdrant-a:6335/"}},
               "raft_info": {"term": 4, "commit": 120, "pending_operations": 0, "leader": 7, "role": "Leader",
                             "is_voter": True},
               "consensus_thread_status": {"consensus_thread_status": "stopped_with_err",
                                           "err": "Failed to apply entry"},
               "message_send_failures": {}}
    service.faults.add(path="^/cluster$", method="GET", error_rate=1.0, status=200,
                       body={"result": cluster, "status": "ok", "time": 0.001})

    out = run_playbook("runbook_vector_db", hosts={"qdrant-a": service}, expect_failure=True)
    host = out.host()
    assert host["status"] == "failed" and host["data"]["cluster"]["status"] == "enabled"
    assert ("is stuck (consensus thread stopped_with_err: Failed to apply entry); restarting is not allowed "
            "(set aegis_vector_db_restart_peers=true)") in host["summary"], out.describe()


def test_collection_that_never_turns_green_stops_the_run(run_playbook, start_double):
    service = start_double("qdrant")
    rest = Rest(service)
    rest.create("docs", optimizers_config=MANUAL)
    busy = {**rest.info("docs"), "status": "yellow"}  # optimizations that never finish
    service.faults.add(path="^/collections/docs$", method="GET", error_rate=1.0, status=200,
                       body={"result": busy, "status": "ok", "time": 0.001})

    out = run_playbook("runbook_vector_db", hosts={"qdrant-a": service}, expect_failure=True,
                       aegis_vector_db_wait_timeout=2, **MACHINE_LIMITS)
    host = out.host()
    assert host["status"] == "failed", out.describe()
    assert host["summary"] == ("stopped at 'Resume grey collections and apply the optimizer settings': "
                               "collection docs not green after 2s (status: yellow)")
    assert "## qdrant-a: failed" in out.markdown and "stopped at" in out.markdown
