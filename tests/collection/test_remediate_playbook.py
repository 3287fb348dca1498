"""The remediation dispatcher (playbooks/remediate.yml -> aegis.rag.remediate) run directly with ansible-playbook, as
the rulebook's run_playbook runs it: the runbook runs for the alert's host only; attempts, escalation (record,
warning, webhook), suggest-only, the off switches, the tier lock, a failing runbook, unknown hosts, check mode.
The runbooks are replaced by a stand-in that leaves a mark per host (tests/collection/remediation_support.py)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.collection.remediation_support import alert, api_down, describe, dispatch, make_fleet, standin_runbooks

pytestmark = pytest.mark.slow  # each dispatch is one or two ansible-playbook runs (3-6 s)


def test_an_alert_runs_its_runbook_for_its_host_only(tmp_path):
    fleet = make_fleet(tmp_path)
    proc = dispatch(fleet, api_down("10.0.0.12:8910"))
    assert proc.returncode == 0, describe(proc)
    (run,) = fleet.runs()
    assert run == {"host": "api-2", "aegis_report_dir": str(fleet.report_dir),
                   "standin_for": "aegis.rag.runbook_api_failure", "restart_peers": None}
    (outcome,) = fleet.records("outcome")
    assert outcome["outcome"]["status"] == "ok" and outcome["limit"] == "api-2" and outcome["lock_released"]
    assert "api-2" in outcome["stdout_tail"] and "\x1b" not in outcome["stdout_tail"]
    assert fleet.decided() == ["run", "finished"]
    assert not list(fleet.state_dir.glob("tier-*.lock"))


def test_each_tier_is_reached_by_its_alerts(tmp_path):
    fleet = make_fleet(tmp_path)
    # Ollama is probed by the blackbox exporter: its instance is the probed URL
    ollama = alert("AegisServiceDown", service="ollama", instance="http://10.0.0.21:11434/api/version", fingerprint="o1")
    qdrant = alert("AegisServiceDown", service="qdrant", instance="qdrant-1:6333", fingerprint="q1")
    error_rate = alert("AegisAPIHighErrorRate", service="aegis-api", fingerprint="e1")  # no instance: the tier
    for the_alert in (ollama, qdrant, error_rate):
        proc = dispatch(fleet, the_alert)
        assert proc.returncode == 0, describe(proc)
    runs = {(run["host"], run["standin_for"], run["restart_peers"]) for run in fleet.runs()}
    assert runs == {("gpu-1", "aegis.rag.runbook_llm", None), ("qdrant-1", "aegis.rag.runbook_vector_db", True),
                    ("api-1", "aegis.rag.runbook_api_failure", None), ("api-2", "aegis.rag.runbook_api_failure", None)}


def test_the_tier_wide_qdrant_alert_may_restart_a_peer_too(tmp_path):
    """A stopped Qdrant fires AegisServiceDown and QdrantQuerySuccessRateCritical at once: whichever takes the tier's
    lock first runs alone (the other is busy and dropped), so both must allow the restart of a peer not ready."""
    fleet = make_fleet(tmp_path)
    proc = dispatch(fleet, alert("QdrantQuerySuccessRateCritical", service="qdrant", fingerprint="s1"))
    assert proc.returncode == 0, describe(proc)
    (run,) = fleet.runs()
    assert (run["host"], run["standin_for"], run["restart_peers"]) == ("qdrant-1", "aegis.rag.runbook_vector_db", True)


class Webhook:
    """A receiver for the escalation webhook: records each request's headers and JSON body."""

    def __init__(self):
        self.seen: list[tuple[dict, dict]] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                seen.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_after_max_attempts_the_alert_escalates_and_nothing_more_runs(tmp_path):
    hook = Webhook()
    fleet = make_fleet(tmp_path, aegis_remediation_webhook_url=hook.url, aegis_remediation_webhook_token="s3cret")
    for _ in range(2):
        proc = dispatch(fleet, api_down())
        assert proc.returncode == 0, describe(proc)
    assert fleet.ran_for() == ["api-1", "api-1"]

    proc = dispatch(fleet, api_down())
    assert proc.returncode != 0, describe(proc)
    assert "ESCALATION: 2 attempts for AegisServiceDown on api-1" in proc.stdout + proc.stderr, describe(proc)
    assert fleet.ran_for() == ["api-1", "api-1"]
    (escalation,) = fleet.records("escalation")
    assert escalation["attempts"] == 2 and escalation["max_attempts"] == 2 and escalation["limit"] == "api-1"
    assert escalation["last_outcome"]["status"] == "ok" and escalation["fingerprint"] == "a1b2c3d4e5f60718"
    ((headers, body),) = hook.seen
    assert body == escalation and headers["authorization"] == "Bearer s3cret"
    hook.server.shutdown()


def test_suggest_only_and_the_off_switches_run_nothing(tmp_path):
    fleet = make_fleet(tmp_path, aegis_remediation_suggest_only=["AegisServiceDown"])
    proc = dispatch(fleet, api_down())
    assert proc.returncode == 0, describe(proc)
    (suggestion,) = fleet.records("suggestion")
    assert suggestion["runbook"].endswith("standin.yml") and suggestion["limit"] == "api-1"
    assert suggestion["command"][-4:-2] == ["--limit", "api-1"]

    proc = dispatch(fleet, api_down(), aegis_remediation_suggest_only=[], aegis_remediation_enabled=False)
    assert proc.returncode == 0, describe(proc)
    (fleet.state_dir / "disabled").write_text("maintenance until 18:00\n")
    proc = dispatch(fleet, api_down(), aegis_remediation_suggest_only=[])
    assert proc.returncode == 0, describe(proc)
    assert "remediation is switched off" in proc.stdout
    assert fleet.runs() == [] and fleet.decided() == ["suggest", "disabled", "disabled"]


def test_a_failing_runbook_is_recorded_fails_the_job_and_frees_the_tier(tmp_path):
    fleet = make_fleet(tmp_path)
    proc = dispatch(fleet, api_down(), aegis_remediation_runbooks=standin_runbooks(tmp_path / "standin.yml",
                                                                                       standin_fail=True))
    assert proc.returncode != 0 and "standin.yml on api-1: failed (rc=2)" in proc.stdout, describe(proc)
    (outcome,) = fleet.records("outcome")
    assert outcome["outcome"]["status"] == "failed" and "the stand-in failed as told" in outcome["stdout_tail"]
    assert not list(fleet.state_dir.glob("tier-*.lock"))


def test_a_busy_tier_runs_nothing(tmp_path):
    """Another runbook of the tier holds its lock (a stale lock is broken: see the unit tests)."""
    fleet = make_fleet(tmp_path)
    fleet.state_dir.mkdir()
    lock = fleet.state_dir / "tier-aegis_api.lock"
    lock.write_text(json.dumps({"alert": "AegisAPIHighErrorRate", "limit": "aegis_api", "runbook": "x",
                                "created_at": time.time()}))
    proc = dispatch(fleet, api_down())
    assert proc.returncode == 0 and "the aegis_api tier is busy" in proc.stdout, describe(proc)
    assert fleet.runs() == [] and fleet.decided() == ["busy"] and lock.exists()


def test_an_unknown_host_fails_clearly_and_runs_nothing(tmp_path):
    fleet = make_fleet(tmp_path)
    proc = dispatch(fleet, api_down("10.9.9.9:8910"))
    assert proc.returncode != 0, describe(proc)
    assert ("cannot remediate AegisServiceDown: instance '10.9.9.9:8910' matches no host (by inventory name, "
            "ansible_host or monitoring_target_address) among ['api-1', 'api-2']") in proc.stdout, describe(proc)
    assert fleet.runs() == [] and fleet.decided() == ["error"]


def test_resolved_alerts_and_check_mode_run_nothing(tmp_path):
    fleet = make_fleet(tmp_path)
    proc = dispatch(fleet, api_down(status="resolved"))
    assert proc.returncode == 0 and "not firing" in proc.stdout, describe(proc)
    proc = dispatch(fleet, api_down(), "--check")
    assert proc.returncode == 0 and "run: attempt 1 of 2" in proc.stdout, describe(proc)
    assert fleet.runs() == [] and fleet.decided() == ["ignored"] and fleet.records("*") == []
