"""remediation_guard: admit and finish through main(), with the state, locks and records they leave."""

from __future__ import annotations

import json
import os

import pytest
from ansible_collections.aegis.rag.plugins.module_utils import remediation as rem
from ansible_collections.aegis.rag.plugins.modules import remediation_guard

PLAN = {"alert": "AegisServiceDown", "status": "firing", "fingerprint": "a1b2c3d4e5f60718", "instance": "api-1:8910",
        "labels": {"alertname": "AegisServiceDown", "instance": "api-1:8910", "service": "aegis-api"},
        "runbook": "aegis.rag.runbook_api_failure", "tier": "aegis_api", "host": "api-1", "limit": "api-1",
        "extra_vars": {}, "error": None}


@pytest.fixture
def guard(call_module, tmp_path):
    """guard(phase, check=False, **options) -> result, with the state and reports in tmp_path."""

    def call(phase, check=False, **options):
        args = dict(phase=phase, plan=PLAN, state_dir=str(tmp_path / "state"), report_dir=str(tmp_path / "reports"),
                    ansible_playbook="/nonexistent/ansible-playbook", inventories=["/inv/hosts.yml"])
        args.update(options)
        return call_module(remediation_guard.main, args, check=check)
    return call


def records(tmp_path, kind):
    folder = tmp_path / "reports"
    return sorted(p for p in folder.glob("remediation-%s-*.json" % kind)) if folder.exists() else []


def journal(tmp_path):
    lines = (tmp_path / "state" / rem.DECISIONS_FILE).read_text().splitlines()
    return [json.loads(line)["decision"] for line in lines]


def attempts(tmp_path):
    state = json.loads((tmp_path / "state" / rem.STATE_FILE).read_text())
    return state["alerts"].get("a1b2c3d4e5f60718@api-1", {}).get("attempts", [])


def test_admit_runs_then_finish_records_the_outcome_and_releases_the_tier(guard, tmp_path):
    admitted = guard("admit")
    assert not admitted.get("failed"), admitted
    assert admitted["decision"] == "run" and admitted["changed"] and admitted["attempts"] == 1
    assert admitted["command"][6:9] == ["aegis.rag.runbook_api_failure", "--limit", "api-1"]
    assert admitted["command"][4:6] == ["--inventory", "/inv/hosts.yml"]
    assert json.loads(admitted["command"][-1]) == {"aegis_report_dir": str(tmp_path / "reports")}
    assert os.path.exists(rem.tier_lock_path(str(tmp_path / "state"), "aegis_api"))

    busy = guard("admit")
    assert busy["decision"] == "busy" and "aegis_api tier is busy" in busy["msg"] and not busy["changed"]
    assert len(attempts(tmp_path)) == 1  # a busy tier does not count

    finished = guard("finish", lock_token=admitted["lock_token"],
                     run_result={"rc": 0, "stdout": "PLAY RECAP ok", "start": "s", "end": "e"})
    assert finished["outcome"]["status"] == "ok" and finished["record"] == str(records(tmp_path, "outcome")[0])
    assert not os.path.exists(rem.tier_lock_path(str(tmp_path / "state"), "aegis_api"))
    record = json.loads(records(tmp_path, "outcome")[0].read_text())
    assert record["stdout_tail"] == "PLAY RECAP ok" and record["limit"] == "api-1" and record["lock_released"]
    assert journal(tmp_path) == ["run", "busy", "finished"]


@pytest.mark.parametrize("run_result,status", [({"rc": 2, "msg": "non-zero return code"}, "failed"),
                                               ({"rc": 124}, "timed out"),
                                               ({"failed": True, "msg": "No such file or directory"}, "failed")])
def test_finish_names_failures(guard, run_result, status):
    token = guard("admit")["lock_token"]
    assert guard("finish", lock_token=token, run_result=run_result)["outcome"]["status"] == status


def test_after_max_attempts_the_alert_escalates_and_nothing_runs(guard, tmp_path):
    for _attempt in range(2):
        admitted = guard("admit")
        assert admitted["decision"] == "run"
        guard("finish", lock_token=admitted["lock_token"], run_result={"rc": 2})
    escalated = guard("admit")
    assert escalated["decision"] == "escalate" and escalated["lock_token"] is None
    assert escalated["msg"].startswith("2 attempts for AegisServiceDown on api-1")
    (path,) = records(tmp_path, "escalation")
    record = json.loads(path.read_text())
    assert record == escalated["escalation"]
    assert record["attempts"] == 2 and len(record["attempted_at"]) == 2 and record["last_outcome"]["status"] == "failed"
    assert len(attempts(tmp_path)) == 2
    assert guard("admit", max_attempts=3)["decision"] == "run"


def test_no_escalation_while_the_last_attempt_still_runs(guard, tmp_path):
    """The last attempt may yet repair the fault: an alert meanwhile is busy, not counted; once it has failed, the
    next escalates with its outcome. Another alert's run on the tier does not hold an escalation back."""
    guard("finish", lock_token=guard("admit")["lock_token"], run_result={"rc": 2})
    last = guard("admit")
    assert last["decision"] == "run" and last["attempts"] == 2
    waiting = guard("admit")
    assert waiting["decision"] == "busy" and not waiting["changed"], waiting
    assert waiting["msg"] == ("attempt 2 of 2 for AegisServiceDown on api-1 still runs: escalated only if it fails; "
                              "not counted")
    assert guard("admit", check=True)["decision"] == "busy"
    assert records(tmp_path, "escalation") == [] and len(attempts(tmp_path)) == 2
    guard("finish", lock_token=last["lock_token"], run_result={"rc": 2, "stdout": "second"})
    escalated = guard("admit")
    assert escalated["decision"] == "escalate" and escalated["escalation"]["last_outcome"]["status"] == "failed"
    assert journal(tmp_path) == ["run", "finished", "run", "busy", "finished", "escalate"]

    other = guard("admit", plan=dict(PLAN, alert="AegisAPIHighErrorRate", fingerprint="0f0f0f0f0f0f0f0f"))
    assert other["decision"] == "run"  # holds the aegis_api tier
    assert guard("admit")["decision"] == "escalate"


def test_attempts_outside_the_window_do_not_count(guard, tmp_path):
    for _attempt in range(2):
        guard("finish", lock_token=guard("admit")["lock_token"], run_result={"rc": 0})
    state_file = tmp_path / "state" / rem.STATE_FILE
    state = json.loads(state_file.read_text())
    state["alerts"]["a1b2c3d4e5f60718@api-1"]["attempts"] = [1.0, 2.0]  # long ago
    state_file.write_text(json.dumps(state))
    assert guard("admit")["decision"] == "run"


def test_suggest_only_writes_what_it_would_run(guard, tmp_path):
    suggested = guard("admit", suggest_only=["AegisServiceDown"])
    assert suggested["decision"] == "suggest" and suggested["lock_token"] is None
    record = json.loads(records(tmp_path, "suggestion")[0].read_text())
    assert record["command"] == suggested["command"] and record["runbook"] == "aegis.rag.runbook_api_failure"
    assert attempts(tmp_path) == []


def test_suggest_only_refuses_what_is_not_an_alert_name(guard, tmp_path):
    failed = guard("admit", suggest_only=['["*"]'])
    assert failed["failed"] and "suggest_only takes alert names or *" in failed["msg"]
    assert not (tmp_path / "state").exists()


def test_off_switch_variable_and_file(guard, tmp_path):
    assert guard("admit", enabled=False)["decision"] == "disabled"
    (tmp_path / "state" / "disabled").write_text("maintenance\n")
    off = guard("admit")
    assert off["decision"] == "disabled" and "disabled exists" in off["msg"]
    assert guard("admit", disable_file=str(tmp_path / "elsewhere"))["decision"] == "run"
    assert records(tmp_path, "*") == []


def test_resolved_alerts_are_ignored(guard, call_module, tmp_path):
    result = guard("admit", plan=dict(PLAN, status="resolved"))
    assert result["decision"] == "ignored" and not result["changed"]


def test_a_plan_error_fails_after_the_switches(guard, tmp_path):
    bad = dict(PLAN, error="cannot remediate AegisServiceDown: instance 'x' matches no host", limit=None, host=None)
    assert guard("admit", plan=bad, enabled=False)["decision"] == "disabled"
    failed = guard("admit", plan=bad)
    assert failed["failed"] and failed["msg"] == bad["error"]
    assert journal(tmp_path)[-1] == "error"


def test_a_plan_not_made_by_the_filter_is_refused(guard):
    failed = guard("admit", plan={"alert": "X"})
    assert failed["failed"] and "plan lacks status, fingerprint, limit, tier, runbook, error" in failed["msg"]


def test_check_mode_decides_and_writes_nothing(guard, tmp_path):
    assert guard("admit", check=True)["decision"] == "run"
    assert not (tmp_path / "state").exists() and not (tmp_path / "reports").exists()
    token = guard("admit")["lock_token"]
    assert guard("admit", check=True)["decision"] == "busy"
    guard("finish", lock_token=token, run_result={"rc": 0})
    guard("finish", lock_token=guard("admit")["lock_token"], run_result={"rc": 0})
    assert guard("admit", check=True)["decision"] == "escalate"
    assert records(tmp_path, "escalation") == []
