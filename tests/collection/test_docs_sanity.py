"""Every module of aegis.rag documents itself (ansible-doc renders it, returns carry samples) and the collection
passes `ansible-test sanity` (run from a copy at <tmp>/ansible_collections/aegis/rag, --local, Python 3.11).

ansible-test bootstraps pip in its sanity venvs with a script it downloads from ci-files.testing.ansible.com,
which this environment cannot reach; tests/collection/get_pip_offline.py stands in for it (ensurepip, then
pip from the normal index) and is put in ansible-test's cache (~/.ansible/test/cache) when missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.collection.conftest import COLLECTION_ROOT, VENV_BIN, ansible_env

MODULES = sorted(p.stem for p in (COLLECTION_ROOT / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
HERE = Path(__file__).parent


def ansible_doc(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "ansible-doc"), *args], check=False, env=ansible_env(tmp_path), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_modules_are_discovered():
    assert {"health_check", "ollama_model", "gpu_info"} <= set(MODULES)


def _clean(proc: subprocess.CompletedProcess) -> bool:
    return proc.returncode == 0 and "[WARNING]" not in proc.stderr and "[ERROR]" not in proc.stderr


@pytest.fixture(scope="module")
def docs_of_all(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """ansible-doc of every module in one run, as text and as JSON. A test takes its module's part of it when the
    run was clean (rc 0, no warning, no error) and holds the module; otherwise it runs ansible-doc on its module
    alone, as before, which names the module at fault."""
    tmp_path = tmp_path_factory.mktemp("ansible-doc")
    names = [f"aegis.rag.{module}" for module in MODULES]
    return {"text": ansible_doc(tmp_path, "-t", "module", *names),
            "json": ansible_doc(tmp_path, "--json", "-t", "module", *names)}


def _text_of(output: str, module: str) -> str | None:
    """The module's part of a multi-module ansible-doc text (each starts with `> MODULE aegis.rag.<name> (`)."""
    parts = re.split(r"^(?=> MODULE )", output, flags=re.MULTILINE)
    found = [part for part in parts if part.startswith(f"> MODULE aegis.rag.{module} (")]
    return found[0] if len(found) == 1 else None


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders(module, tmp_path, docs_of_all):
    text = _text_of(docs_of_all["text"].stdout, module) if _clean(docs_of_all["text"]) else None
    if text is None:
        proc = ansible_doc(tmp_path, "-t", "module", f"aegis.rag.{module}")
        assert proc.returncode == 0, proc.stderr
        assert "[WARNING]" not in proc.stderr and "[ERROR]" not in proc.stderr, proc.stderr
        text = proc.stdout
    for section in ("OPTIONS", "ATTRIBUTES", "EXAMPLES", "RETURN VALUES"):
        assert section in text, f"{section} missing from ansible-doc {module}"


@pytest.mark.parametrize("module", MODULES)
def test_documentation_is_complete(module, tmp_path, docs_of_all):
    proc = docs_of_all["json"]
    if proc.returncode != 0 or f"aegis.rag.{module}" not in json.loads(proc.stdout or "{}"):
        proc = ansible_doc(tmp_path, "--json", "-t", "module", f"aegis.rag.{module}")
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout)[f"aegis.rag.{module}"]
    doc, returns = entry["doc"], entry["return"] or {}
    assert doc["short_description"] and doc["description"]
    for name in ("check_mode", "diff_mode"):
        assert doc["attributes"][name].get("support") in ("full", "partial", "none", "N/A"), name
    assert entry["examples"].strip()
    no_sample = [name for name, spec in returns.items() if "sample" not in spec and "contains" not in spec]
    assert not no_sample, f"return values without sample: {no_sample}"


# -- ansible-test sanity ------------------------------------------------------------------------------

def _pip_bootstrap_version() -> str:
    import ansible_test

    source = Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
    match = re.search(r"pip='([0-9.]+)'", source.read_text())
    assert match, "cannot find the pip version ansible-test bootstraps"
    return match.group(1)


@pytest.fixture(scope="session")
def sanity_output(tmp_path_factory) -> str:
    cache = Path.home() / ".ansible" / "test" / "cache" / f"get_pip_{_pip_bootstrap_version().replace('.', '_')}.py"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(HERE / "get_pip_offline.py", cache)
    root = tmp_path_factory.mktemp("sanity") / "ansible_collections" / "aegis" / "rag"
    shutil.copytree(COLLECTION_ROOT, root, ignore=shutil.ignore_patterns("output", "__pycache__"))
    proc = subprocess.run([str(VENV_BIN / "ansible-test"), "sanity", "--python", "3.11", "--local", "--color", "no"],
                          cwd=root, check=False, capture_output=True, text=True, timeout=3600,
                          env={k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")})
    output = proc.stdout + proc.stderr
    if "does not have pip available" in output or "No matching distribution found" in output:
        pytest.skip("ansible-test could not install its sanity requirements (package index unreachable)")
    assert "Running sanity test" in output, output[-3000:]
    return output


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if re.match(r"ERROR: \S+:\d+:\d+: ", line)]


@pytest.mark.slow
@pytest.mark.parametrize("module", MODULES)
def test_ansible_test_sanity_module(sanity_output, module):
    mine = [e for e in _errors(sanity_output) if f"plugins/modules/{module}.py:" in e]
    assert not mine, "\n".join(mine)


@pytest.mark.slow
def test_ansible_test_sanity_rest_of_collection(sanity_output):
    rest = [e for e in _errors(sanity_output) if "plugins/modules/" not in e]
    assert not rest, "\n".join(rest)
    failed = re.search(r"FATAL: The \d+ sanity test\(s\) listed below.*", sanity_output, re.DOTALL)
    if failed and not _errors(sanity_output):
        pytest.fail(failed.group(0))
