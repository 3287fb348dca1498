"""playbooks/runbook_vector_db.yml against the Qdrant double: a grey collection healed (check mode first:
nothing changed), a second run changing nothing, a red collection failing with the rebuild command in
the report, a peer that is down or whose consensus stopped failing with the reason when it may not be
restarted, the API's search latency read from a /metrics page, and disk and memory warnings.
Not covered here (no systemd on the test hosts): the restart of a stuck peer itself."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.collection.qdrant_helpers import Rest

pytestmark = pytest.mark.slow

MANUAL = {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000, "default_segment_number": 0}
METRIC = "aegis_vector_search_duration_seconds"
# disk and memory are the test machine's own: limits it always meets, so the findings depend on the double only
MACHINE_LIMITS = {"aegis_vector_db_disk_max_percent": 100, "aegis_vector_db_memory_min_percent": 0}


def histogram(buckets: dict[str, int], total_seconds: float) -> str:
    """An Aegis API /metrics page holding only the search histogram (cumulative buckets)."""
    lines = [f"# HELP {METRIC} Vector store query time", f"# TYPE {METRIC} histogram"]
    lines += [f'{METRIC}_bucket{{le="{le}"}} {float(n)}' for le, n in buckets.items()]
    lines += [f"{METRIC}_count {float(buckets['+Inf'])}", f"{METRIC}_sum {total_seconds}"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def api_metrics():
    """serve(text) -> URL of a loopback /metrics page answering `text`."""
    servers = []

    def serve(text: str) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                body = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/metrics"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


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

    # healthy now; the API measured slow searches: a warning, not a failure, and still no change
    slow = api_metrics(histogram({"0.1": 10, "0.25": 40, "0.5": 80, "1.0": 95, "2.5": 100, "+Inf": 100}, 52.0))
    again = run_playbook("runbook_vector_db", hosts={"qdrant-a": service}, aegis_vector_db_api_metrics_url=slow,
                         **MACHINE_LIMITS)
    host = again.host()
    assert "changed=0" in again.stdout and "qdrant-a" in again.stdout
    assert host["status"] == "ok" and host["actions"] == [], again.describe()
    assert host["findings"] == ["warning: search P95 is above 0.5 s (the API measured 100 searches, mean 520.0 ms)"]
    [facts] = table(host, "Host")
    assert facts["API search P95"] == "<= 1.0 s" and facts["API search mean"] == "520.0 ms"
    assert facts["readyz"] == 200 and facts["cluster"] == "disabled"
    # disk and memory come from the host's own facts (here the test machine): read, not invented
    assert re.fullmatch(r"\d+(\.\d+)?% of /.*", facts["disk used"]), facts
    assert 0 < host["data"]["memory"]["available_percent"] <= 100


def test_fast_search_and_resource_warnings(run_playbook, start_double, api_metrics):
    service = start_double("qdrant")
    rest = Rest(service)
    rest.create("docs", optimizers_config=MANUAL)
    rest.upsert("docs", range(1, 4))
    fast = api_metrics(histogram({"0.01": 90, "0.025": 99, "0.05": 100, "+Inf": 100}, 0.8))
    # limits no machine meets: disk and memory warnings, which report but neither fail nor change anything
    out = run_playbook("runbook_vector_db", hosts={"qdrant-a": service}, aegis_vector_db_api_metrics_url=fast,
                       aegis_vector_db_disk_max_percent=0, aegis_vector_db_memory_min_percent=100)
    host = out.host()
    assert host["status"] == "ok" and host["actions"] == [], out.describe()
    disk, memory = host["findings"]
    assert re.fullmatch(r"warning: disk of /var/lib/qdrant/storage \(/.*\) is [\d.]+% used, [\d.]+ GB free", disk)
    assert re.fullmatch(r"warning: only [\d.]+% of \d+ MB memory available", memory)
    [facts] = table(host, "Host")
    assert facts["API search P95"] == "<= 0.025 s" and facts["API search mean"] == "8.0 ms"


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
