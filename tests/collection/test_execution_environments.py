"""AWX packaging: execution-environment.yml (job templates) and decision-environment.yml (the remediation rulebook)
make a build context with `ansible-builder create`, and that context holds what the images need: the aegis.rag
collection, installable as its galaxy stage installs it, whose dependencies the builder stage's own introspect
script finds (boto3, openssh); ansible-rulebook and Java in the decision environment. Images are not built: that
needs quay.io, PyPI and Galaxy."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.collection.conftest import COLLECTION_ROOT, REPO, VENV_BIN, ansible_env

DEFINITIONS = ("execution-environment.yml", "decision-environment.yml")
AEGIS_SOURCE = "collections/ansible_collections/aegis/rag"


@pytest.fixture(scope="module")
def contexts(tmp_path_factory) -> dict[str, Path]:
    """`ansible-builder create` of each definition: {definition: its build context}."""
    made = {}
    for name in DEFINITIONS:
        out = tmp_path_factory.mktemp(Path(name).stem) / "context"
        proc = subprocess.run([str(VENV_BIN / "ansible-builder"), "create", "--file", str(REPO / name),
                               "--context", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300,
                              check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        made[name] = out
    return made


def clean_env(tmp_path: Path) -> dict:
    """Ansible's environment without the checkout's collections path (aegis.rag would count as installed)."""
    env = ansible_env(tmp_path)
    env.pop("ANSIBLE_COLLECTIONS_PATH")
    env["HOME"] = str(tmp_path)
    return env


def galaxy_requirements(context_dir: Path) -> list[dict]:
    return yaml.safe_load((context_dir / "_build" / "requirements.yml").read_text())["collections"]


@pytest.mark.parametrize("name", DEFINITIONS)
def test_containerfile_installs_python_ansible_and_introspects_the_collections(contexts, name):
    out = contexts[name]
    containerfile = (out / "Containerfile").read_text()
    assert 'ARG PYCMD="/usr/bin/python3.11"' in containerfile
    assert re.search(r'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2\.18,<2\.20 ansible-runner>=2\.4,<3"', containerfile)
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in containerfile
    assert "/output/scripts/introspect.py introspect" in containerfile
    assert "RUN /output/scripts/install-from-bindep" in containerfile


@pytest.mark.parametrize("name", DEFINITIONS)
def test_the_context_installs_aegis_rag_and_finds_its_dependencies(contexts, name, tmp_path):
    """The galaxy stage's install of aegis.rag (from the copy in the context), then the builder stage's introspect."""
    out = contexts[name]
    (entry,) = [c for c in galaxy_requirements(out) if c.get("type") == "dir"]
    assert entry["name"] == AEGIS_SOURCE and (out / "_build" / AEGIS_SOURCE / "galaxy.yml").exists()
    (tmp_path / "aegis.yml").write_text(yaml.safe_dump({"collections": [entry]}))
    installed = tmp_path / "installed"
    proc = subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", "install", "-r", str(tmp_path / "aegis.yml"),
                           "--collections-path", str(installed)], cwd=out / "_build", env=clean_env(tmp_path),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0 and "aegis.rag:0.1.0 was installed successfully" in proc.stdout, \
        proc.stdout + proc.stderr
    assert (installed / "ansible_collections" / "aegis" / "rag" / "meta" / "execution-environment.yml").exists()
    assert not list(installed.rglob("__pycache__"))  # the galaxy.yml build_ignore applied

    pip, bindep = tmp_path / "requirements.txt", tmp_path / "bindep.txt"
    user_pip = out / "_build" / "requirements.txt"
    proc = subprocess.run([sys.executable, str(out / "_build" / "scripts" / "introspect.py"), "introspect",
                           str(installed), *([f"--user-pip={user_pip}"] if user_pip.exists() else []),
                           f"--write-pip={pip}", f"--write-bindep={bindep}"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    python = pip.read_text()
    assert "boto3>=1.35,<2  # from collection aegis.rag" in python
    assert "botocore>=1.35,<2  # from collection aegis.rag" in python
    assert "openssh-clients [platform:rpm]  # from collection aegis.rag" in bindep.read_text()


def test_decision_environment_has_the_rulebook_engine(contexts):
    out = contexts["decision-environment.yml"]
    assert "ansible-rulebook>=1.3.2,<1.4" in (out / "_build" / "requirements.txt").read_text()
    assert "java-17-openjdk-headless [platform:rpm]" in (out / "_build" / "bindep.txt").read_text()
    assert "ENV JAVA_HOME=/usr/lib/jvm/jre-17-openjdk" in (out / "Containerfile").read_text()
    installed = (out / "_build" / AEGIS_SOURCE / "extensions" / "eda")
    assert (installed / "rulebooks" / "aegis_remediation.yml").exists()
    assert (installed / "plugins" / "event_source" / "alertmanager.py").exists()


def used_collections() -> set[str]:
    """Collections named by FQCN in the playbooks and roles (aegis.rag and ansible.builtin aside)."""
    names = set()
    for folder in (REPO / "playbooks", COLLECTION_ROOT / "playbooks", COLLECTION_ROOT / "roles"):
        for path in folder.rglob("*.yml"):
            names.update(re.findall(r"^\s*-?\s*([a-z_]+\.[a-z_]+)\.[a-z_0-9]+:\s*$", path.read_text(), re.MULTILINE))
    return names - {"aegis.rag", "ansible.builtin"}


def test_execution_environment_has_every_collection_the_playbooks_use(contexts):
    out = contexts["execution-environment.yml"]
    galaxy = {c["name"] for c in galaxy_requirements(out)}
    assert "community.crypto" in used_collections()
    assert used_collections() <= galaxy
    # requirements.yml, less containers.podman (the test hosts' connection, not the fleet's)
    declared = {c["name"] for c in yaml.safe_load((REPO / "requirements.yml").read_text())["collections"]}
    assert declared - {"containers.podman"} <= galaxy


def third_party_imports() -> set[str]:
    names = set()
    for folder in ("plugins/module_utils", "plugins/modules", "plugins/filter"):
        for path in (COLLECTION_ROOT / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"ansible", "ansible_collections", "__future__"}


def test_collection_requirements_cover_its_imports():
    meta = yaml.safe_load((COLLECTION_ROOT / "meta" / "execution-environment.yml").read_text())
    assert meta["dependencies"] == {"python": "requirements.txt", "system": "bindep.txt"}
    lines = (COLLECTION_ROOT / "requirements.txt").read_text().splitlines()
    required = {re.split(r"[<>=!~ ]", line)[0].lower() for line in lines if line.strip() and not line.startswith("#")}
    assert third_party_imports() == {"boto3", "botocore"}
    assert third_party_imports() <= required
