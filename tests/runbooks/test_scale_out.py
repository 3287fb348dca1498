"""playbooks/scale_out.yml on localhost, and the loadbalancer role's addition it relies on (loadbalancer_held_out_servers).

Against doubles: HAProxy's runtime API (FakeHAProxy, driven by the loadbalancer role's own aegis-haproxy-server, as
the playbook and the role's enable entry point drive it), new API hosts (a /health and /ready page) and new Ollama
hosts (the Ollama double). The run skips the roles that need real hosts (tags scale_out_install: node_exporter,
aegis.rag.ollama, aegis.rag.aegis_api; scale_out_config: the load balancers' and Prometheus's configuration), so a new
server in the double starts where the role's reload leaves it: in maintenance ("maint"), or absent when that reload
has not happened. Shown here: every refusal, before anything is touched; a held-out API host checked ready from the
load balancer, then put in the pool, and a second run that changes nothing; a host that is not ready (absent from
HAProxy, or an Ollama host without its model) left out of the pool, the run failing after the report; check mode.

The role: the template writes exactly the servers held out `disabled`, its preflight refuses a server the
configuration does not have. The whole run on real hosts with a real HAProxy, under a client loop (a server added held
out, put in once ready, and still in when the next configuration no longer holds it out): tests/fleet/
test_scale_out.py."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jinja2
import pytest
import yaml

from tests.collection.conftest import COLLECTION_ROOT, VENV_BIN, ansible_env
from tests.doubles.haproxy import FakeHAProxy
from tests.module_python import MODULE_PYTHON
from tests.runbooks.conftest import PLAYBOOKS, Run, run_ansible

pytestmark = pytest.mark.slow

LB_ROLE = COLLECTION_ROOT / "roles" / "loadbalancer"
SKIP_TAGS = "scale_out_install,scale_out_config"  # the roles that need real hosts
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": MODULE_PYTHON}
MODEL = "llama3.2:1b"


class LoggingHAProxy(FakeHAProxy):
    """FakeHAProxy that keeps every `set server` command it gets, with its time."""

    def __init__(self, servers: dict[str, str], backend: str = "aegis_api") -> None:
        self.sets: list[tuple[float, str]] = []
        super().__init__(servers, backend)

    def answer(self, line: str) -> str:
        if line.startswith("set server "):
            self.sets.append((time.monotonic(), line))
        return super().answer(line)


class FakeApiHost:
    """/health and /ready of a new API host (200, or 503 with a failing dependency while not `ready`); keeps the time
    of every /ready it answered 200."""

    def __init__(self, ready: bool = True) -> None:
        self.ready = ready
        self.ready_answers: list[float] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path == "/health":
                    self.reply(200, {"status": "ok"})
                elif self.path == "/ready" and host.ready:
                    host.ready_answers.append(time.monotonic())
                    self.reply(200, {"status": "ready", "checks": {"vector_store": {"status": "ok"}}})
                elif self.path == "/ready":
                    self.reply(503, {"status": "not ready", "checks": {
                        "vector_store": {"status": "failed", "detail": "Qdrant unavailable"}}})
                else:
                    self.reply(404, {"detail": "Not Found"})

            def reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def doubles():
    """doubles(kind, ...) -> a LoggingHAProxy ("haproxy", servers, backend) or a FakeApiHost ("api", ready), stopped
    at the end."""
    made: list = []

    def make(kind: str, *args, **kwargs):
        made.append(LoggingHAProxy(*args, **kwargs) if kind == "haproxy" else FakeApiHost(*args, **kwargs))
        return made[-1]

    yield make
    for double in made:
        double.stop()


def new_api_host(api: FakeApiHost) -> dict:
    """Inventory variables of a new API host served by `api`, as the load balancer reaches it."""
    return {**LOCAL, "loadbalancer_backend_address": "127.0.0.1", "aegis_api_port": api.port}


@pytest.fixture
def scale_out(tmp_path):
    """scale_out(groups={group: {host: vars}}, lb=LoggingHAProxy or None, check=False, expect_failure=False,
    args=(), **extra_vars) -> Run: playbooks/scale_out.yml with the roles skipped (SKIP_TAGS); with `lb`, a
    `loadbalancer` group of one local host (lb-a) that reaches the double through the role's tool."""
    counter = {"n": 0}

    def run(groups: dict, lb: FakeHAProxy | None = None, check: bool = False, expect_failure: bool = False,
            args: tuple = (), **extra_vars) -> Run:
        counter["n"] += 1
        workdir = tmp_path / f"scale_out{counter['n']}"
        reports = workdir / "reports"
        workdir.mkdir()
        children = {group: {"hosts": {name: {**LOCAL, **host_vars} for name, host_vars in hosts.items()}}
                    for group, hosts in groups.items()}
        variables = {"aegis_report_dir": str(reports), "ansible_become": False, "loadbalancer_enable_timeout": 5,
                     "aegis_scale_out_ready_timeout": 4}
        if lb is not None:
            children["loadbalancer"] = {"hosts": {"lb-a": {**LOCAL, "loadbalancer_admin_socket": lb.socket}}}
            variables.update(aegis_scale_out_lb_tool=str(lb.tool), _loadbalancer_server_tool=str(lb.tool))
        variables.update(extra_vars)
        (workdir / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": children}}))
        (workdir / "vars.json").write_text(json.dumps(variables))
        cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(workdir / "hosts.yml"), "-e", f"@{workdir / 'vars.json'}",
               str(PLAYBOOKS / "scale_out.yml"), "--skip-tags", SKIP_TAGS, *args] + (["--check"] if check else [])
        return run_ansible(cmd, workdir, reports, "scale_out", expect_failure)

    return run


# -- refusals: before anything is touched ------------------------------------------------------------------------

REFUSALS = {
    "no host named": ({}, (), "scale_out_hosts is required: the inventory names of the new hosts"),
    "a host not in the inventory": ({"scale_out_hosts": "api-new,api-9"}, (), "not in the inventory: api-9."),
    "a host in neither aegis_api nor ollama": (
        {"scale_out_hosts": "qdrant-b"}, (), "in neither the group aegis_api nor ollama: qdrant-b."),
    "an Ollama host while the load balancer does not balance Ollama": (
        {"scale_out_hosts": ["api-new", "gpu-new"]}, (),
        "gpu-new: Ollama hosts, but loadbalancer_ollama_enabled is false on lb-a. The API reaches Ollama at one "
        "address (aegis_api_ollama_url), so a new Ollama host would get no request."),
    "--limit": ({"scale_out_hosts": "api-new"}, ("--limit", "api-new,lb-a"),
                "scale_out runs without --limit (got --limit api-new,lb-a)"),
}


@pytest.mark.parametrize("request_vars, args, message", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_request_it_cannot_serve_is_refused_before_anything_is_touched(scale_out, doubles, request_vars, args,
                                                                         message):
    lb = doubles("haproxy", {"api-a": "ready", "api-new": "maint"})
    groups = {"aegis_api": {"api-a": {}, "api-new": {}}, "ollama": {"gpu-new": {}}, "qdrant": {"qdrant-b": {}}}
    out = scale_out(groups, lb, expect_failure=True, args=args, **request_vars)
    said = " ".join(out.stdout.split())
    assert message in said, out.describe()
    assert "Scale out - read the facts" not in out.stdout, "the run went past its checks"
    assert lb.sets == [] and out.report == {}, (lb.sets, out.report)


def test_without_a_load_balancer_it_is_refused(scale_out):
    out = scale_out({"aegis_api": {"api-new": {}}}, expect_failure=True, scale_out_hosts="api-new")
    assert "no host in the group loadbalancer: scale_out puts the new hosts into the load balancers' pool" in " ".join(
        out.stdout.split()), out.describe()


# -- joining the pool --------------------------------------------------------------------------------------------

def test_a_held_out_api_host_is_checked_ready_then_put_in_the_pool_and_a_second_run_changes_nothing(scale_out, doubles):
    lb = doubles("haproxy", {"api-a": "ready", "api-new": "maint"})  # as the role's reload leaves a new server
    api = doubles("api")
    groups = {"aegis_api": {"api-a": {}, "api-new": new_api_host(api)}}
    out = scale_out(groups, lb, scale_out_hosts="api-new")

    assert lb.admin == {"api-a": "ready", "api-new": "ready"}
    [(enabled_at, command)] = lb.sets
    assert command == "set server aegis_api/api-new state ready"
    assert api.ready_answers and api.ready_answers[0] < enabled_at, "enabled before /ready answered"
    host, balancer = out.report["hosts"]["api-new"], out.report["hosts"]["lb-a"]
    assert out.report["status"] == "changed" and host["status"] == "changed", out.report
    assert host["summary"] == "joined the pool of lb-a, ready from lb-a", host
    assert host["actions"] == ["hold out on lb-a", "ready from lb-a", "put in the pool of lb-a"], host
    assert host["tables"][0]["rows"] == [["lb-a", "aegis_api", "api-new", "maint", "ready", "UP", True, True]]
    assert balancer["status"] == "changed" and balancer["data"]["held_out"] == ["aegis_api/api-new"], balancer
    assert balancer["summary"] == "held out, then put in the pool: aegis_api/api-new", balancer
    assert "api-a" not in out.report["hosts"], "an API host that was not named is not part of the run"

    again = scale_out(groups, lb, scale_out_hosts="api-new")
    assert len(lb.sets) == 1, lb.sets  # nothing set again: the tool sends `set` only for a change
    assert again.report["status"] == "ok", again.report
    assert again.report["hosts"]["api-new"]["summary"] == "in the pool of every load balancer already"
    assert again.report["hosts"]["lb-a"]["summary"] == "nothing to hold out: every new server in the pool already"
    assert re.findall(r"changed=(\d+)", again.stdout) and set(re.findall(r"changed=(\d+)", again.stdout)) == {"0"}


def test_an_api_host_that_is_not_ready_stays_out_of_the_pool(scale_out, doubles):
    """api-new absent from HAProxy (the role's reload, skipped here, would add it held out) and not ready."""
    lb = doubles("haproxy", {"api-a": "ready"})
    api = doubles("api", ready=False)
    out = scale_out({"aegis_api": {"api-a": {}, "api-new": new_api_host(api)}}, lb, expect_failure=True,
                    scale_out_hosts="api-new")
    assert lb.sets == [] and lb.admin == {"api-a": "ready"}
    host, balancer = out.report["hosts"]["api-new"], out.report["hosts"]["lb-a"]
    assert balancer["data"]["held_out"] == ["aegis_api/api-new"], balancer  # what the role was given
    assert balancer["data"]["before"] == {"aegis_api/api-new": {"admin": "absent", "status": "-", "sessions": 0}}
    assert host["status"] == "failed" and host["data"]["stage"] == "ready check", host
    assert host["summary"].startswith("stopped at ready check (Check from every load balancer that this host is "
                                      "ready): "), host["summary"]
    assert "not ready: vector_store (Qdrant unavailable)" in host["summary"], host["summary"]
    assert host["summary"].endswith("; held out of the pool of lb-a"), host["summary"]
    assert "scale_out failed on api-new: stopped at ready check" in " ".join(out.stdout.split())


def test_ollama_hosts_join_once_their_model_is_there(scale_out, doubles, start_double):
    lb = doubles("haproxy", {"gpu-a": "ready", "gpu-new": "maint", "gpu-bare": "maint"}, backend="ollama")
    with_model, without = start_double("ollama"), start_double("ollama")
    with_model.install(MODEL)

    def ollama_host(service) -> dict:
        return {"loadbalancer_backend_address": "127.0.0.1", "ollama_port": int(service.url.rsplit(":", 1)[1]),
                "ollama_models": [{"name": MODEL}]}

    groups = {"aegis_api": {"api-a": {}},
              "ollama": {"gpu-a": {}, "gpu-new": ollama_host(with_model), "gpu-bare": ollama_host(without)}}
    out = scale_out(groups, lb, expect_failure=True, scale_out_hosts="gpu-new, gpu-bare",
                    loadbalancer_ollama_enabled=True)
    assert lb.admin == {"gpu-a": "ready", "gpu-new": "ready", "gpu-bare": "maint"}
    assert [command for _, command in lb.sets] == ["set server ollama/gpu-new state ready"]
    hosts = out.report["hosts"]
    assert hosts["gpu-new"]["status"] == "changed", hosts["gpu-new"]
    assert hosts["gpu-new"]["tables"][0]["rows"] == [["lb-a", "ollama", "gpu-new", "maint", "ready", "UP", True, True]]
    assert hosts["gpu-bare"]["status"] == "failed", hosts["gpu-bare"]
    assert f"missing models: {MODEL}" in hosts["gpu-bare"]["summary"], hosts["gpu-bare"]["summary"]
    assert hosts["lb-a"]["summary"] == ("held out: ollama/gpu-new, ollama/gpu-bare; still out of the pool: "
                                        "ollama/gpu-bare"), hosts["lb-a"]


def test_check_mode_reads_haproxy_and_changes_nothing(scale_out, doubles):
    lb = doubles("haproxy", {"api-a": "ready", "api-new": "maint"})
    api = doubles("api")
    out = scale_out({"aegis_api": {"api-a": {}, "api-new": new_api_host(api)}}, lb, check=True,
                    scale_out_hosts=["api-new"])
    assert lb.sets == [] and lb.admin == {"api-a": "ready", "api-new": "maint"} and api.ready_answers == []
    host = out.report["hosts"]["api-new"]
    assert out.report["check_mode"] is True and host["status"] == "would change", host
    assert host["summary"] == "would be installed, held out and put in the pool of lb-a", host
    assert host["actions"] == ["would hold out on lb-a", "would check ready and put in the pool of lb-a"], host
    assert out.report["hosts"]["lb-a"]["actions"] == ["would learn held out (maintenance): aegis_api/api-new"]


# -- the filters -------------------------------------------------------------------------------------------------

def test_lb_server_states_reads_the_tool_and_fails_on_an_error():
    from ansible.errors import AnsibleFilterError
    from ansible_collections.aegis.rag.plugins.filter.lb_server_states import lb_server_states

    shown = {"after": {"admin": "maint", "status": "MAINT", "sessions": 0}}
    results = [{"item": "aegis_api/api-3", "rc": 0, "stdout": json.dumps(shown)},
               {"item": "ollama/gpu-2", "rc": 2, "stdout": "", "stderr": "no server"},
               {"item": "ollama/gpu-9", "skipped": True}]
    assert lb_server_states(results) == {"aegis_api/api-3": shown["after"],
                                         "ollama/gpu-2": {"admin": "absent", "status": "-", "sessions": 0}}
    with pytest.raises(AnsibleFilterError, match="HAProxy did not answer about aegis_api/api-3 .exit status 1.: "
                                                 "cannot talk to HAProxy"):
        lb_server_states([{"item": "aegis_api/api-3", "rc": 1, "stderr": "cannot talk to HAProxy\n"}])


def test_scale_out_pool_tells_held_out_and_joined():
    from ansible_collections.aegis.rag.plugins.filter.scale_out_pool import scale_out_pool

    before = {"lb-1": {"aegis_api/api-3": {"admin": "absent"}}, "lb-2": {"aegis_api/api-3": {"admin": "ready"}},
              "lb-3": {}}
    after = {"lb-1": {"aegis_api/api-3": {"admin": "ready", "status": "UP"}},
             "lb-2": {"aegis_api/api-3": {"admin": "ready", "status": "UP"}}}
    rows = scale_out_pool(["aegis_api/api-3"], before, after)
    assert [(r["lb"], r["before"], r["after"], r["held_out"], r["joined"]) for r in rows] == [
        ("lb-1", "absent", "ready", True, True), ("lb-2", "ready", "ready", False, False),
        ("lb-3", "unknown", "unknown", True, False)]


# -- the loadbalancer role: loadbalancer_held_out_servers ---------------------------------------------------------

def render_haproxy_cfg(held_out: list[str], api: dict[str, int] | None = None, **overrides) -> str:
    """The role's haproxy.cfg.j2 as Ansible renders it, for API hosts {name: port} on 127.0.0.1 and one Ollama host."""
    api = api or {"api-1": 8910, "api-2": 8910}
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["bool"] = bool
    variables = {**yaml.safe_load((LB_ROLE / "defaults/main.yml").read_text()), "ansible_managed": "test",
                 "_loadbalancer_api_hosts": list(api), "_loadbalancer_ollama_hosts": ["gpu-1"],
                 "_loadbalancer_state_file": "/var/lib/haproxy/server-state", "loadbalancer_ollama_enabled": True,
                 "loadbalancer_held_out_servers": held_out,
                 "hostvars": {**{name: {"ansible_host": "127.0.0.1", "aegis_api_port": port} for name, port in api.items()},
                              "gpu-1": {"ansible_host": "127.0.0.1"}}, **overrides}
    return env.from_string((LB_ROLE / "templates/haproxy.cfg.j2").read_text()).render(**variables)


def test_the_template_writes_exactly_the_servers_held_out_disabled():
    assert "disabled" not in render_haproxy_cfg([])
    servers = [line.strip() for line in render_haproxy_cfg(["aegis_api/api-2", "ollama/gpu-1"]).splitlines()
               if line.strip().startswith("server ")]
    assert servers == ["server api-1 127.0.0.1:8910", "server api-2 127.0.0.1:8910 disabled",
                       "server gpu-1 127.0.0.1:11434 disabled"]
    # the API backend's name is not the Ollama backend's: ollama/api-1 holds nothing out of aegis_api
    assert "disabled" not in render_haproxy_cfg(["ollama/api-1"])


def test_the_role_refuses_a_held_out_server_its_configuration_does_not_have(tmp_path):
    def preflight(held_out: list[str], ollama_enabled: bool = False) -> subprocess.CompletedProcess:
        play = [{"hosts": "lb-a", "gather_facts": False, "tasks": [{"ansible.builtin.include_role": {
            "name": "aegis.rag.loadbalancer", "tasks_from": "preflight"}}]}]
        inventory = {"all": {"children": {"aegis_api": {"hosts": {"api-1": LOCAL}},
                                          "ollama": {"hosts": {"gpu-1": LOCAL}},
                                          "loadbalancer": {"hosts": {"lb-a": LOCAL}}}}}
        (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
        (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
        (tmp_path / "vars.json").write_text(json.dumps({"loadbalancer_held_out_servers": held_out,
                                                        "loadbalancer_ollama_enabled": ollama_enabled}))
        return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "hosts.yml", "-e", "@vars.json", "play.yml"],
                              cwd=tmp_path, env=ansible_env(tmp_path, ANSIBLE_STDOUT_CALLBACK="default"),
                              capture_output=True, text=True, timeout=120, check=False)

    assert preflight(["aegis_api/api-1", "ollama/gpu-1"], ollama_enabled=True).returncode == 0
    for held_out, ollama_enabled, named in ((["aegis_api/api-9"], False, "aegis_api/api-9"),
                                            (["ollama/gpu-1"], False, "ollama/gpu-1"),
                                            (["api-1"], False, "api-1")):
        refused = preflight(held_out, ollama_enabled)
        said = " ".join(refused.stdout.split())
        assert refused.returncode != 0 and (f"loadbalancer_held_out_servers names {named}, not a server of this "
                                            "configuration") in said, said[-3000:]

