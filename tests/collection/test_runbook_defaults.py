"""The declared inputs of the runbooks (issue 24): the role aegis.rag.runbook_defaults and its filter
aegis.rag.unknown_variables.

- the filter: unknown names, each with the closest declared one;
- the role: a misspelt runbook variable fails the run with the name meant, before anything else runs (a small play
  and a real runbook, health_check, in check mode), a correct one passes and sees the role's defaults, the check runs
  once per run;
- the declarations: every variable a runbook's header documents is declared, argument_specs and defaults/main.yml
  agree, every declared variable is read by a runbook, the role's defaults equal the playbooks' own
  `| default(...)` values, every play imports the role first, and no file of the repository (inventories, the fleet
  and test harness, docs) uses a runbook-prefixed name that the check would refuse."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.aegis.rag.plugins.filter.unknown_variables import unknown_variables
from tests.collection.conftest import COLLECTION_ROOT, REPO, VENV_BIN, ansible_env

ROLE = COLLECTION_ROOT / "roles" / "runbook_defaults"
PLAYBOOKS = COLLECTION_ROOT / "playbooks"
RUNBOOKS = sorted(PLAYBOOKS.glob("*.yml"))
OPTIONS = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
CHECK_VARS = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())[0]["vars"]
PREFIXES = CHECK_VARS["_runbook_defaults_prefixes"]
NOT_RUNBOOK_VARIABLES = CHECK_VARS["_runbook_defaults_not_runbook_variables"]
IMPORT = {"ansible.builtin.import_role": {"name": "aegis.rag.runbook_defaults", "rolespec_validate": False}}
TYPO = "aegis_runbook_latncy_window"  # the docs' example of a misspelt variable
TYPO_MESSAGE = f"{TYPO} is not a runbook variable; did you mean aegis_runbook_latency_window?"


# -- the filter -----------------------------------------------------------------------------------------------------

def test_filter_names_each_unknown_variable_with_the_closest_declared_one():
    declared = ["aegis_runbook_latency_window", "aegis_backup_keep_last", "aegis_backup_max_age"]
    names = ["aegis_backup_keep_last", "aegis_backup_keep_lst", TYPO, "aegis_backup_nothing_like_it", TYPO]
    assert unknown_variables(names, declared) == [
        {"name": "aegis_backup_keep_lst", "suggestion": "aegis_backup_keep_last"},
        {"name": "aegis_backup_nothing_like_it", "suggestion": None},
        {"name": TYPO, "suggestion": "aegis_runbook_latency_window"},
    ]


def test_filter_takes_a_dict_of_declarations_ignores_names_and_tunes_the_cutoff():
    declared = {"aegis_backup_keep_last": {"type": "int"}}
    assert unknown_variables(["aegis_backup_keep_last", "aegis_remediation_port"], declared,
                             ["aegis_remediation_port"]) == []
    assert unknown_variables(["aegis_backup_keep"], declared)[0]["suggestion"] == "aegis_backup_keep_last"
    assert unknown_variables(["aegis_backup_keep"], declared, cutoff=0.95)[0]["suggestion"] is None


def test_filter_refuses_a_string_for_a_list():
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match="declared must be a list of names"):
        unknown_variables(["a"], "aegis_backup_keep_last")


# -- the role's check, through ansible-playbook ---------------------------------------------------------------------

def test_a_misspelt_variable_fails_naming_the_variable_meant(run_tasks):
    out = run_tasks([IMPORT, {"name": "Never reached", "ansible.builtin.debug": {"msg": "ran"}}],
                    extra_vars={TYPO: 1, "aegis_backup_nothing_like_it": 1}, expect_failure=True)
    assert TYPO_MESSAGE in out.stdout, out.describe()
    assert "aegis_backup_nothing_like_it is not a runbook variable. " in out.stdout, out.describe()
    assert "ansible-doc -t role aegis.rag.runbook_defaults" in out.stdout
    assert "Never reached" not in out.task_names


def test_correct_variables_pass_and_the_play_sees_the_role_defaults(run_tasks):
    out = run_tasks([IMPORT, {"name": "Read the variables", "ansible.builtin.debug": {"msg": {
        "keep_last": "{{ aegis_backup_keep_last }}", "max_age": "{{ aegis_backup_max_age }}",
        "qdrant_url": "{{ aegis_runbook_qdrant_url }}", "window": "{{ aegis_runbook_latency_window }}"}}}],
        # a declared variable, and a name of a runbook prefix that belongs to the remediation rulebook
        extra_vars={"aegis_backup_keep_last": 3, "aegis_remediation_port": 5050})
    assert out.result("Read the variables")["msg"] == {
        "keep_last": 3, "max_age": "30d", "qdrant_url": "http://localhost:6333", "window": 10}


def run_plays(tmp_path: Path, plays: list[dict], extra_vars: dict, expect_failure: bool = False) -> dict:
    """ansible-playbook of `plays` against localhost; the JSON callback's output."""
    (tmp_path / "play.yml").write_text(json.dumps(plays))
    (tmp_path / "hosts.ini").write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    (tmp_path / "vars.json").write_text(json.dumps(extra_vars))
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "hosts.ini", "-e", "@vars.json", "play.yml"],
                          cwd=tmp_path, env=ansible_env(tmp_path), capture_output=True, text=True, timeout=300,
                          check=False)
    assert (proc.returncode != 0) == expect_failure, proc.stdout[-4000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout[proc.stdout.find("{"):])


def test_the_check_runs_once_per_run_and_every_play_gets_the_defaults(tmp_path):
    play = {"hosts": "localhost", "gather_facts": False, "tasks": [
        IMPORT, {"name": "Read a default", "ansible.builtin.debug": {"msg": "{{ aegis_game_day_mode }}"}}]}
    data = run_plays(tmp_path, [{"name": "first", **play}, {"name": "second", **play}], {"aegis_game_day_force": True})
    first, second = ([(t["task"]["name"], t["hosts"]["localhost"]) for t in p["tasks"]] for p in data["plays"])
    assert [r.get("skipped", False) for _, r in first] == [False, False, False], first
    assert [r.get("skipped", False) for _, r in second] == [True, True, False], second
    assert first[-1][1]["msg"] == second[-1][1]["msg"] == "closed_loop"


def test_a_real_runbook_in_check_mode_fails_on_a_misspelt_variable_before_any_task(tmp_path):
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"aegis_api": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "hosts.yml", "--check",
                           "-e", "aegis_health_timout=5", str(REPO / "playbooks" / "health_check.yml")],
                          cwd=tmp_path, env=ansible_env(tmp_path, ANSIBLE_STDOUT_CALLBACK="default"),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode != 0, proc.stdout
    assert "aegis_health_timout is not a runbook variable; did you mean aegis_health_timeout?" in proc.stdout
    assert "Run the checks concurrently" not in proc.stdout and "failed=1" in proc.stdout, proc.stdout


def test_ansible_doc_renders_the_role_and_the_filter(tmp_path):
    def doc(*args: str) -> str:
        proc = subprocess.run([str(VENV_BIN / "ansible-doc"), *args], cwd=tmp_path, env=ansible_env(tmp_path),
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "[WARNING]" not in proc.stderr and "[ERROR]" not in proc.stderr, proc.stderr
        return proc.stdout

    role = doc("-t", "role", "aegis.rag.runbook_defaults")
    assert re.search(r"ENTRY POINT: \W*main", role) and "aegis_runbook_latency_window" in role, role[:2000]
    assert "aegis_report_dir" in role and "backup_date" in role
    filter_doc = doc("-t", "filter", "aegis.rag.unknown_variables")
    assert all(section in filter_doc for section in ("OPTIONS", "EXAMPLES", "RETURN VALUES"))


# -- the declarations -----------------------------------------------------------------------------------------------

RUNBOOK_NAME = re.compile(r"\b(?:%s)[a-z0-9_]*[a-z0-9]\b" % "|".join(PREFIXES))
# a first word of a header's "Variables" list: names without a runbook prefix (backup_date, new_model, ...)
LISTED_NAME = re.compile(r"^#   ([a-z][a-z0-9]*_[a-z0-9_]+)(?=[\s,/]|$)", re.MULTILINE)


def header_variables(playbook: Path) -> set[str]:
    lines = []
    for line in playbook.read_text().splitlines()[1:]:
        if not line.startswith("#"):
            break
        lines.append(line)
    header = "\n".join(lines)
    listed = header[header.find("# Variables"):] if "# Variables" in header else ""
    return set(RUNBOOK_NAME.findall(header)) | set(LISTED_NAME.findall(listed))


def test_the_headers_are_parsed():
    assert {"aegis_backup_keep_last", "aegis_runbook_qdrant_url"} <= header_variables(PLAYBOOKS / "backup.yml")
    assert "backup_date" in header_variables(PLAYBOOKS / "emergency_recovery.yml")
    assert "api_unit_killed" not in header_variables(PLAYBOOKS / "game_day.yml")  # a fault, listed before Variables


@pytest.mark.parametrize("playbook", RUNBOOKS, ids=lambda p: p.stem)
def test_every_variable_of_the_header_is_declared(playbook):
    assert sorted(header_variables(playbook) - set(OPTIONS)) == []


def test_argument_specs_and_defaults_name_the_same_variables():
    with_default = {name for name, option in OPTIONS.items() if "default" in option}
    assert (sorted(set(DEFAULTS) - with_default), sorted(with_default - set(DEFAULTS))) == ([], [])
    assert {name: OPTIONS[name]["default"] for name in DEFAULTS} == DEFAULTS
    # a variable without a default says what the runbooks use instead
    assert [name for name, option in OPTIONS.items()
            if "default" not in option and not re.search(r"Not in the role's defaults|required|[Uu]nset",
                                                         " ".join(option["description"]))] == []


def code_of(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))


def test_every_declared_variable_is_read_by_a_runbook():
    code = "\n".join(code_of(path) for path in PLAYBOOKS.rglob("*.yml"))
    assert [name for name in OPTIONS if not re.search(r"\b%s\b" % name, code)] == []


def default_calls(text: str):
    """(name, argument) of each `name | default(argument)`."""
    for match in re.finditer(r"(?<![\w.\]])([a-z][a-z0-9_]*)\s*\|\s*default\(", text):
        start = end = match.end()
        depth = 1
        while depth:
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        yield match.group(1), " ".join(text[start:end - 1].split())


def jinja_literal(argument: str):
    python = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnone\b", "None", argument)))
    try:
        return ast.literal_eval(python)
    except (ValueError, SyntaxError):
        return NotImplemented


def test_the_role_defaults_equal_the_playbooks_own_defaults():
    """Each literal `| default(...)` of a variable the role gives a plain default must give the same value (the
    playbooks keep their calls for now). Templated defaults (`qdrant/{{ inventory_hostname }}`) are checked by eye."""
    checked, differing = 0, []
    for path in PLAYBOOKS.rglob("*.yml"):
        for name, argument in default_calls(path.read_text()):
            value = DEFAULTS.get(name)
            if name not in DEFAULTS or (isinstance(value, str) and "{{" in value):
                continue
            literal = jinja_literal(argument.removesuffix(", true"))
            checked += 1
            if literal != value:
                differing.append((path.name, name, argument, value))
    assert checked > 200 and differing == []


@pytest.mark.parametrize("playbook", RUNBOOKS, ids=lambda p: p.stem)
def test_every_play_imports_the_role_first(playbook):
    plays = yaml.safe_load(playbook.read_text())
    assert plays and all({k: v for k, v in play["tasks"][0].items() if k != "name"} == IMPORT for play in plays)


def test_no_file_uses_a_runbook_name_the_check_refuses():
    """Inventories, the fleet and test harness, AWX, the docs: a runbook-prefixed name there is declared, or
    excluded by name in the role's tasks (variables of the remediation rulebook and of site.yml)."""
    mine = {ROLE, COLLECTION_ROOT / "plugins" / "filter" / "unknown_variables.py", Path(__file__).resolve()}
    found: dict[str, str] = {}
    for top in ("collections", "playbooks", "molecule", "tests", "awx", "inventories", "docs"):
        for path in (REPO / top).rglob("*"):
            if (not path.is_file() or path.suffix not in {".yml", ".yaml", ".py", ".j2", ".md", ".ini", ".json", ".cfg"}
                    or "output" in path.parts or any(path == m or m in path.parents for m in mine)):
                continue
            for name in RUNBOOK_NAME.findall(path.read_text(errors="replace")):
                found.setdefault(name, str(path.relative_to(REPO)))
    refused = {name: where for name, where in found.items()
               if name not in OPTIONS and name not in NOT_RUNBOOK_VARIABLES and name != TYPO}
    assert refused == {}
    assert set(NOT_RUNBOOK_VARIABLES) <= set(found), "an excluded name is no longer used: drop it"
