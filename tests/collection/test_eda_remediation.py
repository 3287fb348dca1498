"""Self-healing end to end (issue 25): the rulebook aegis.rag.aegis_remediation under a real ansible-rulebook (Java,
drools) on localhost receives Alertmanager notifications on its webhook and runs the dispatcher aegis.rag.remediate,
which runs a runbook stand-in (tests/collection/remediation_support.py). Also: the rulebook, the dispatcher's map
and the monitoring role's alert rules agree, and the filter documents itself."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.collection.conftest import VENV_BIN, ansible_env
from tests.collection.remediation_support import (ALERT_RULES, COLLECTION_ROOT, RULEBOOK, Fleet, alert, api_down,
                                                  default_runbooks, java_home, make_fleet, notification)
from tests.stack import free_port

TOKEN = "alertmanager-token"


# -- the rulebook, the map and the alert rules agree ----------------------------------------------------

def rules() -> list[dict]:
    (ruleset,) = yaml.safe_load(RULEBOOK.read_text())
    return ruleset["rules"]


def selected_alerts(rule: dict) -> tuple[set[tuple[str, str]], bool]:
    """((alertname, service) pairs a rule selects, whether it wants alerts with an instance label)."""
    condition = rule["condition"]
    names = re.findall(r'event\.alert\.labels\.alertname == "([^"]+)"', condition)
    (service,) = re.findall(r'event\.alert\.labels\.service == "([^"]+)"', condition)
    with_instance = "labels.instance is defined" in condition
    assert with_instance != ("labels.instance is not defined" in condition), condition
    return {(name, service) for name in names}, with_instance


def test_every_rule_throttles_firing_alerts_into_the_one_dispatcher():
    for rule in rules():
        assert rule["condition"].startswith('event.alert.status == "firing" and '), rule["name"]
        assert rule["action"] == {"run_playbook": {"name": "aegis.rag.remediate",
                                                   "extra_vars": {"aegis_alert": "{{ event.alert }}"}}}
        _, with_instance = selected_alerts(rule)
        key = "event.alert.labels.instance" if with_instance else "event.alert.labels.service"
        assert rule["throttle"] == {"once_within": "10 minutes",
                                    "group_by_attributes": ["event.alert.labels.alertname", key]}, rule["name"]


def test_rulebook_map_and_alert_rules_agree():
    selected: dict[tuple[str, str], set[bool]] = {}  # (alert, service) -> with instance label, without, or both
    for rule in rules():
        pairs, with_instance = selected_alerts(rule)
        for pair in pairs:
            selected.setdefault(pair, set()).add(with_instance)
    mapped = {(entry["alert"], entry["labels"]["service"]): entry for entry in default_runbooks()}
    assert set(selected) == set(mapped)
    alert_rules = [rule for group in yaml.safe_load(ALERT_RULES.read_text())["groups"] for rule in group["rules"]]
    for (name, service), entry in mapped.items():
        playbook = entry["runbook"].removeprefix("aegis.rag.")
        assert (COLLECTION_ROOT / "playbooks" / f"{playbook}.yml").exists(), entry
        matching = [r for r in alert_rules if r["alert"] == name and r["labels"]["service"] == service]
        assert matching, f"no alert rule {name} for {service}"
        assert {r["annotations"]["runbook"] for r in matching} == {f"playbooks/{playbook}.yml"}, (name, service)
        # alerts with an instance label are mapped to hosts, told apart by port; tier-wide ones need no port
        assert ("port_var" in entry) == (True in selected[(name, service)]), entry


def test_the_filter_documents_itself(tmp_path):
    proc = subprocess.run([str(VENV_BIN / "ansible-doc"), "-t", "filter", "aegis.rag.remediation_plan"], check=False,
                          env=ansible_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "[WARNING]" not in proc.stderr and "[ERROR]" not in proc.stderr, proc.stderr
    for section in ("OPTIONS", "EXAMPLES", "RETURN VALUES", "runbooks", "hostvars"):
        assert section in proc.stdout


# -- ansible-rulebook end to end ------------------------------------------------------------------------

class Rulebook:
    """ansible-rulebook with a rulebook and the fleet's inventory, its webhook on a free loopback port."""

    def __init__(self, fleet: Fleet, rulebook: str):
        self.fleet, self.port, self.log = fleet, free_port(), fleet.root / "ansible-rulebook.log"
        variables = fleet.root / "rulebook-vars.yml"
        variables.write_text(yaml.safe_dump({"aegis_remediation_listen_host": "127.0.0.1",
                                             "aegis_remediation_port": self.port, "aegis_remediation_token": TOKEN}))
        env = ansible_env(fleet.root, JAVA_HOME=java_home() or "")
        env.pop("ANSIBLE_STDOUT_CALLBACK")
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([str(VENV_BIN / "ansible-rulebook"), "--rulebook", rulebook, "--inventory",
                                          str(fleet.inventory), "--vars", str(variables)], cwd=fleet.root, env=env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait(self.listening, 60, "the webhook to listen")

    def listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def post(self, *alerts: dict) -> None:
        reply = httpx.post(f"http://127.0.0.1:{self.port}/alerts", json=notification(*alerts),
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert reply.status_code == 202 and reply.json() == {"events": len(alerts)}, reply.text

    def wait(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.proc.poll() is None, f"ansible-rulebook exited ({self.proc.returncode}):\n{self.output()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}; decisions {self.fleet.decided()}\n" \
                                                f"{self.output()}"
            time.sleep(0.2)

    def wait_decisions(self, count: int) -> list[str]:
        self.wait(lambda: len(self.fleet.decisions()) >= count, 60, f"{count} decisions")
        return self.fleet.decided()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@pytest.fixture
def start_rulebook():
    if not (VENV_BIN / "ansible-rulebook").exists() or not java_home():
        if os.environ.get("CI"):
            pytest.fail("ansible-rulebook (the dev extra) and Java 17 (openjdk-17-jre-headless) are needed")
        pytest.skip("ansible-rulebook or Java 17 is missing")
    started: list[Rulebook] = []

    def start(fleet: Fleet, rulebook: str = "aegis.rag.aegis_remediation") -> Rulebook:
        started.append(Rulebook(fleet, rulebook))
        return started[-1]

    yield start
    for rulebook in started:
        rulebook.stop()


@pytest.mark.slow
def test_alerts_run_the_dispatcher_once_per_cool_down_and_suggest_only_and_off_run_nothing(tmp_path, start_rulebook):
    fleet = make_fleet(tmp_path, aegis_remediation_suggest_only=["OllamaModelGenerationFailure",
                                                                 "AegisAPIHighErrorRate"])
    rulebook = start_rulebook(fleet)  # by its collection name, as an EDA activation names it

    # a fingerprint that looks like a number stays a string on its way through the rulebook
    down = api_down("10.0.0.11:8910", fingerprint="1234567890123456")
    rulebook.post(down, api_down("10.0.0.12:8910", status="resolved", fingerprint="0f1e2d3c4b5a6978"))
    assert rulebook.wait_decisions(2) == ["run", "finished"]
    assert fleet.ran_for() == ["api-1"]
    assert fleet.decisions()[0]["fingerprint"] == "1234567890123456"

    # Alertmanager repeats the alert inside the cool-down, and sends one no runbook repairs; then two suggest-only
    # (tier-wide) alerts
    rulebook.post(down)
    rulebook.post(alert("AegisAPIHighLatency", service="aegis-api"))
    rulebook.post(alert("OllamaModelGenerationFailure", service="ollama", fingerprint="g1"),
                  alert("AegisAPIHighErrorRate", service="aegis-api", fingerprint="e1"))
    assert rulebook.wait_decisions(4) == ["run", "finished", "suggest", "suggest"]
    assert fleet.ran_for() == ["api-1"]
    suggested = {(s["alert"], s["limit"]) for s in fleet.records("suggestion")}
    assert suggested == {("OllamaModelGenerationFailure", "ollama"), ("AegisAPIHighErrorRate", "aegis_api")}

    (fleet.state_dir / "disabled").write_text("")
    rulebook.post(alert("AegisServiceDown", service="qdrant", instance="10.0.0.31:6333", fingerprint="q1"))
    assert rulebook.wait_decisions(5)[-1] == "disabled"
    assert fleet.ran_for() == ["api-1"]


@pytest.mark.slow
def test_after_max_attempts_the_rulebook_escalates_and_runs_nothing_more(tmp_path, start_rulebook):
    """The rulebook with its cool-down cut from 10 minutes to 2 seconds (nothing else changed), so that the same
    alert reaches the dispatcher again within the test."""
    text = RULEBOOK.read_text()
    short = text.replace("once_within: 10 minutes", "once_within: 2 seconds")
    assert short.count("once_within: 2 seconds") == 2 and "once_within: 10" not in short
    rulebook_file = tmp_path / "aegis_remediation.yml"
    rulebook_file.write_text(short)
    fleet = make_fleet(tmp_path)
    rulebook = start_rulebook(fleet, str(rulebook_file))

    expected = ["run", "finished", "run", "finished", "escalate", "escalate"]
    for count in (2, 4, 5, 6):
        posted = time.monotonic()
        rulebook.post(api_down())
        assert rulebook.wait_decisions(count) == expected[:count]
        time.sleep(max(0.0, posted + 2.5 - time.monotonic()))  # past the cool-down
    assert fleet.ran_for() == ["api-1", "api-1"]
    escalations = fleet.records("escalation")
    assert len(escalations) == 2 and escalations[0]["attempts"] == 2 and escalations[0]["limit"] == "api-1"
    assert "ESCALATION: 2 attempts for AegisServiceDown on api-1" in Path(rulebook.log).read_text(errors="replace")
