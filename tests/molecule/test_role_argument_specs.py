"""Every role of aegis.rag documents exactly its public variables: meta/argument_specs.yml names each
variable of defaults/main.yml with the same default, and the role's README table lists each one.

runbook_defaults declares the runbooks' variables (issue 24): they carry the runbooks' prefixes, not the role's, and
some have no default every runbook shares (declared in argument_specs without one, absent from defaults/main.yml)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).parents[2] / "collections" / "ansible_collections" / "aegis" / "rag" / "roles"
ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if (p / "tasks" / "main.yml").is_file())
RUNBOOK_DEFAULTS = "runbook_defaults"


def defaults_of(role: str) -> dict:
    return yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}


def options_of(role: str) -> dict:
    return yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"][
        "options"
    ]


def test_the_collection_has_roles():
    assert "redis" in ROLE_NAMES


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_argument_specs_name_every_default(role):
    options, defaults = options_of(role), set(defaults_of(role))
    without_default = {name for name, option in options.items() if "default" not in option}
    if role != RUNBOOK_DEFAULTS:
        assert sorted(without_default) == [], "options without a default"
    expected = set(options) - without_default
    assert (sorted(defaults - expected), sorted(expected - defaults)) == ([], []), "(undocumented, not in defaults)"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_argument_specs_defaults_equal_the_defaults(role):
    options = options_of(role)
    differing = {
        name: (options[name].get("default"), value)
        for name, value in defaults_of(role).items()
        if name in options and options[name].get("default") != value
    }
    assert not differing, f"name: (argument_specs default, defaults/main.yml value): {differing}"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_public_variables_carry_the_role_prefix(role):
    prefixes = (f"{role}_",)
    if role == RUNBOOK_DEFAULTS:  # the prefixes its check knows
        tasks = yaml.safe_load((ROLES / role / "tasks" / "main.yml").read_text())
        prefixes = tuple(tasks[0]["vars"]["_runbook_defaults_prefixes"])
    assert [name for name in defaults_of(role) if not name.startswith(prefixes)] == []


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_readme_table_lists_every_variable(role):
    readme = (ROLES / role / "README.md").read_text()
    assert [name for name in defaults_of(role) if f"| `{name}` |" not in readme] == []


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_entry_point_documents_the_defaults_it_shares(role):
    """Entry points besides main (tasks_from) give the same default as defaults/main.yml for each variable."""
    specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    defaults = defaults_of(role)
    differing = {
        (entry, name): (option.get("default"), defaults[name])
        for entry, spec in specs.items()
        for name, option in (spec.get("options") or {}).items()
        if name in defaults and option.get("default") != defaults[name]
    }
    assert not differing, f"(entry point, name): (argument_specs default, defaults/main.yml value): {differing}"
