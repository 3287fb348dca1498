"""aegis.rag.remediation without a host to install on: the role's own preflight (ansible-playbook, localhost) computes
its values and the role's templates are rendered from them into a temporary folder (the unit, the variables file,
the environment file); the preflight's refusals; and ansible-rulebook started exactly as the rendered unit starts it
(its ExecStart, WorkingDirectory, Environment and EnvironmentFile) receives an alert with the token and runs the
dispatcher with the variables file's settings, which win over the inventory's. The service itself (user, Java,
systemd, hardening on a real host) is tested on the fleet: tests/fleet/test_self_healing.py."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.collection.conftest import COLLECTION_ROOT, REPO, VENV_BIN
from tests.collection.remediation_support import (alert, api_down, java_home, make_fleet, notification,
                                                  standin_runbooks)
from tests.stack import free_port

ROLE = COLLECTION_ROOT / "roles" / "remediation"
TEMPLATES = {"unit": "aegis-remediation.service", "vars": "remediation.yml", "env": "remediation.env"}
TOKEN = "am-token_0123456789.abc~+/="
RULEBOOK_ALERTS = ["AegisServiceDown", "AegisAPIHighErrorRate", "OllamaModelGenerationFailure",
                   "QdrantQuerySuccessRateCritical"]

RENDER = """\
- name: Render aegis.rag.remediation's files from its preflight
  hosts: %s
  gather_facts: false
  tasks:
    - name: Preflight of the role
      ansible.builtin.include_role:
        name: aegis.rag.remediation
        tasks_from: preflight
        public: true
    - name: Render a template of the role
      ansible.builtin.template:
        src: "{{ role_templates }}/{{ item }}.j2"
        dest: "{{ out }}/{{ item }}"
        mode: "0600"
      loop: %s
"""
TEMPLATE_NAMES = json.dumps(list(TEMPLATES.values()))


def playbook_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / ".ansible-local"), ANSIBLE_DEPRECATION_WARNINGS="false",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
               PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return env


def site(tmp_path: Path, **overrides) -> dict:
    """The role's variables for a controller host made of this checkout (its ansible.cfg and collections), the
    virtualenv running the tests and folders under tmp_path."""
    inventory = tmp_path / "hosts.yml"
    if not inventory.exists():
        inventory.write_text("all:\n  hosts: {}\n")
    vault = tmp_path / "vault-password"
    vault.write_text("not-a-secret\n")
    return {"remediation_project_dir": str(REPO), "remediation_ansible_rulebook": str(VENV_BIN / "ansible-rulebook"),
            "remediation_inventory": str(inventory), "remediation_vault_password_file": str(vault),
            "remediation_state_dir": str(tmp_path / "state"), "remediation_report_dir": str(tmp_path / "reports"),
            "remediation_config_dir": str(tmp_path / "config"), "remediation_token": TOKEN, **overrides}


def run_render(tmp_path: Path, variables: dict) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    out = tmp_path / "rendered"
    out.mkdir(exist_ok=True)
    play = tmp_path / "render.yml"
    play.write_text(RENDER % ("localhost", TEMPLATE_NAMES))
    extra = tmp_path / "extra.json"
    # no become: the preflight's stat tasks run as the test's user (connection variables beat the keyword)
    extra.write_text(json.dumps({**variables, "out": str(out), "role_templates": str(ROLE / "templates"),
                                 "ansible_become": False}))
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play),
                           "-e", f"@{extra}", "-e", f"ansible_python_interpreter={VENV_BIN / 'python'}"],
                          cwd=tmp_path, env=playbook_env(tmp_path), capture_output=True, text=True, timeout=300,
                          check=False)
    files = {key: (out / name).read_text() for key, name in TEMPLATES.items() if (out / name).exists()}
    return proc, files


def render(tmp_path: Path, **overrides) -> dict[str, str]:
    proc, files = run_render(tmp_path, site(tmp_path, **overrides))
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return files


class Site:
    """A site of the module's batch (`sites`): its folder (what tmp_path is to a test rendering alone), whether
    its host failed, the messages of its results and the files rendered for it."""

    def __init__(self, folder: Path, failed: bool, messages: str, files: dict[str, str], output: str) -> None:
        self.dir, self.failed, self.messages, self.files, self.output = folder, failed, messages, files, output

    def rendered(self) -> dict[str, str]:
        """As render(): the preflight accepted the site and the three files were rendered."""
        assert not self.failed and set(self.files) == set(TEMPLATES), self.messages + self.output[-6000:]
        return self.files

    def refusal(self) -> str:
        """The preflight's refusal, whitespace collapsed."""
        assert self.failed, "the preflight accepted it:\n" + self.messages
        return " ".join(self.messages.split())


def _messages(result: dict) -> list[str]:
    found = [str(result["msg"])] if "msg" in result else []
    for item in result.get("results", []) if isinstance(result.get("results"), list) else []:
        found += _messages(item) if isinstance(item, dict) else []
    return found


def render_sites(base: Path, cases: dict) -> dict[str, Site]:
    """Every case (name -> overrides(folder), which may prepare the folder first) rendered by ONE ansible-playbook
    run: one inventory host per case (local connection) whose host variables are the case's site() variables, so
    each host runs the role's preflight and templates with its own values; a refused case fails its host only. Per
    host, the messages of its results and its files come back as render() and refusal() of a run of its own."""
    hosts = {}
    for name, overrides in cases.items():
        folder = base / name
        folder.mkdir()
        out = folder / "rendered"
        variables = site(folder, **overrides(folder))
        out.mkdir()
        # no become: the preflight's stat tasks run as the test's user (connection variables beat the keyword)
        hosts[name] = {**variables, "out": str(out), "role_templates": str(ROLE / "templates"),
                       "ansible_become": False, "ansible_connection": "local",
                       "ansible_python_interpreter": str(VENV_BIN / "python")}
    (base / "sites.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    (base / "render.yml").write_text(RENDER % ("all", TEMPLATE_NAMES))
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(base / "sites.yml"), str(base / "render.yml")],
                          cwd=base, env={**playbook_env(base), "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"},
                          capture_output=True, text=True, timeout=900, check=False)
    output = proc.stdout[-6000:] + proc.stderr[-3000:]
    start = proc.stdout.find("{")
    assert start >= 0, output
    data = json.loads(proc.stdout[start:])
    messages: dict[str, list[str]] = {name: [] for name in cases}
    for play in data.get("plays", []):
        for task in play.get("tasks", []):
            for name, result in task.get("hosts", {}).items():
                messages[name] += _messages(result)
    sites = {}
    for name in cases:
        stats = data.get("stats", {}).get(name)
        failed = stats is None or stats.get("failures", 0) > 0 or stats.get("unreachable", 0) > 0
        out = base / name / "rendered"
        files = {key: (out / file).read_text() for key, file in TEMPLATES.items() if (out / file).exists()}
        sites[name] = Site(base / name, failed, "\n".join(messages[name]), files, output)
    return sites


def unit_of(text: str) -> dict[str, list[str]]:
    """Every `Key=value` of the unit, values in order (Environment= repeats)."""
    unit: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            unit.setdefault(key, []).append(value)
    return unit


def environment_of(unit: dict[str, list[str]]) -> dict[str, str]:
    return dict(value.split("=", 1) for value in unit.get("Environment", []))


# -- the rendered files and the preflight's refusals: every case below is a site of one batch (`sites`) -----------

REFUSALS = [
    ({"remediation_listen_host": "0.0.0.0", "remediation_token": ""},
     "remediation_token is empty but the webhook listens on 0.0.0.0 (remediation_listen_host), not loopback"),
    ({"remediation_token": "two words"}, "remediation_token must be a bearer token"),
    ({"remediation_escalation_webhook_token": "a\nb"}, "remediation_escalation_webhook_token must be a bearer token"),
    ({"remediation_port": 70000}, "remediation_port must be a TCP port (1-65535), not 70000"),
    ({"remediation_max_attempts": 0}, "remediation_max_attempts must be 1 or more"),
    ({"remediation_suggest_only": "AegisServiceDown"},
     "remediation_suggest_only takes a list of alert names or \"*\", not AegisServiceDown"),
    ({"remediation_suggest_only": ["Aegis Down"]}, "remediation_suggest_only takes a list of alert names"),
    ({"remediation_runbooks": [{"alert": "AegisServiceDown", "runbook": "x.y.z"}]},
     "each entry of remediation_runbooks needs alert, runbook and tier"),
    ({"remediation_state_dir": "var/lib/aegis"}, "remediation_state_dir must be an absolute path without spaces"),
    ({"remediation_report_dir": "/var/lib/my reports"}, "remediation_report_dir must be an absolute path without"),
    ({"remediation_rulebook": "aegis_remediation"}, "remediation_rulebook is a collection name"),
    ({"remediation_escalation_webhook_url": "oncall.example"}, "remediation_escalation_webhook_url must be an http(s)"),
    ({"remediation_state": "running"}, "remediation_state must be present or absent, not running"),
]
RUNBOOKS = [{"alert": "AegisServiceDown", "labels": {"service": "ollama"}, "runbook": "site.fix_ollama",
             "tier": "ollama", "extra_vars": {"restart": True}}]


def java_arch_site(folder: Path) -> dict:
    project = folder / "project"
    (project / "inventories" / "site").mkdir(parents=True)
    (project / "ansible.cfg").write_text("[defaults]\n")
    return {"remediation_project_dir": str(project), "remediation_inventory": "inventories/site",
            "remediation_vault_password_file": "", "remediation_rulebook": str(folder / "hosts.yml")}


def systemd_site(folder: Path) -> dict:
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    for name in ("state", "reports", "config"):
        (folder / name).mkdir()
    return {"remediation_user": user, "remediation_java_home": java_home() or "/usr"}


def no_rulebook_site(folder: Path) -> dict:
    venv = folder / "venv" / "bin"
    venv.mkdir(parents=True)
    for name in ("ansible-playbook", "ansible-galaxy"):
        (venv / name).symlink_to(VENV_BIN / name)
    return {"remediation_ansible_rulebook": str(venv / "ansible-rulebook")}


# name -> overrides of site() for the case's folder (made first, empty; the function may prepare it)
CASES = {
    "hardened": lambda folder: {"remediation_java_home": "/usr/lib/jvm/java-17-openjdk-amd64"},
    "java_arch": java_arch_site,
    # site()'s own values (remediation_state_dir: <folder>/state): read by two tests
    "defaults": lambda folder: {},
    "vars_set": lambda folder: {
        "remediation_listen_host": "0.0.0.0", "remediation_port": "5151", "remediation_enabled": "no",
        "remediation_suggest_only": ["*"], "remediation_max_attempts": 3, "remediation_runbooks": RUNBOOKS,
        "remediation_escalation_webhook_url": "https://oncall.example/hook"},
    "env_tokens": lambda folder: {"remediation_escalation_webhook_token": "hook-token"},
    "env_no_token": lambda folder: {"remediation_token": ""},
    "systemd": systemd_site,
    "loopback_ip": lambda folder: {"remediation_listen_host": "127.0.0.1", "remediation_token": ""},
    "loopback_name": lambda folder: {"remediation_listen_host": "localhost", "remediation_token": ""},
    "stop_drain": lambda folder: {"remediation_runbook_timeout": 60},
    **{f"refusal{i}": (lambda folder, overrides=overrides: overrides) for i, (overrides, _) in enumerate(REFUSALS)},
    "no_rulebook": no_rulebook_site,
    "no_inventory": lambda folder: {"remediation_inventory": str(folder / "nowhere.yml"),
                                    "remediation_vault_password_file": str(folder / "no-vault")},
}


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[str, Site]:
    """Every case rendered once, by a single ansible-playbook run; the tests only read their sites' results."""
    return render_sites(tmp_path_factory.mktemp("sites"), CASES)


def test_the_unit_is_hardened_and_runs_the_rulebook_with_the_roles_files(sites):
    tmp_path = sites["hardened"].dir
    files = sites["hardened"].rendered()
    unit = unit_of(files["unit"])
    single = {key: values[-1] for key, values in unit.items()}
    assert single["Type"] == "simple"
    assert (single["User"], single["Group"]) == ("aegis-ops", "aegis-ops")
    assert single["WorkingDirectory"] == str(REPO)
    assert (single["NoNewPrivileges"], single["PrivateTmp"], single["ProtectSystem"]) == ("true", "true", "strict")
    assert single["ReadWritePaths"].split() == [str(tmp_path / "state"), str(tmp_path / "reports")]
    assert (single["Restart"], single["RestartSec"]) == ("on-failure", "10")
    assert single["EnvironmentFile"] == str(tmp_path / "config" / "remediation.env")
    assert single["WantedBy"] == "multi-user.target"
    env = environment_of(unit)
    assert env["JAVA_HOME"] == "/usr/lib/jvm/java-17-openjdk-amd64"
    assert env["PATH"].split(":")[0] == str(VENV_BIN)
    assert env["ANSIBLE_CONFIG"] == f"{REPO}/ansible.cfg"
    assert env["ANSIBLE_HOME"].startswith(str(tmp_path / "state"))
    assert env["ANSIBLE_CACHE_PLUGIN_CONNECTION"].startswith(str(tmp_path / "state"))
    assert env["ANSIBLE_VAULT_PASSWORD_FILE"] == str(tmp_path / "vault-password")
    assert env["AEGIS_REMEDIATION_VARS_FILE"] == str(tmp_path / "config" / "remediation.yml")
    assert shlex.split(single["ExecStart"]) == [
        str(VENV_BIN / "ansible-rulebook"), "--rulebook", "aegis.rag.aegis_remediation",
        "--inventory", str(tmp_path / "hosts.yml"), "--vars", str(tmp_path / "config" / "remediation.yml"),
        "--env-vars", "aegis_remediation_token"]
    assert TOKEN not in files["unit"] and TOKEN not in files["vars"]


def test_a_start_clears_the_tier_locks_the_last_stop_left(sites):
    """systemd kills every dispatcher with the service: their tier locks would keep the tiers busy (runs nothing)."""
    state = sites["defaults"].dir / "state"  # remediation_state_dir of the site; nothing made it yet
    unit = unit_of(sites["defaults"].rendered()["unit"])
    (command,) = unit["ExecStartPre"]
    state.mkdir()
    for name in ("tier-aegis_api.lock", "tier-qdrant.lock", "state.json", "decisions.jsonl"):
        (state / name).write_text("{}")
    subprocess.run(shlex.split(command.removeprefix("-")), check=True)
    assert sorted(p.name for p in state.iterdir()) == ["decisions.jsonl", "state.json"]


def test_a_stop_waits_for_the_runbooks_in_flight_and_not_for_stale_locks(sites):
    """A runbook killed half-way leaves what it undid undone (an API host drained): a stop waits until the tier
    locks of the runs in flight are released; a lock older than the stale limit (runbook timeout + 600 s) does not
    hold it; systemd's own limit is the runbook timeout + 60 s."""
    state = sites["stop_drain"].dir / "state"  # remediation_state_dir of the site; nothing made it yet
    unit = unit_of(sites["stop_drain"].rendered()["unit"])
    (command,) = unit["ExecStop"]
    assert unit["TimeoutStopSec"] == ["120"]
    state.mkdir()
    stale = state / "tier-qdrant.lock"
    stale.write_text("{}")
    os.utime(stale, (time.time() - 700, time.time() - 700))
    lock = state / "tier-aegis_api.lock"
    lock.write_text("{}")
    threading.Timer(3, lock.unlink).start()
    started = time.monotonic()
    subprocess.run(shlex.split(command), check=True, timeout=30)
    waited = time.monotonic() - started
    assert not lock.exists() and 3 <= waited < 10, waited
    started = time.monotonic()
    subprocess.run(shlex.split(command), check=True, timeout=30)  # only the stale lock left
    assert time.monotonic() - started < 2


def test_the_java_home_follows_the_hosts_architecture_and_the_inventory_the_project(sites):
    tmp_path = sites["java_arch"].dir
    project = tmp_path / "project"
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    files = sites["java_arch"].rendered()
    unit = unit_of(files["unit"])
    env = environment_of(unit)
    assert env["JAVA_HOME"] == f"/usr/lib/jvm/java-17-openjdk-{arch}"
    assert "ANSIBLE_VAULT_PASSWORD_FILE" not in env
    command = shlex.split(unit["ExecStart"][0])
    assert command[command.index("--inventory") + 1] == f"{project}/inventories/site"
    assert command[command.index("--rulebook") + 1] == str(tmp_path / "hosts.yml")


def test_the_variables_file_holds_the_rulebooks_and_the_dispatchers_variables(sites):
    tmp_path = sites["defaults"].dir
    files = sites["defaults"].rendered()
    assert yaml.safe_load(files["vars"]) == {
        "aegis_remediation_listen_host": "127.0.0.1", "aegis_remediation_port": 5050,
        "aegis_remediation_enabled": True, "aegis_remediation_state_dir": str(tmp_path / "state"),
        "aegis_report_dir": str(tmp_path / "reports"), "aegis_remediation_suggest_only": [],
        "aegis_remediation_max_attempts": 2, "aegis_remediation_window": 3600,
        "aegis_remediation_runbook_timeout": 1800, "aegis_remediation_webhook_url": ""}
    files = sites["vars_set"].rendered()
    variables = yaml.safe_load(files["vars"])
    assert (variables["aegis_remediation_listen_host"], variables["aegis_remediation_port"]) == ("0.0.0.0", 5151)
    assert variables["aegis_remediation_enabled"] is False and variables["aegis_remediation_suggest_only"] == ["*"]
    assert variables["aegis_remediation_max_attempts"] == 3 and variables["aegis_remediation_runbooks"] == RUNBOOKS
    assert variables["aegis_remediation_webhook_url"] == "https://oncall.example/hook"


def test_the_environment_file_holds_the_tokens(sites):
    files = sites["env_tokens"].rendered()
    lines = [line for line in files["env"].splitlines() if line and not line.startswith("#")]
    assert lines == [f"aegis_remediation_token={TOKEN}", "AEGIS_REMEDIATION_WEBHOOK_TOKEN=hook-token"]
    assert sites["env_no_token"].rendered()["env"].count("aegis_remediation_token=\n") == 1


def test_the_unit_passes_systemd_analyze_verify(sites):
    if subprocess.run(["systemd-analyze", "--version"], capture_output=True, check=False).returncode != 0:
        pytest.skip("no systemd-analyze")
    tmp_path = sites["systemd"].dir  # its state, reports and config folders were made before the render
    files = sites["systemd"].rendered()
    (tmp_path / "config" / "remediation.env").write_text(files["env"])
    unit = tmp_path / "aegis-remediation.service"
    unit.write_text(files["unit"])
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                          check=False, timeout=60)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if str(unit) in line or "aegis" in line]
    assert not problems, proc.stdout + proc.stderr


# -- the preflight refuses ---------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, expected", REFUSALS)
def test_the_preflight_refuses_with_a_clear_message(sites, overrides, expected):
    assert expected in sites[f"refusal{REFUSALS.index((overrides, expected))}"].refusal()


def test_a_loopback_webhook_needs_no_token(sites):
    assert sites["loopback_ip"].rendered()["unit"]
    assert sites["loopback_name"].rendered()["unit"]


def test_the_preflight_names_a_missing_ansible_rulebook_and_how_to_install_it(sites):
    venv = sites["no_rulebook"].dir / "venv" / "bin"
    message = sites["no_rulebook"].refusal()
    assert f"but {venv / 'ansible-rulebook'} is not there (or not executable)" in message
    assert f"{venv}/pip install 'ansible-core' 'ansible-rulebook>=1.3.2,<1.4'" in message


def test_the_preflight_names_a_missing_project_inventory_and_vault_file(sites):
    tmp_path = sites["no_inventory"].dir
    message = sites["no_inventory"].refusal()
    assert f"the inventory {tmp_path / 'nowhere.yml'}, the vault password file {tmp_path / 'no-vault'} missing" \
        in message


def test_the_argument_specs_refuse_a_wrong_type_before_any_task(tmp_path):
    play = tmp_path / "main.yml"
    play.write_text("- hosts: localhost\n  gather_facts: false\n  roles:\n    - role: aegis.rag.remediation\n")
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "--check",
                           str(play), "-e", '{"remediation_port": "not-a-port", "remediation_state": "gone"}'],
                          cwd=tmp_path, env=playbook_env(tmp_path), capture_output=True, text=True, timeout=300,
                          check=False)
    output = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    assert "Validating arguments against arg spec 'main'" in output, output[-3000:]
    assert "remediation_port" in output and "remediation_state" in output
    assert "Look for the service's unit" not in output  # stopped before the first task


def test_ansible_doc_renders_the_role(tmp_path):
    proc = subprocess.run([str(VENV_BIN / "ansible-doc"), "-t", "role", "aegis.rag.remediation"], cwd=tmp_path,
                          env=playbook_env(tmp_path), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "[WARNING]" not in proc.stderr and "[ERROR]" not in proc.stderr, proc.stderr
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert [name for name in defaults if name not in proc.stdout] == []


def test_the_monitoring_role_sends_the_rulebooks_alerts_by_default():
    defaults = yaml.safe_load((COLLECTION_ROOT / "roles" / "monitoring" / "defaults" / "main.yml").read_text())
    rulebook = (COLLECTION_ROOT / "extensions" / "eda" / "rulebooks" / "aegis_remediation.yml").read_text()
    named = sorted(set(re.findall(r'alertname == "(\w+)"', rulebook)))
    assert sorted(defaults["monitoring_remediation_alerts"]) == named == sorted(RULEBOOK_ALERTS)


# -- the service's command line, end to end -------------------------------------------------------------------

def wait_for(condition, timeout_s: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, f"ansible-rulebook exited ({proc.returncode}):\n{log.read_text()[-6000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log.read_text()[-6000:]}"
        time.sleep(0.2)


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_the_units_command_line_runs_the_dispatcher_with_the_roles_variables(tmp_path):
    """ansible-rulebook as the unit runs it (without the user switch and the sandbox, which need systemd): the
    webhook wants the token from the environment file, and the dispatcher takes its state directory, report
    directory, suggest-only list and runbook map from the role's variables file, not from the inventory."""
    if not (VENV_BIN / "ansible-rulebook").exists() or not java_home():
        if os.environ.get("CI"):
            pytest.fail("ansible-rulebook (the dev extra) and Java 17 (openjdk-17-jre-headless) are needed")
        pytest.skip("ansible-rulebook or Java 17 is missing")
    fleet = make_fleet(tmp_path)  # its inventory names its own state and report directories: the role's must win
    port = free_port()
    files = render(tmp_path, remediation_inventory=str(fleet.inventory), remediation_port=port,
                   remediation_java_home=java_home(), remediation_suggest_only=["AegisAPIHighErrorRate"],
                   remediation_runbooks=standin_runbooks(tmp_path / "standin.yml"),
                   remediation_state_dir=str(tmp_path / "role-state"),
                   remediation_report_dir=str(tmp_path / "role-reports"))
    config = tmp_path / "config"
    config.mkdir()
    (config / "remediation.yml").write_text(files["vars"])
    (config / "remediation.env").write_text(files["env"])
    unit = unit_of(files["unit"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_") and k not in ("JAVA_HOME", "PATH")}
    env.update(environment_of(unit))
    env.update(line.split("=", 1) for line in files["env"].splitlines() if line and not line.startswith("#"))
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(shlex.split(unit["ExecStart"][0]), cwd=unit["WorkingDirectory"][0], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: listening(port), 90, "the webhook to listen", proc, log)
        url = f"http://127.0.0.1:{port}/alerts"
        assert httpx.post(url, json=notification(api_down()), timeout=10).status_code == 401
        reply = httpx.post(url, json=notification(api_down(), alert("AegisAPIHighErrorRate", service="aegis-api")),
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert reply.status_code == 202, reply.text
        journal = tmp_path / "role-state" / "decisions.jsonl"

        def decisions() -> list[dict]:
            return [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []

        wait_for(lambda: len(decisions()) >= 3, 120, "3 decisions", proc, log)
        # the rulebook dispatches both alerts at once (execution_strategy: parallel): the suggestion may come first
        decided = [d["decision"] for d in decisions()]
        assert sorted(decided) == ["finished", "run", "suggest"] and decided.index("run") < decided.index("finished")
        assert not fleet.state_dir.exists() and not fleet.report_dir.exists()
        assert fleet.ran_for() == ["api-1"]
        assert [run["aegis_report_dir"] for run in fleet.runs()] == [str(tmp_path / "role-reports")]
        (outcome,) = sorted((tmp_path / "role-reports").glob("remediation-outcome-*.json"))
        assert json.loads(outcome.read_text())["outcome"]["status"] == "ok"
        assert len(list((tmp_path / "role-reports").glob("remediation-suggestion-*AegisAPIHighErrorRate*"))) == 1
        # Ansible's own files went to the state directory, not to the home directory (read-only in the unit)
        assert (tmp_path / "role-state" / "ansible").is_dir()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
