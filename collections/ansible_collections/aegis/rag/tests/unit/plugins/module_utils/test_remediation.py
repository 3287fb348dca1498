"""The remediation guards' logic: alert -> runbook and host, the decision order, the state file, tier locks."""

from __future__ import annotations

import json
import os
import re
import threading

import pytest
from ansible_collections.aegis.rag.plugins.module_utils import remediation as rem

RUNBOOKS = [
    {"alert": "AegisServiceDown", "labels": {"service": "aegis-api"}, "runbook": "aegis.rag.runbook_api_failure",
     "tier": "aegis_api", "port_var": "aegis_api_port", "default_port": 8910},
    {"alert": "AegisServiceDown", "labels": {"service": "ollama"}, "runbook": "aegis.rag.runbook_llm", "tier": "ollama"},
    {"alert": "AegisServiceDown", "labels": {"service": "qdrant"}, "runbook": "aegis.rag.runbook_vector_db",
     "tier": "qdrant", "extra_vars": {"aegis_vector_db_restart_peers": True}},
]
HOSTS = {
    "aegis_api": [{"name": "api-1", "addresses": ["api-1", "10.0.0.11"], "port": 8910},
                  {"name": "api-2", "addresses": ["api-2", "10.0.0.12"], "port": 8910}],
    "ollama": [{"name": "gpu-1", "addresses": ["gpu-1", "GPU-1.prod.example"], "port": None}],
    "qdrant": [{"name": "qdrant-a", "addresses": ["qdrant-a", "127.0.0.1"], "port": 6333},
               {"name": "qdrant-b", "addresses": ["qdrant-b", "127.0.0.1"], "port": 6334}],
}


def group_hosts(tier, entry):
    return HOSTS.get(tier)


def alert(name="AegisServiceDown", status="firing", fingerprint="a1b2c3d4e5f60718", **labels):
    return {"status": status, "labels": dict(alertname=name, **labels), "fingerprint": fingerprint}


def plan(**kw):
    return rem.plan_remediation(alert(**kw), RUNBOOKS, group_hosts)


# -- plan ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("instance,expected", [
    ("api-1:8910", ("api-1", 8910)), ("10.0.0.5", ("10.0.0.5", None)), ("[::1]:6333", ("::1", 6333)),
    ("http://GPU-1.prod.example:11434/api/version", ("gpu-1.prod.example", 11434)),
])
def test_instance_address(instance, expected):
    assert rem.instance_address(instance) == expected


@pytest.mark.parametrize("instance,message", [("api-1:notaport", "invalid port"), ("http://:80/", "names no host")])
def test_instance_address_refuses_garbage(instance, message):
    with pytest.raises(rem.RemediationError, match=message):
        rem.instance_address(instance)


def test_plan_by_address_and_by_name():
    by_address = plan(service="aegis-api", instance="10.0.0.12:8910")
    assert by_address["error"] is None
    assert (by_address["runbook"], by_address["tier"], by_address["host"], by_address["limit"]) == (
        "aegis.rag.runbook_api_failure", "aegis_api", "api-2", "api-2")
    assert plan(service="aegis-api", instance="api-1:8910")["host"] == "api-1"
    # the blackbox exporter's instance is the probed URL; names compare without case
    assert plan(service="ollama", instance="http://gpu-1.PROD.example:11434/api/version")["host"] == "gpu-1"


def test_hosts_on_one_address_are_told_apart_by_port():
    assert plan(service="qdrant", instance="127.0.0.1:6334")["host"] == "qdrant-b"
    error = plan(service="qdrant", instance="127.0.0.1")["error"]
    assert "matches several hosts" in error and "qdrant-a" in error and "qdrant-b" in error


def test_alert_without_instance_is_planned_for_the_tier():
    tier_wide = plan(service="aegis-api")
    assert tier_wide["host"] is None and tier_wide["limit"] == "aegis_api" and tier_wide["error"] is None


def test_entry_labels_must_match_and_extra_vars_are_copied():
    vector = plan(service="qdrant", instance="qdrant-a")
    assert vector["runbook"] == "aegis.rag.runbook_vector_db"
    assert vector["extra_vars"] == {"aegis_vector_db_restart_peers": True}
    vector["extra_vars"]["x"] = 1
    assert "x" not in RUNBOOKS[2]["extra_vars"]


@pytest.mark.parametrize("labels,message", [
    ({"service": "aegis-api", "instance": "10.9.9.9:8910"},
     "instance '10.9.9.9:8910' matches no host .* among \\['api-1', 'api-2'\\]"),
    ({"service": "redis", "instance": "x"}, "no runbook for alert 'AegisServiceDown' with labels"),
])
def test_unplannable_alerts_carry_a_clear_error(labels, message):
    result = plan(**labels)
    assert result["error"].startswith("cannot remediate AegisServiceDown: ")
    assert re.search(message, result["error"]), result["error"]
    assert result["limit"] is None


def test_unknown_group_and_bad_map_entries_are_errors():
    runbooks = [{"alert": "X", "runbook": "r.yml", "tier": "nowhere"}]
    assert "no group 'nowhere'" in rem.plan_remediation(alert("X"), runbooks, group_hosts)["error"]
    assert "lacks runbook, tier" in rem.plan_remediation(alert("X"), [{"alert": "X"}], group_hosts)["error"]


def test_fingerprint_falls_back_to_the_labels():
    first = rem.fingerprint_of({"labels": {"alertname": "A", "instance": "h"}})
    assert first.startswith("labels-") and first == rem.fingerprint_of({"labels": {"instance": "h", "alertname": "A"}})
    assert first != rem.fingerprint_of({"labels": {"alertname": "A", "instance": "g"}})
    assert rem.fingerprint_of({"fingerprint": 1234}) == "1234"


# -- decision -----------------------------------------------------------------------------------------

def test_decision_order(tmp_path):
    good = plan(service="aegis-api", instance="api-1:8910")
    off_file = tmp_path / "disabled"

    def decide(p=None, enabled=True, suggest=(), attempts=0):
        return rem.decide(p or good, enabled, str(off_file), list(suggest), attempts, 2)[0]

    assert decide() == rem.RUN
    assert decide(attempts=1) == rem.RUN
    assert decide(attempts=2) == rem.ESCALATE
    assert decide(suggest=["AegisServiceDown"], attempts=5) == rem.SUGGEST
    assert decide(suggest=["*"]) == rem.SUGGEST
    assert decide(suggest=["OtherAlert"]) == rem.RUN
    assert decide(enabled=False, suggest=["*"]) == rem.DISABLED
    assert decide(p=dict(good, status="resolved"), enabled=False) == rem.IGNORED
    off_file.write_text("")
    assert decide() == rem.DISABLED
    bad = plan(service="aegis-api", instance="nowhere:1")
    assert decide(p=bad) == rem.DISABLED  # the switch is read before the plan's error
    off_file.unlink()
    with pytest.raises(rem.RemediationError, match="matches no host"):
        decide(p=bad)


def test_runbook_command_and_environment(tmp_path):
    good = plan(service="qdrant", instance="qdrant-a")
    argv = rem.runbook_command(good, "/venv/bin/ansible-playbook", ["/inv/a", "/inv/b"], "/reports", 90)
    assert argv[:4] == ["timeout", "--kill-after=60", "90", "/venv/bin/ansible-playbook"]
    assert argv[4:8] == ["--inventory", "/inv/a", "--inventory", "/inv/b"]
    assert argv[8:11] == ["aegis.rag.runbook_vector_db", "--limit", "qdrant-a"]
    assert json.loads(argv[12]) == {"aegis_report_dir": "/reports", "aegis_vector_db_restart_peers": True}

    runner_callbacks = tmp_path / "display_callback" / "callback"
    runner_callbacks.mkdir(parents=True)
    (runner_callbacks / "awx_display.py").write_text("")
    env = rem.runbook_environment({"ANSIBLE_CALLBACK_PLUGINS": "/site/callbacks:%s" % runner_callbacks})
    assert env["ANSIBLE_CALLBACK_PLUGINS"] == "/site/callbacks"
    assert env["ANSIBLE_STDOUT_CALLBACK"] == "ansible.builtin.default"


# -- state --------------------------------------------------------------------------------------------

def test_attempts_are_counted_within_the_window_and_pruned(tmp_path):
    good = plan(service="aegis-api", instance="api-1:8910")
    with rem.state_transaction(str(tmp_path)) as data:
        rem.record_attempt(data, good, 1000.0)
        rem.record_attempt(data, good, 2000.0)
    with rem.state_transaction(str(tmp_path)) as data:
        key = rem.attempt_key(good)
        assert key == "a1b2c3d4e5f60718@api-1"
        assert rem.recent_attempts(data, key, 2500.0, 3600) == [1000.0, 2000.0]
        assert rem.recent_attempts(data, key, 4700.0, 3600) == [2000.0]
        rem.prune(data, 6000.0, 3600)
        assert data["alerts"] == {}
    assert sorted(os.listdir(tmp_path)) == [rem.STATE_FILE, rem.STATE_LOCK]  # no temporary file left


def test_a_failure_inside_the_transaction_writes_nothing(tmp_path):
    good = plan(service="aegis-api", instance="api-1:8910")
    with pytest.raises(RuntimeError):
        with rem.state_transaction(str(tmp_path)) as data:
            rem.record_attempt(data, good, 1.0)
            raise RuntimeError("boom")
    assert not (tmp_path / rem.STATE_FILE).exists()


def test_a_damaged_state_file_is_an_error_not_a_fresh_start(tmp_path):
    (tmp_path / rem.STATE_FILE).write_text("{not json")
    with pytest.raises(rem.RemediationError, match="is not JSON .* move it away"):
        with rem.state_transaction(str(tmp_path)):
            pass
    (tmp_path / rem.STATE_FILE).write_text("[]")
    with pytest.raises(rem.RemediationError, match="not a remediation state"):
        rem.load_state(str(tmp_path / rem.STATE_FILE))


def test_concurrent_transactions_lose_no_attempt(tmp_path):
    good = plan(service="aegis-api", instance="api-1:8910")

    def add(n):
        for i in range(n):
            with rem.state_transaction(str(tmp_path)) as data:
                rem.record_attempt(data, good, float(i))

    threads = [threading.Thread(target=add, args=(25,)) for dummy in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state = json.loads((tmp_path / rem.STATE_FILE).read_text())
    assert len(state["alerts"][rem.attempt_key(good)]["attempts"]) == 100


def test_tier_lock_is_exclusive_released_by_its_holder_and_broken_when_stale(tmp_path):
    state_dir = str(tmp_path)
    token, holder = rem.acquire_tier_lock(state_dir, "aegis_api", {"alert": "A"}, 100, now=1000.0)
    assert token and holder is None
    again, holder = rem.acquire_tier_lock(state_dir, "aegis_api", {"alert": "B"}, 100, now=1050.0)
    assert again is None and holder["alert"] == "A"
    other_tier, dummy = rem.acquire_tier_lock(state_dir, "ollama", {"alert": "C"}, 100, now=1050.0)
    assert other_tier
    assert not rem.release_tier_lock(state_dir, "aegis_api", "not-the-token")
    assert rem.release_tier_lock(state_dir, "aegis_api", token)
    assert not os.path.exists(rem.tier_lock_path(state_dir, "aegis_api"))

    first, dummy = rem.acquire_tier_lock(state_dir, "aegis_api", {"alert": "A"}, 100, now=2000.0)
    stolen, dummy = rem.acquire_tier_lock(state_dir, "aegis_api", {"alert": "B"}, 100, now=2101.0)
    assert stolen and stolen != first
    assert not rem.release_tier_lock(state_dir, "aegis_api", first)  # the late holder leaves the new lock alone
    assert json.loads(open(rem.tier_lock_path(state_dir, "aegis_api")).read())["alert"] == "B"


def test_records_never_overwrite_each_other(tmp_path):
    good = plan(service="aegis-api", instance="api-1:8910")
    paths = [rem.write_record(str(tmp_path / "reports"), "escalation", good, {"n": n}, 1796539179.0) for n in range(3)]
    assert [os.path.basename(p) for p in paths] == [
        "remediation-escalation-20261206T063939Z-AegisServiceDown-api-1.json",
        "remediation-escalation-20261206T063939Z-AegisServiceDown-api-1-1.json",
        "remediation-escalation-20261206T063939Z-AegisServiceDown-api-1-2.json"]
    assert [json.loads(open(p).read())["n"] for p in paths] == [0, 1, 2]


def test_decision_journal_appends_lines(tmp_path):
    rem.log_decision(str(tmp_path / "state"), {"decision": "run"})
    rem.log_decision(str(tmp_path / "state"), {"decision": "finished"})
    lines = (tmp_path / "state" / rem.DECISIONS_FILE).read_text().splitlines()
    assert [json.loads(line)["decision"] for line in lines] == ["run", "finished"]
