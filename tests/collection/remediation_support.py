"""Shared by the remediation tests (test_remediate_playbook.py, test_eda_remediation.py): a fleet inventory whose
hosts all run on localhost, a runbook stand-in that leaves one mark per host it runs for, alerts shaped like
Alertmanager's, and the dispatcher's default alert -> runbook map read from the playbook itself."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.collection.conftest import COLLECTION_ROOT, REPO, VENV_BIN, ansible_env
from tests.module_python import MODULE_PYTHON

REMEDIATE = COLLECTION_ROOT / "playbooks" / "remediate.yml"
WRAPPER = REPO / "playbooks" / "remediate.yml"
RULEBOOK = COLLECTION_ROOT / "extensions" / "eda" / "rulebooks" / "aegis_remediation.yml"
ALERT_RULES = COLLECTION_ROOT / "roles" / "monitoring" / "files" / "rules" / "aegis-alerts.yml"

# Leaves <standin_runs>/<host>-<time>.json for each host of its --limit; fails when standin_fail is set.
STANDIN = """\
- name: Runbook stand-in
  hosts: all
  gather_facts: false
  tasks:
    - name: Leave a mark for the host
      ansible.builtin.copy:
        dest: "{{ standin_runs }}/{{ inventory_hostname }}-{{ now(utc=true).strftime('%H%M%S%f') }}.json"
        content: "{{ {'host': inventory_hostname, 'aegis_report_dir': aegis_report_dir,
                      'standin_for': standin_for | default(none),
                      'restart_peers': aegis_vector_db_restart_peers | default(none)} | to_json }}"
        mode: "0644"
    - name: Fail when told to
      ansible.builtin.fail:
        msg: the stand-in failed as told
      when: standin_fail | default(false) | bool
"""

HOSTS = {"aegis_api": {"api-1": "10.0.0.11", "api-2": "10.0.0.12"}, "ollama": {"gpu-1": "10.0.0.21"},
         "qdrant": {"qdrant-1": "10.0.0.31"}}


def default_runbooks() -> list[dict]:
    (play,) = yaml.safe_load(REMEDIATE.read_text())
    return play["vars"]["_rem_default_runbooks"]


def standin_runbooks(standin: Path, **extra_vars) -> list[dict]:
    """The default map with every runbook replaced by the stand-in, which is told the runbook it stands for."""
    return [dict(entry, runbook=str(standin),
                 extra_vars={**entry.get("extra_vars", {}), "standin_for": entry["runbook"], **extra_vars})
            for entry in default_runbooks()]


@dataclass
class Fleet:
    root: Path
    inventory: Path
    state_dir: Path
    report_dir: Path
    runs_dir: Path

    def runs(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.runs_dir.glob("*.json"), key=lambda p: p.stat().st_mtime)]

    def ran_for(self) -> list[str]:
        return sorted(run["host"] for run in self.runs())

    def records(self, kind: str) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.report_dir.glob(f"remediation-{kind}-*.json"))]

    def decisions(self) -> list[dict]:
        journal = self.state_dir / "decisions.jsonl"
        return [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []

    def decided(self) -> list[str]:
        return [d["decision"] for d in self.decisions()]


def make_fleet(tmp_path: Path, **dispatcher_vars) -> Fleet:
    """An inventory of the fleet's groups (every host local), with the dispatcher's variables in all:vars; like
    production inventories it has no `localhost` entry."""
    fleet = Fleet(tmp_path, tmp_path / "hosts.yml", tmp_path / "state", tmp_path / "reports", tmp_path / "runs")
    fleet.runs_dir.mkdir()
    standin = tmp_path / "standin.yml"
    standin.write_text(STANDIN)
    variables = {"ansible_connection": "local", "ansible_python_interpreter": MODULE_PYTHON,
                 "standin_runs": str(fleet.runs_dir), "aegis_remediation_state_dir": str(fleet.state_dir),
                 "aegis_report_dir": str(fleet.report_dir), "aegis_remediation_runbooks": standin_runbooks(standin)}
    variables.update(dispatcher_vars)
    children = {group: {"hosts": {name: {"ansible_host": address} for name, address in hosts.items()}}
                for group, hosts in HOSTS.items()}
    inventory = {"all": {"vars": variables, "children": children}}
    fleet.inventory.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return fleet


def alert(name: str, status: str = "firing", fingerprint: str = "a1b2c3d4e5f60718", **labels: str) -> dict:
    """One alert of an Alertmanager notification (webhook payload version 4)."""
    return {"status": status, "labels": {"alertname": name, "severity": "critical", **labels},
            "annotations": {"summary": f"{name} test"}, "startsAt": "2026-12-06T04:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://monitor-1:9090/graph", "fingerprint": fingerprint}


def api_down(instance: str = "10.0.0.11:8910", **kw) -> dict:
    return alert("AegisServiceDown", service="aegis-api", priority="P1", job="aegis-api", instance=instance, **kw)


def notification(*alerts: dict) -> dict:
    return {"version": "4", "status": "firing", "receiver": "remediation", "groupKey": "{}:{}", "truncatedAlerts": 0,
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://monitor-1:9093",
            "alerts": list(alerts)}


def dispatch(fleet: Fleet, the_alert: dict, *args: str, **extra_vars) -> subprocess.CompletedProcess:
    """ansible-playbook playbooks/remediate.yml (the wrapper) with the alert, as the rulebook's run_playbook would."""
    extra = fleet.root / f"extra-{time.monotonic_ns()}.json"
    extra.write_text(json.dumps({"aegis_alert": the_alert, **extra_vars}))
    env = ansible_env(fleet.root, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(fleet.inventory), str(WRAPPER),
                           "-e", f"@{extra}", *args], cwd=fleet.root, env=env, capture_output=True, text=True,
                          timeout=180, check=False)


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"rc={proc.returncode}\nstdout:\n{proc.stdout[-5000:]}\nstderr:\n{proc.stderr[-3000:]}"


def java_home() -> str | None:
    """JAVA_HOME for ansible-rulebook (drools needs Java 17 or later): the environment's, else a JDK in /usr/lib/jvm."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    for pattern in ("java-17-openjdk*", "java-*-openjdk*", "*"):
        for home in sorted(Path("/usr/lib/jvm").glob(pattern)):
            if (home / "bin" / "java").exists():
                return str(home)
    return None
