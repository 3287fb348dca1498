"""playbooks/game_day.yml (-> aegis.rag.game_day) through the real ansible-playbook, on this machine only.

The guard, with an inventory of hosts nobody can reach: a production inventory (or one that does not say) is refused
unless forced, and so are unknown faults or modes and an inventory without the hosts the faults need; the refusal is
the first task's, nothing else runs, no report is written.

A whole game day on stand-in hosts (`Fleet`): five inventory hosts on the local connection, each with a fake
systemctl first on its Python's PATH (its units in a JSON file), HTTP doubles of each API host's /ready, the load
balancer's /chat, Alertmanager's /api/v2/alerts (an alert fires once its unit has been down for ALERT_FOR seconds,
and is gone once it is back) and Ollama's delete and pull; a thread (`Fleet._world`) plays systemd's Restart= (a killed
unit comes back) and, in closed_loop mode, the remediation service (a firing alert's fault is repaired). Not here: real
systemd, Prometheus, HAProxy or a real runbook (runbooks mode runs a stand-in playbook); the fleet run covers those."""

from __future__ import annotations

import fcntl
import json
import re
import sys
import threading
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.module_python import MODULE_PYTHON
from tests.runbooks.conftest import PLAYBOOKS, Run, run_ansible

API_KEY = "game-day-test-key"
MODEL = "smollm2:135m"
BAD_SETTING = 'AEGIS_TOP_K="notanumber"'
ALERT_FOR = 2.0  # seconds a unit stays down before its alert fires
REPAIR_AFTER = 4.0  # seconds a firing alert waits for the stand-in remediation service
GROUPS = {"aegis_api": ["api-1", "api-2"], "qdrant": ["data"], "redis": ["data"], "ollama": ["gpu"],
          "loadbalancer": ["lb"], "monitoring": ["lb"]}
UNITS = {"api-1": ["aegis-api"], "api-2": ["aegis-api"], "data": ["qdrant", "redis-server"], "gpu": ["ollama"],
         "lb": []}

# systemctl of a stand-in host: its units in ../units.json (under ../units.lock); aegis-api does not start while the
# environment file holds the bad setting.
FAKE_SYSTEMCTL = r'''
import fcntl, json, sys, time
from pathlib import Path

HOST = Path(__file__).resolve().parent.parent
args = [a.strip("'") for a in sys.argv[1:] if not a.startswith("--") or a.startswith("--signal")]
action = args[0] if args else ""
if action == "is-system-running":
    print("running")
    sys.exit(0)
if action in ("", "daemon-reload"):
    sys.exit(0)
unit = args[-1].removesuffix(".service")
with open(HOST / "units.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    units = json.loads((HOST / "units.json").read_text())
    if unit not in units:
        if action == "show":
            print("Id=%s.service\nLoadState=not-found\nActiveState=inactive" % unit)
            sys.exit(0)
        print("Unit %s.service not found." % unit, file=sys.stderr)
        sys.exit(5)
    state = units[unit]
    if action == "show":
        print("Id=%s.service\nLoadState=loaded\nUnitFileState=enabled\nActiveState=%s\nSubState=%s" % (
            unit, "active" if state["active"] else "inactive", "running" if state["active"] else "dead"))
    elif action == "is-active":
        print("active" if state["active"] else "inactive")
        sys.exit(0 if state["active"] else 3)
    elif action == "is-enabled":
        print("enabled")
    elif action in ("start", "restart"):
        env = HOST / "aegis-api.env"
        crash = unit == "aegis-api" and env.exists() and BAD_SETTING in env.read_text().splitlines()
        state.update(active=not crash, down_since=time.time() if crash else None, why="crashed" if crash else "")
    elif action in ("stop", "kill"):
        state.update(active=False, down_since=time.time(), why="killed" if action == "kill" else "stopped")
    (HOST / "units.json").write_text(json.dumps(units))
'''.replace("BAD_SETTING", repr(BAD_SETTING))

# a runbook stand-in for runbooks mode: leaves a mark with the variables it got, starts `standin_unit` on its host
# (unless standin_broken), pulls the model when given Ollama's URL
STANDIN_RUNBOOK = """\
- name: Runbook stand-in
  hosts: all
  gather_facts: false
  tasks:
    - name: Leave a mark
      ansible.builtin.copy:
        dest: "{{ standin_marks }}/{{ inventory_hostname }}-{{ standin_unit | default('model') }}.json"
        content: "{{ {'host': inventory_hostname, 'delegate_to': aegis_runbook_delegate_to,
                      'report_dir': aegis_report_dir, 'restart_peers': aegis_vector_db_restart_peers | default(none),
                      'broken': standin_broken | default(false)} | to_json }}"
        mode: "0644"
      delegate_to: localhost
    - name: Start the unit
      ansible.builtin.systemd_service:
        name: "{{ standin_unit }}"
        state: started
      when: standin_unit is defined and not standin_broken | default(false)
    - name: Pull the model
      ansible.builtin.uri:
        url: "{{ standin_ollama_url }}/api/pull"
        method: POST
        body_format: json
        body: {model: "{{ standin_model }}", stream: false}
      when: standin_ollama_url is defined
"""


class Handler(BaseHTTPRequestHandler):
    """Routes to the Fleet's answer(role, method, path, body)."""

    fleet: Fleet
    role: str

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null") if length else None
        code, payload = self.fleet.answer(self.role, method, self.path, body, self.headers)
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self._answer("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._answer("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._answer("DELETE")

    def log_message(self, *args) -> None:
        pass


class Fleet:
    """Stand-in hosts under `root`, the doubles of their services and the thread that plays systemd and the
    remediation service."""

    def __init__(self, root: Path, remediate: set[str] = frozenset(), restart_killed: bool = True) -> None:
        self.root, self.remediate, self.restart_killed = root, set(remediate), restart_killed
        self.model_missing_since: float | None = None
        self.servers: dict[str, ThreadingHTTPServer] = {}
        for host, units in UNITS.items():
            (root / host / "bin").mkdir(parents=True)
            (root / host / "units.json").write_text(json.dumps(
                {u: {"active": True, "down_since": None, "why": ""} for u in units}))
            systemctl = root / host / "bin" / "systemctl"
            systemctl.write_text(f"#!{sys.executable}\n{FAKE_SYSTEMCTL}")
            systemctl.chmod(0o755)
            python = root / host / "python"
            python.write_text(f'#!/bin/sh\nPATH="{root / host / "bin"}:$PATH" exec {MODULE_PYTHON} "$@"\n')
            python.chmod(0o755)
        self.env_file.write_text('AEGIS_TOP_K="5"\nAEGIS_LLM="ollama"\n')
        for role in ("api-1", "api-2", "lb", "alertmanager", "ollama"):
            handler = type(f"Handler_{role}", (Handler,), {"fleet": self, "role": role})
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers[role] = server
        self.running = True
        self.world = threading.Thread(target=self._world, daemon=True)
        self.world.start()

    def stop(self) -> None:
        self.running = False
        for server in self.servers.values():
            server.shutdown()

    def port(self, role: str) -> int:
        return self.servers[role].server_address[1]

    @property
    def env_file(self) -> Path:
        return self.root / "api-1" / "aegis-api.env"

    # -- units --------------------------------------------------------------------------------------------------

    @contextmanager
    def units(self, host: str):
        with open(self.root / host / "units.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self.root / host / "units.json"
            units = json.loads(path.read_text())
            yield units
            path.write_text(json.dumps(units))

    def unit(self, host: str, name: str) -> dict:
        with self.units(host) as units:
            return dict(units[name])

    def set_unit(self, host: str, name: str, active: bool, why: str = "") -> None:
        with self.units(host) as units:
            units[name] = {"active": active, "down_since": None if active else time.time(), "why": why}

    def start(self, host: str, name: str) -> None:
        crash = name == "aegis-api" and host == "api-1" and BAD_SETTING in self.env_file.read_text().splitlines()
        self.set_unit(host, name, not crash, "crashed" if crash else "")

    # -- what the doubles answer --------------------------------------------------------------------------------

    def api_ready(self, host: str) -> bool:
        return self.unit(host, "aegis-api")["active"] and self.unit("data", "qdrant")["active"]

    def alerts(self) -> list[dict]:
        now, alerts = time.time(), []

        def down_long(host: str, name: str) -> bool:
            state = self.unit(host, name)
            return not state["active"] and now - state["down_since"] >= ALERT_FOR

        for host in GROUPS["aegis_api"]:
            if down_long(host, "aegis-api"):
                alerts.append({"alertname": "AegisServiceDown", "service": "aegis-api",
                               "instance": f"127.0.0.1:{self.port(host)}", "priority": "P1"})
        if down_long("data", "qdrant"):
            alerts.append({"alertname": "AegisServiceDown", "service": "qdrant", "instance": "data:6333"})
        if down_long("gpu", "ollama"):
            alerts.append({"alertname": "AegisServiceDown", "service": "ollama", "instance": "http://gpu:11434"})
        if self.model_missing_since is not None and now - self.model_missing_since >= ALERT_FOR:
            alerts.append({"alertname": "OllamaModelGenerationFailure", "service": "ollama"})
        return [{"labels": labels, "status": {"state": "active"}, "startsAt": "2026-12-06T10:00:00Z"}
                for labels in alerts]

    def answer(self, role: str, method: str, path: str, body, headers) -> tuple[int, object]:
        if role in ("api-1", "api-2") and path == "/ready":
            return (200, {"status": "ready"}) if self.api_ready(role) else (503, {"status": "not ready"})
        if role == "lb" and (method, path) == ("POST", "/chat"):
            if headers.get("X-API-Key") != API_KEY:
                return 401, {"detail": "missing or invalid API key"}
            if not any(self.api_ready(h) for h in GROUPS["aegis_api"]):
                return 503, {"detail": "no server is available to handle this request"}
            degraded = not self.unit("gpu", "ollama")["active"] or self.model_missing_since is not None
            return 200, {"answer": "Aegis answers.", "sources": [{"source": "docs/index.md"}], "degraded": degraded,
                         "mode": "extractive" if degraded else "generated"}
        if role == "alertmanager" and path.startswith("/api/v2/alerts"):
            return 200, self.alerts()
        if role == "ollama" and (method, path) == ("DELETE", "/api/delete"):
            if self.model_missing_since is not None or body != {"model": MODEL}:
                return 404, {"error": f"model '{(body or {}).get('model')}' not found"}
            self.model_missing_since = time.time()
            return 200, {}
        if role == "ollama" and (method, path) == ("POST", "/api/pull"):
            self.model_missing_since = None
            return 200, {"status": "success"}
        return 404, {"detail": f"{method} {path}: not a route of {role}"}

    # -- systemd's Restart= and the remediation service ---------------------------------------------------------

    def _world(self) -> None:
        while self.running:
            now = time.time()
            for host, names in UNITS.items():
                for name in names:
                    state = self.unit(host, name)
                    if state["active"]:
                        continue
                    down_for = now - state["down_since"]
                    if state["why"] == "killed" and self.restart_killed and down_for >= 1.0:
                        self.start(host, name)
                    elif name in self.remediate and down_for >= ALERT_FOR + REPAIR_AFTER:
                        if name == "aegis-api":  # runbook_api_failure re-applies the configuration
                            self.env_file.write_text("\n".join(
                                line for line in self.env_file.read_text().splitlines() if line != BAD_SETTING) + "\n")
                        self.start(host, name)
            if ("model" in self.remediate and self.model_missing_since is not None
                    and now - self.model_missing_since >= ALERT_FOR + REPAIR_AFTER):
                self.model_missing_since = None
            time.sleep(0.1)

    # -- the inventory ------------------------------------------------------------------------------------------

    def inventory(self, environment: str = "staging") -> dict:
        def host(name: str) -> dict:
            return {"ansible_connection": "local", "ansible_python_interpreter": str(self.root / name / "python")}

        groups = {group: {"hosts": {h: host(h) for h in hosts}} for group, hosts in GROUPS.items()}
        for name in GROUPS["aegis_api"]:
            groups["aegis_api"]["hosts"][name]["aegis_api_port"] = self.port(name)
        groups["aegis_api"]["vars"] = {"aegis_api_keys": [API_KEY], "aegis_api_llm_model": MODEL}
        groups["loadbalancer"]["vars"] = {"loadbalancer_port": self.port("lb")}
        groups["monitoring"]["vars"] = {
            "monitoring_alertmanager_listen_address": f"127.0.0.1:{self.port('alertmanager')}"}
        groups["ollama"]["vars"] = {"ollama_port": self.port("ollama")}
        return {"all": {"vars": {"aegis_environment": environment}, "children": groups}}


@pytest.fixture
def stand_ins(tmp_path):
    """stand_ins(**Fleet options) -> a Fleet of stand-in hosts, stopped after the test."""
    made = []

    def make(**kwargs) -> Fleet:
        made.append(Fleet(tmp_path / f"fleet{len(made)}", **kwargs))
        return made[-1]

    yield make
    for one in made:
        one.stop()


# short waits; generous enough for a loaded machine (each look is an Ansible task of a second or more)
FAST = {"aegis_game_day_poll_interval": 0.5, "aegis_game_day_detect_timeout": 20,
        "aegis_game_day_repair_timeout": 20, "aegis_game_day_self_heal_window": 4, "aegis_game_day_settle_timeout": 15,
        "aegis_game_day_observe": 2, "aegis_game_day_chat_timeout": 5, "aegis_game_day_http_timeout": 5,
        "aegis_game_day_client_pause": 0.05, "aegis_game_day_become": False}


def game_day(tmp_path: Path, inventory: dict, expect_failure: bool = False, check: bool = False, **variables) -> Run:
    workdir = tmp_path / f"run-{time.monotonic_ns()}"
    reports = workdir / "reports"
    workdir.mkdir()
    (workdir / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (workdir / "vars.json").write_text(json.dumps({"aegis_report_dir": str(reports), **variables}))
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(workdir / "hosts.yml"),
           "-e", f"@{workdir / 'vars.json'}", str(PLAYBOOKS / "game_day.yml")] + (["--check"] if check else [])
    run = run_ansible(cmd, workdir, reports, "game_day", expect_failure)
    run.reports = reports  # type: ignore[attr-defined]
    return run


# -- the guard ------------------------------------------------------------------------------------------------------

UNREACHABLE = {"ansible_host": "192.0.2.1", "ansible_connection": "ssh", "ansible_ssh_timeout": 2}


def unreachable_inventory(environment: str | None = "production", drop: str = "") -> dict:
    groups = {group: {"hosts": {h: dict(UNREACHABLE) for h in hosts}} for group, hosts in GROUPS.items()
              if group != drop}
    return {"all": {"vars": {"aegis_environment": environment} if environment else {}, "children": groups}}


def assert_refused(run: Run, *phrases: str) -> None:
    assert run.rc != 0, run.describe()
    for phrase in phrases:
        assert phrase in run.stdout, run.describe()
    assert "Nothing was changed." in run.stdout
    # only the guard's checks ran (no host was contacted), the last of them failed; before them, the check of the
    # runbook variables' names (aegis.rag.runbook_defaults)
    tasks = [task for task in re.findall(r"^TASK \[(.*?)\]", run.stdout, re.MULTILINE)
             if not task.split(" : ")[0].endswith("runbook_defaults")]
    assert tasks and all(task.startswith("Refuse ") for task in tasks), tasks
    assert "changed=0" in run.stdout and "unreachable=0" in run.stdout and "failed=1" in run.stdout, run.describe()
    assert run.report == {} and not run.reports.exists(), "a refused game day wrote a report"


def test_a_production_inventory_is_refused_and_nothing_runs(tmp_path):
    run = game_day(tmp_path, unreachable_inventory("production"), expect_failure=True)
    assert_refused(run, "game day refused: the inventory", "is production (aegis_environment on api-1, api-2, lb, gpu, data)",
                   "aegis_game_day_force=true")
    assert "Install the client loop" not in run.stdout and "Inject" not in run.stdout


def test_an_inventory_that_does_not_say_its_environment_is_refused(tmp_path):
    run = game_day(tmp_path, unreachable_inventory(None), expect_failure=True)
    assert_refused(run, "does not say which environment it is (no aegis_environment on api-1")


def test_force_passes_the_guard_and_check_mode_only_prints_the_plan(tmp_path):
    run = game_day(tmp_path, unreachable_inventory("production"), check=True, aegis_game_day_force=True,
                   aegis_game_day_faults="api_unit_stopped, qdrant_stopped")
    assert ("Would inject, one at a time, in closed_loop mode: api_unit_stopped on api-1, qdrant_stopped on data; "
            "alerts from http://127.0.0.1:9093 on lb") in run.stdout, run.describe()
    # ok: the name check and its mark (aegis.rag.runbook_defaults), the four refusals passed, the plan
    assert "ok=7" in run.stdout and "changed=0" in run.stdout and "unreachable=0" in run.stdout, run.describe()
    assert not run.reports.exists()


def test_unknown_fault_is_refused_naming_the_known_ones(tmp_path):
    run = game_day(tmp_path, unreachable_inventory("staging"), expect_failure=True,
                   aegis_game_day_faults="api_unit_stopped,disk_full")
    assert_refused(run, "unknown fault(s) disk_full; known faults: api_unit_killed, api_unit_stopped, "
                        "api_bad_setting, qdrant_stopped, ollama_stopped, redis_stopped, model_deleted.")


def test_unknown_mode_and_missing_groups_are_refused(tmp_path):
    run = game_day(tmp_path, unreachable_inventory("staging"), expect_failure=True, aegis_game_day_mode="chaos")
    assert_refused(run, "unknown mode chaos (closed_loop or runbooks)")
    run = game_day(tmp_path, unreachable_inventory("staging", drop="monitoring"), expect_failure=True,
                   aegis_game_day_faults=["ollama_stopped"])
    assert_refused(run, "the inventory has no host in monitoring")


# -- whole game days on the stand-in hosts --------------------------------------------------------------------------

def section_of(run: Run) -> tuple[dict, dict]:
    """The game day's report section, and its faults by name."""
    section = run.report["hosts"]["localhost"]
    return section, {f["fault"]: f for f in section["data"]["faults"]}


def assert_chart(run: Run, section: dict, faults: list[str]) -> None:
    chart = Path(section["data"]["chart"])
    assert chart.parent == run.reports and chart.name.startswith("game_day-") and chart.suffix == ".svg"
    root = ET.fromstring(chart.read_text())
    svg = "{http://www.w3.org/2000/svg}"
    assert [g.get("data-fault") for g in root.iter(f"{svg}g") if g.get("class") == "fault"] == faults
    assert root.find(f"{svg}title").text.endswith(f"{section['data']['score']['score']} faults repaired")
    assert f"[{chart.name}]({chart.name})" in run.markdown  # linked from the Markdown report, beside it


@pytest.mark.slow
def test_closed_loop_measures_each_repair_and_fails_on_the_fault_nothing_detects(tmp_path, stand_ins):
    """A killed unit that heals itself, a bad setting the remediation stand-in repairs (as it would a stopped unit:
    api_unit_stopped on the fleet, tests/fleet/test_self_healing.py), and a fault no alert watches."""
    world = stand_ins(remediate={"aegis-api"})
    run = game_day(tmp_path, world.inventory(), expect_failure=True, **FAST,
                   aegis_game_day_api_env_file=str(world.env_file),
                   aegis_game_day_faults=["api_unit_killed", "api_bad_setting", "redis_stopped"])
    section, faults = section_of(run)
    assert section["status"] == "failed" and section["data"]["mode"] == "closed_loop"
    assert {name: f["outcome"] for name, f in faults.items()} == {
        "api_unit_killed": "self-healed", "api_bad_setting": "repaired", "redis_stopped": "undetected"}
    fault = faults["api_bad_setting"]
    assert fault["host"] == "api-1" and fault["alert"] == "AegisServiceDown", fault
    assert ALERT_FOR - 1.5 <= fault["seconds_to_detect"] <= ALERT_FOR + 10, fault
    assert 0 < fault["seconds_to_repair"] <= FAST["aegis_game_day_repair_timeout"], fault
    assert fault["firing"][0]["service"] == "aegis-api" and fault["undone_at"] is None
    # the second API host answered through the load balancer the whole time
    assert all(f["answered"] > 0 and f["failed_requests"] == 0 for f in faults.values()), faults
    healed = faults["api_unit_killed"]
    assert healed["detected_at"] is None and 0 < healed["seconds_to_heal"] <= FAST["aegis_game_day_self_heal_window"] + 15
    redis = faults["redis_stopped"]
    assert redis["failed"] and redis["alert"] is None and redis["undone_at"] > redis["injected_at"]
    assert "no alert rule watches it" in redis["note"] and "undone by the game day" in redis["note"]
    # the game day undid what nothing repaired, and the repairs held
    assert world.unit("data", "redis-server")["active"] and world.unit("api-1", "aegis-api")["active"]
    assert BAD_SETTING not in world.env_file.read_text()
    score = section["data"]["score"]
    assert score["score"] == "2/3" and score["failed_faults"] == ["redis_stopped"]
    assert score["median_detect_s"] is not None and score["median_repair_s"] is not None
    assert "game day: 2/3 faults repaired; failed: redis_stopped on data: undetected" in run.stdout
    assert [t["title"] for t in section["tables"]] == ["Faults", "Score"]
    assert "| api_bad_setting | api-1 | AegisServiceDown |" in run.markdown
    assert_chart(run, section, ["api_unit_killed", "api_bad_setting", "redis_stopped"])
    assert API_KEY not in run.stdout and API_KEY not in run.markdown and API_KEY not in json.dumps(run.report)


@pytest.mark.slow
def test_runbooks_mode_runs_the_runbook_on_the_alert_and_undoes_what_it_did_not_repair(tmp_path, stand_ins):
    world = stand_ins()  # no remediation service: the game day runs the runbooks
    marks = tmp_path / "marks"
    marks.mkdir()
    standin = tmp_path / "standin.yml"
    standin.write_text(STANDIN_RUNBOOK)
    runbook_vars = tmp_path / "runbook-vars.json"  # read by the runbook only: its template is the runbook's
    runbook_vars.write_text(json.dumps({"aegis_runbook_delegate_to": "{{ inventory_hostname }}",
                                        "standin_marks": str(marks)}))
    overrides = {
        "qdrant_stopped": {"runbook": str(standin), "runbook_vars": {"standin_unit": "qdrant"}},
        "ollama_stopped": {"runbook": str(standin), "runbook_vars": {"standin_unit": "ollama", "standin_broken": True}},
        "model_deleted": {"runbook": str(standin), "runbook_vars": {
            "standin_ollama_url": f"http://127.0.0.1:{world.port('ollama')}", "standin_model": MODEL}},
    }
    run = game_day(tmp_path, world.inventory(), expect_failure=True, **FAST, aegis_game_day_mode="runbooks",
                   aegis_game_day_faults=["qdrant_stopped", "ollama_stopped", "model_deleted"],
                   aegis_game_day_overrides=overrides, aegis_game_day_runbook_vars_file=str(runbook_vars))
    section, faults = section_of(run)
    assert {name: f["outcome"] for name, f in faults.items()} == {
        "qdrant_stopped": "repaired", "ollama_stopped": "not repaired", "model_deleted": "repaired"}
    assert {name: (f["host"], f["runbook"]["rc"], f["runbook"]["limit"]) for name, f in faults.items()} == {
        "qdrant_stopped": ("data", 0, "data"), "ollama_stopped": ("gpu", 0, "gpu"), "model_deleted": ("gpu", 0, "gpu")}
    assert faults["model_deleted"]["alert"] == "OllamaModelGenerationFailure"
    # while Qdrant was down no API host was ready: every request through the load balancer failed
    assert faults["qdrant_stopped"]["failed_requests"] > 0
    assert len(faults["qdrant_stopped"]["failure_times"]) == faults["qdrant_stopped"]["failed_requests"]
    assert faults["qdrant_stopped"]["request_errors"] == {"HTTP 503": faults["qdrant_stopped"]["failed_requests"]}
    # Ollama down or its model gone: answers went on, degraded
    assert faults["ollama_stopped"]["failed_requests"] == 0 and faults["ollama_stopped"]["degraded"] > 0
    unrepaired = faults["ollama_stopped"]
    assert unrepaired["failed"] and unrepaired["repaired_at"] is None and unrepaired["undone_at"] is not None
    assert "not repaired within 20 s of the alert" in unrepaired["note"] and world.unit("gpu", "ollama")["active"]
    # each runbook ran once, for the faulted host, with the vars file untouched and the fault's own variables
    got = {p.stem: json.loads(p.read_text()) for p in marks.glob("*.json")}
    assert got == {
        "data-qdrant": {"host": "data", "delegate_to": "data", "report_dir": str(run.reports), "restart_peers": True,
                        "broken": False},
        "gpu-ollama": {"host": "gpu", "delegate_to": "gpu", "report_dir": str(run.reports), "restart_peers": None,
                       "broken": True},
        "gpu-model": {"host": "gpu", "delegate_to": "gpu", "report_dir": str(run.reports), "restart_peers": None,
                      "broken": False}}
    assert section["data"]["score"]["score"] == "2/3" and "failed: ollama_stopped on gpu: not repaired" in run.stdout
    assert_chart(run, section, ["qdrant_stopped", "ollama_stopped", "model_deleted"])


@pytest.mark.slow
def test_a_fleet_that_is_not_healthy_gets_no_fault(tmp_path, stand_ins):
    world = stand_ins()
    world.set_unit("api-2", "aegis-api", False, "stopped")
    run = game_day(tmp_path, world.inventory(), expect_failure=True, **{**FAST, "aegis_game_day_settle_timeout": 2},
                   aegis_game_day_faults=["api_unit_stopped", "qdrant_stopped"])
    section, faults = section_of(run)
    assert {f["outcome"] for f in faults.values()} == {"not run"}
    assert all("the fleet was not healthy before the game day: api-2: /ready HTTP 503" in f["note"]
               for f in faults.values()), faults
    assert "game_day_inject.yml" not in run.stdout, run.describe()  # never included
    assert world.unit("api-1", "aegis-api")["active"] and world.unit("data", "qdrant")["active"]
    assert section["data"]["score"]["score"] == "0/2" and "stopped early: the fleet was not healthy" in run.stdout
    assert_chart(run, section, ["api_unit_stopped", "qdrant_stopped"])
