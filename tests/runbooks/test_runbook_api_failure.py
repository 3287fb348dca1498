"""playbooks/runbook_api_failure.yml on loopback.

Against a real Aegis API (the `aegis_api` host, local connection, aegis_runbook_api_url): a healthy API changes
nothing (and /chat answers with sources); a dependency down on every API host is named and not "repaired" by a
restart; an API that does not answer and has no unit to restart fails with a report of where it stopped; check
mode says what it would do; the disk of the data directory is a percentage also on a tmpfs (or 'unknown').

Against doubles of what the hosts run: HAProxy's runtime API (`FakeHAProxy`, driven by the loadbalancer role's
own aegis-haproxy-server) and API hosts (`FakeApiHost`: systemctl and journalctl on their PATH, the release links,
the environment file, /health and /ready from the state a "start" leaves). With them: a ready host left in
maintenance is put back, a broken one stays drained; check mode plans the rollback of a broken release to the
previous one; a host whose dependency fails from it alone is not rolled back.

Not here: systemd itself, HAProxy's health checks, real releases. The fleet (tests/fleet/
test_runbook_api_failure.py) breaks and heals those: an invalid setting quoted from the journal and the environment
file re-applied from aegis.rag.aegis_api, a broken release rolled back with `previous` kept off it, a dependency
down on every API host (and the API ready again once it is back)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.collection.conftest import VENV_BIN
from tests.doubles.haproxy import FakeHAProxy
from tests.module_python import MODULE_PYTHON
from tests.runbooks.conftest import PLAYBOOKS, Run, run_ansible

pytestmark = pytest.mark.slow

API_KEY = "runbook-api-test-key"


@pytest.fixture(scope="module")
def api(tmp_path_factory, local_embedder):
    """A real Aegis API in embedded mode (local embedder, extractive answers), one document in. One for the module:
    the runbook only reads it (probes, /metrics, /chat), it has no unit to restart."""
    from tests.collection.aegis_app import AegisServer

    server = AegisServer(tmp_path_factory.mktemp("aegis-data"), embedder=local_embedder, api_keys=[API_KEY]).start()
    server.add_document(headers={"Authorization": f"Bearer {API_KEY}"})
    yield server
    server.stop()


@pytest.fixture
def api_on_qdrant(tmp_path, local_embedder, start_double):
    """A real Aegis API on its own Qdrant double (server mode), one document in; returns (server, qdrant)."""
    from tests.collection.aegis_app import AegisServer

    qdrant = start_double("qdrant")
    server = AegisServer(tmp_path / "aegis-data", embedder=local_embedder, api_keys=[API_KEY],
                         qdrant_url=qdrant.url, breaker_failure_threshold=1000).start()
    server.add_document(headers={"Authorization": f"Bearer {API_KEY}"})
    yield server, qdrant
    server.stop()


@pytest.fixture
def shm_dir():
    """A directory on /dev/shm (a tmpfs)."""
    folder = Path(tempfile.mkdtemp(prefix="aegis-runbook-", dir="/dev/shm"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_api(run_playbook, url, **kwargs):
    return run_playbook("runbook_api_failure", api_hosts={"api-a": url}, aegis_runbook_api_key=API_KEY, **kwargs)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_healthy_api_changes_nothing_and_chat_answers_with_sources(run_playbook, api, shm_dir):
    # a data directory on a tmpfs: Ansible's mount facts leave tmpfs and overlay mounts out, df does not
    out = run_api(run_playbook, api.url, aegis_runbook_api_chat_url=api.url, aegis_runbook_api_data_dir=str(shm_dir))
    host = out.report["hosts"]["api-a"]
    assert out.report["status"] == "ok" and host["status"] == "ok", host
    assert host["actions"] == []
    assert host["data"]["diagnosis"]["state"] == "ready"
    deps = {d["name"]: d for d in host["data"]["diagnosis"]["dependencies"]}
    assert deps["vector_store"]["status"] == "ok" and deps["vector_store"]["required"] is True
    assert {"vector_store", "embedder", "llm", "cache"} <= set(deps)
    assert host["data"]["chat"]["status"] == 200 and host["data"]["chat"]["sources"] >= 1
    assert "/chat answered with" in host["summary"]
    assert host["tables"][0]["rows"][0] == ["/health", "ok", "ok"]
    assert host["tables"][1]["rows"][0] == ["unit aegis-api", "not read (no systemd)"]
    assert host["data"]["resources"]["memory_total_mb"], host["data"]["resources"]  # facts were read
    [disk] = [row for row in host["tables"][1]["rows"] if row[0].startswith("disk used %")]
    assert disk[0] == f"disk used % of {shm_dir} (/dev/shm)" and 0 <= disk[1] <= 100, disk
    assert host["data"]["resources"]["disk_mount"] == "/dev/shm"
    assert "changed=0" in out.stdout and "failed=0" in out.stdout
    assert API_KEY not in out.stdout and API_KEY not in out.markdown


def test_check_mode_on_a_healthy_api_says_nothing_to_do(run_playbook, api):
    out = run_api(run_playbook, api.url, check=True)
    host = out.report["hosts"]["api-a"]
    assert out.report["check_mode"] is True and host["status"] == "ok" and host["actions"] == []
    assert host["tables"][0]["columns"] == ["check", "at diagnosis"]


def test_dependency_down_is_named_and_no_restart_is_tried(run_playbook, api_on_qdrant):
    server, qdrant = api_on_qdrant
    qdrant.stop()
    out = run_api(run_playbook, server.url, expect_failure=True)
    host = out.report["hosts"]["api-a"]
    assert host["status"] == "failed" and host["actions"] == []
    assert host["data"]["diagnosis"]["state"] == "not ready"
    assert host["data"]["dependency_outage"] == ["vector_store"]
    assert "required dependency vector_store fails" in host["findings"]
    assert any(f.startswith("vector_store fails on every API host") for f in host["findings"]), host["findings"]
    assert "see runbook_vector_db" in host["findings"]
    assert "not repaired: vector_store fails on every API host" in host["summary"]
    assert "runbook_api_failure failed on api-a" in out.stdout
    [row] = [r for r in host["tables"][0]["rows"] if r[0] == "dependency vector_store"]
    assert row[1].startswith("failed: ")

    # the same, in check mode: nothing it would do either (Qdrant back and a second run: the fleet's test)
    dry = run_api(run_playbook, server.url, check=True, expect_failure=True)
    assert dry.report["hosts"]["api-a"]["actions"] == []


def test_api_down_without_a_unit_fails_clearly(run_playbook, tmp_path):
    url = closed_port_url()
    out = run_api(run_playbook, url, expect_failure=True, aegis_runbook_api_data_dir=str(tmp_path / "missing"))
    host = out.report["hosts"]["api-a"]
    [disk] = [row for row in host["tables"][1]["rows"] if row[0].startswith("disk used %")]
    assert disk[1].startswith("unknown: ") and "No such file or directory" in disk[1], disk
    assert host["status"] == "failed" and host["actions"] == []
    assert host["data"]["diagnosis"]["state"] == "down"
    assert any(f.startswith(f"the API does not answer /health at {url}") for f in host["findings"]), host
    assert "stopped at restart" in host["summary"]
    assert "cannot be restarted: no systemd on api-a" in host["summary"]
    assert "stopped at restart" in out.markdown

    dry = run_api(run_playbook, url, check=True, expect_failure=True)
    assert "cannot be restarted" in dry.report["hosts"]["api-a"]["summary"]


# ---------------------------------------------------------------------------------------------------------------
# Doubles of the hosts' services: HAProxy's runtime API, and API hosts with systemd, journal and releases.

# systemctl and journalctl of a FakeApiHost (one script, called by either name from the host's bin/). A start
# runs `current`: a release with a BROKEN file crash-loops (journal lines as the real unit writes them), anything
# else runs.
FAKE_SYSTEMD = r'''
import json, os, sys, time
from pathlib import Path

ROOT = Path(__file__).parent.parent
STATE, JOURNAL = ROOT / "state.json", ROOT / "journal.log"
EXITED = "aegis-api.service: Main process exited, code=exited, status=%s"
FAILED = "aegis-api.service: Failed with result 'exit-code'."


def log(*lines):
    with JOURNAL.open("a") as journal:
        journal.writelines("%f\t%s\n" % (time.time(), line) for line in lines)


def start(state):
    release = (ROOT / "opt/aegis/current").resolve()
    state.update(starts=state["starts"] + 1, release=release.name)
    if (release / "BROKEN").exists():
        state["running"] = False
        log("Traceback (most recent call last):", '  File "/opt/aegis/current/venv/bin/aegis-rag", line 5',
            "ModuleNotFoundError: No module named 'aegis_rag'", EXITED % "1/FAILURE", FAILED)
    else:
        state["running"] = True
        log("Started aegis-api.service - Aegis RAG API (aegis.rag.aegis_api).")


def systemctl(args):
    state = json.loads(STATE.read_text())
    action = args[0] if args else ""
    if action == "is-system-running":
        print("running")
    elif action == "show":
        print("Id=aegis-api.service\nLoadState=loaded\nUnitFileState=enabled\nActiveState=%s\nSubState=%s\n"
              "NRestarts=%d\nExecMainStatus=%d\nActiveEnterTimestamp=Thu 2026-01-01 00:00:00 UTC" % (
                  ("active", "running", state["starts"], 0) if state["running"]
                  else ("activating", "auto-restart", state["starts"], 1)))
    elif action in ("is-enabled",):
        print("enabled")
    elif action == "is-active":
        print("active" if state["running"] else "activating")
    elif action in ("start", "restart", "try-restart", "reload-or-restart"):
        start(state)
    elif action == "stop":
        state["running"] = False
    new = STATE.with_suffix(".new")
    new.write_text(json.dumps(state))
    os.replace(new, STATE)
    return 0


def journalctl(args):
    """As systemd 252's: with --since, --lines keeps the oldest lines unless --reverse (newest first)."""
    since = args[args.index("--since") + 1] if "--since" in args else ""
    start = float(since[1:]) if since.startswith("@") else 0.0
    lines = int(args[args.index("--lines") + 1]) if "--lines" in args else None
    found = []
    for line in JOURNAL.read_text().splitlines() if JOURNAL.exists() else []:
        stamp, text = line.split("\t", 1)
        if float(stamp) >= start:
            found.append(text)
    if "--reverse" in args:
        found.reverse()
    print("\n".join(found[:lines]))
    return 0


sys.exit(systemctl(sys.argv[1:]) if Path(sys.argv[0]).name == "systemctl" else journalctl(sys.argv[1:]))
'''


class FakeApiHost:
    """An API host without its processes, under `root`: /opt/aegis/releases/<name> (each with the role's marker),
    `current` and `previous`, /etc/aegis/aegis-api.env, systemctl and journalctl (FAKE_SYSTEMD) first on the PATH
    of its Python (`python`, its ansible_python_interpreter), and /health and /ready on 127.0.0.1:<port> from the
    state the last start left (/ready fails on vector_store while `deps_down`)."""

    def __init__(self, root: Path, releases: tuple[str, ...] = ("r1",), current: str = "r1",
                 previous: str | None = None) -> None:
        self.root = root
        for name in releases:
            (root / "opt/aegis/releases" / name).mkdir(parents=True)
            (root / "opt/aegis/releases" / name / ".aegis-release").write_text("0" * 64 + "\n")
        (root / "etc/aegis").mkdir(parents=True)
        (root / "bin").mkdir()
        for name in ("systemctl", "journalctl"):
            (root / "bin" / name).write_text(f"#!{sys.executable}\n{FAKE_SYSTEMD}")
            (root / "bin" / name).chmod(0o755)
        self.python = root / "python"
        self.python.write_text(f'#!/bin/sh\nPATH="{root / "bin"}:$PATH" exec {MODULE_PYTHON} "$@"\n')
        self.python.chmod(0o755)
        self.state_file = root / "state.json"
        self.state_file.write_text(json.dumps({"running": False, "starts": 0, "deps_down": False}))
        self.link("current", current)
        if previous:
            self.link("previous", previous)
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                code, data, kind = double.respond(self.path)
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def respond(self, path: str) -> tuple[int, bytes, str]:
        """Status, body and content type of a GET (subclasses add pages)."""
        code, body = self.answer(path)
        return code, json.dumps(body).encode(), "application/json"

    def answer(self, path: str) -> tuple[int, dict]:
        state = self.state
        if not state["running"]:
            return 503, {"detail": "the fake API is not running"}
        if path == "/health":
            return 200, {"status": "ok"}
        checks = {name: {"status": "ok", "required": name in ("vector_store", "embedder"), "latency_ms": 1.0}
                  for name in ("vector_store", "embedder", "llm", "cache")}
        if state["deps_down"]:
            checks["vector_store"].update(status="failed", detail="[Errno 111] Connection refused")
        ready = all(c["status"] == "ok" for c in checks.values() if c["required"])
        return (200 if ready else 503), {"status": "ready" if ready else "not ready", "checks": checks}

    @property
    def current(self) -> Path:
        return self.root / "opt/aegis/current"

    @property
    def previous(self) -> Path:
        return self.root / "opt/aegis/previous"

    @property
    def env_file(self) -> Path:
        return self.root / "etc/aegis/aegis-api.env"

    def release(self, name: str) -> Path:
        return self.root / "opt/aegis/releases" / name

    def link(self, which: str, release: str) -> None:
        link = self.root / "opt/aegis" / which
        link.unlink(missing_ok=True)
        link.symlink_to(self.release(release))

    def linked(self, which: str) -> str:
        return Path(os.readlink(self.root / "opt/aegis" / which)).name

    def systemctl(self, *args: str) -> None:
        subprocess.run([str(self.root / "bin/systemctl"), *args], check=True)

    def set(self, **changes) -> None:
        self.state_file.write_text(json.dumps({**self.state, **changes}))

    def inventory(self) -> dict:
        """Its variables in the inventory: the runbook's (links, environment, URL) and the role's port."""
        return {"ansible_connection": "local", "ansible_python_interpreter": str(self.python),
                "aegis_runbook_api_url": self.url, "aegis_api_port": self.port,
                "aegis_runbook_api_current_link": str(self.current),
                "aegis_runbook_api_previous_link": str(self.previous),
                "aegis_runbook_api_env_file": str(self.env_file)}

    def role_paths(self) -> dict:
        """aegis.rag.aegis_api's paths (role variables: extra vars only) moved onto this host's folder."""
        return {"_aegis_api_current": str(self.current), "_aegis_api_previous": str(self.previous),
                "_aegis_api_config_dir": str(self.root / "etc/aegis"), "_aegis_api_env_file": str(self.env_file),
                "_aegis_api_unit_file": str(self.root / "etc/aegis-api.service")}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_hosts(tmp_path: Path, kind: type[FakeApiHost] = FakeApiHost):
    """make(name, **options) -> a `kind` under tmp_path/<name>; each stopped at the end (a fixture's body)."""
    made: list[FakeApiHost] = []

    def make(name: str, **options) -> FakeApiHost:
        made.append(kind(tmp_path / name, **options))
        return made[-1]

    yield make
    for host in made:
        host.stop()


@pytest.fixture
def fake_hosts(tmp_path):
    """fake_hosts(name, **options) -> FakeApiHost under tmp_path/<name>, stopped at the end."""
    yield from make_hosts(tmp_path)


@pytest.fixture
def haproxy():
    """haproxy(servers) -> FakeHAProxy, stopped at the end."""
    made: list[FakeHAProxy] = []

    def make(servers: dict[str, str]) -> FakeHAProxy:
        made.append(FakeHAProxy(servers))
        return made[-1]

    yield make
    for double in made:
        double.stop()


@pytest.fixture
def listening():
    """A TCP port that accepts connections (a dependency that answers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.fixture
def runbook(tmp_path):
    """runbook(api_hosts={name: inventory vars}, lb=None or a FakeHAProxy, check=False, expect_failure=False,
    playbook=None, **extra_vars) -> Run: the runbook (or another playbook) with the `aegis_api` group and, with
    `lb`, a `loadbalancer` group of one host that reaches the double through the role's tool. become is off (the
    test runs as the user it runs as); the API keys are API_KEY; /chat is not asked unless
    aegis_runbook_api_chat_url is given."""
    counter = {"n": 0}

    def run(api_hosts: dict, lb: FakeHAProxy | None = None, check: bool = False, expect_failure: bool = False,
            playbook: Path | None = None, **extra_vars) -> Run:
        counter["n"] += 1
        workdir = tmp_path / f"runbook{counter['n']}"
        reports = workdir / "reports"
        workdir.mkdir()
        groups = {"aegis_api": {"hosts": api_hosts}}
        variables = {"aegis_report_dir": str(reports), "ansible_become": False, "aegis_api_keys": [API_KEY],
                     "aegis_runbook_api_chat_url": "", "aegis_runbook_api_host_facts": False,
                     # a FakeApiHost answers /ready as soon as its start returns: one more look 2 s later (a
                     # host that stays down is not waited for longer)
                     "aegis_runbook_api_restart_wait": 2, "aegis_api_ready_timeout": 10,
                     "aegis_runbook_latency_window": 1}
        if lb is not None:
            groups["loadbalancer"] = {"hosts": {"lb-a": {
                "ansible_connection": "local", "ansible_python_interpreter": MODULE_PYTHON,
                "loadbalancer_admin_socket": lb.socket}}}
            variables.update(aegis_runbook_api_lb_tool=str(lb.tool), _loadbalancer_server_tool=str(lb.tool),
                             loadbalancer_enable_timeout=5, loadbalancer_drain_timeout=5)
        variables.update(extra_vars)
        (workdir / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": groups}}))
        (workdir / "vars.json").write_text(json.dumps(variables))
        cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(workdir / "hosts.yml"), "-e", f"@{workdir / 'vars.json'}",
               str(playbook or PLAYBOOKS / "runbook_api_failure.yml"), "--diff"] + (["--check"] if check else [])
        return run_ansible(cmd, workdir, reports, "runbook_api_failure", expect_failure)

    return run


def write_role_environment(runbook, tmp_path, host: FakeApiHost, **role_vars) -> None:
    """/etc/aegis/aegis-api.env of `host` as aegis.rag.aegis_api writes it (tasks_from: configure, whose handler
    starts the fake API and waits for /ready)."""
    play = tmp_path / "configure.yml"
    play.write_text(yaml.safe_dump([{"name": "Configure", "hosts": "aegis_api", "gather_facts": False, "tasks": [
        {"name": "Configure", "ansible.builtin.include_role": {"name": "aegis.rag.aegis_api",
                                                                "tasks_from": "configure"}}]}]))
    runbook({"api-a": host.inventory()}, playbook=play, **host.role_paths(), **role_vars)
    assert host.state["running"], host.state


def test_a_ready_host_held_in_maintenance_is_put_back_a_broken_one_stays_drained(runbook, api, haproxy):
    """Capacity: api-a and api-b are the same healthy API, api-b left in maint by an earlier run; api-c does not
    answer (and has no unit here): api-b is put back, api-c stays in maint."""
    lb = haproxy({"api-a": "ready", "api-b": "maint", "api-c": "maint"})
    hosts = {"api-a": {"aegis_runbook_api_url": api.url}, "api-b": {"aegis_runbook_api_url": api.url},
             "api-c": {"aegis_runbook_api_url": closed_port_url()}}
    hosts = {name: {"ansible_connection": "local", "ansible_python_interpreter": MODULE_PYTHON, **v}
             for name, v in hosts.items()}

    dry = runbook(hosts, lb=lb, check=True, expect_failure=True)
    assert dry.host("api-b")["actions"] == ["would put back on the load balancers (it was maint on lb-a)"]
    assert lb.admin == {"api-a": "ready", "api-b": "maint", "api-c": "maint"}

    out = runbook(hosts, lb=lb, expect_failure=True)
    b, c = out.host("api-b"), out.host("api-c")
    assert b["status"] == "changed" and b["actions"] == ["put back on the load balancers (it was maint on lb-a)"], b
    assert "lb-a holds it out of the pool (maint) though it is ready: put back" in b["findings"]
    assert b["data"]["load_balancers"]["diagnosis"] == [{"lb": "lb-a", "admin": "maint", "status": "MAINT",
                                                          "sessions": 0}]
    assert b["data"]["load_balancers"]["after"][0]["admin"] == "ready"
    assert ["lb-a", "maint, MAINT, 0 sessions", "ready, UP, 0 sessions"] in b["tables"][2]["rows"]
    assert out.host("api-a")["status"] == "ok" and out.host("api-a")["actions"] == []
    assert c["status"] == "failed" and "cannot be restarted" in c["summary"], c
    assert lb.admin == {"api-a": "ready", "api-b": "ready", "api-c": "maint"}
    # No second run: api-b now is what api-a was in this one (the same API, ready on lb-a), and api-a's outcome
    # above (ok, no action) is what a second run gives api-b; api-c stayed in maint (lb.admin above).


def test_check_mode_plans_the_rollback_of_a_broken_release_to_the_previous_one(runbook, fake_hosts, haproxy, tmp_path,
                                                                              listening):
    """api-a was switched to r2, which crash-loops (ModuleNotFoundError); api-b runs r1. Check mode plans the
    rollback to r1, the previous release (not to r2, the broken current one), and moves no link. The rollback itself,
    `previous` kept off the broken release and a second run changing nothing: the fleet's
    test_a_broken_release_is_rolled_back_to_the_fleet_s_release."""
    a = fake_hosts("api-a", releases=("r1", "r2"), current="r1")
    b = fake_hosts("api-b", releases=("r1",), current="r1")
    qdrant = {"aegis_api_qdrant_url": f"http://127.0.0.1:{listening}"}
    write_role_environment(runbook, tmp_path, a, **qdrant)
    b.systemctl("start", "aegis-api")
    (a.release("r2") / "BROKEN").touch()
    a.link("previous", "r1")
    a.link("current", "r2")
    a.systemctl("restart", "aegis-api")
    lb = haproxy({"api-a": "ready", "api-b": "ready"})
    run = {"api_hosts": {"api-a": a.inventory(), "api-b": b.inventory()}, "lb": lb, **a.role_paths(), **qdrant}

    dry = runbook(**run, check=True)
    assert "would roll back to r2" not in " ".join(dry.host("api-a")["actions"])
    assert any(x.startswith("would roll back to r1 if") for x in dry.host("api-a")["actions"]), dry.host("api-a")
    assert a.linked("current") == "r2" and a.linked("previous") == "r1"


def test_a_dependency_failing_from_one_host_is_not_rolled_back(runbook, fake_hosts, tmp_path):
    """api-a (r2, previous r1) cannot reach Qdrant while api-b can: restarted, still not ready, not rolled back.
    Then api-a crash-loops with Qdrant's port closed from it: still not the release's fault."""
    a = fake_hosts("api-a", releases=("r1", "r2"), current="r2", previous="r1")
    b = fake_hosts("api-b", releases=("r2",), current="r2")
    closed = {"aegis_api_qdrant_url": closed_port_url()}
    write_role_environment(runbook, tmp_path, a, **closed)
    b.systemctl("start", "aegis-api")
    a.set(deps_down=True)
    run = {"api_hosts": {"api-a": a.inventory(), "api-b": b.inventory()}, **a.role_paths(), **closed}

    out = runbook(**run, expect_failure=True)
    host = out.host("api-a")
    assert host["status"] == "failed" and host["data"]["rolled_back"] is False, host
    assert host["actions"] == ["restart the aegis-api unit and wait for /ready"]
    assert host["data"]["not_rolled_back"] == ("the API runs (it answers /health): vector_store is not the "
                                               "release's fault"), host["data"]
    assert "not rolled back: the API runs" in host["summary"]
    assert a.linked("current") == "r2" and a.linked("previous") == "r1"
    assert out.host("api-b")["status"] == "ok"

    a.set(deps_down=False)
    (a.release("r2") / "BROKEN").touch()  # down now, but Qdrant does not answer from api-a either
    a.systemctl("restart", "aegis-api")
    out = runbook(**run, expect_failure=True)
    host = out.host("api-a")
    assert host["data"]["not_rolled_back"].startswith("vector_store (Qdrant) does not answer from api-a"), host
    assert a.linked("current") == "r2" and a.linked("previous") == "r1"
