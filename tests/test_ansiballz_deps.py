"""tests/bytecode/aegis_ansiballz_deps.py: a module's payload is the same with the cache, cold or warm, and a warm
cache parses only the module itself."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
BYTECODE = Path(__file__).parent / "bytecode"
MODULES = ["aegis.rag.health_check", "aegis.rag.qdrant_snapshot", "ansible.builtin.command", "ansible.builtin.uri"]

# Builds each module's payload as Ansible does (recursive_finder) and prints, per module, the payload's files with
# their content's sha256, the module's metadata and how many files were parsed.
BUILD = """
import datetime, hashlib, io, json, sys, zipfile
from ansible.executor import module_common as mc
parsed = []
compile_ast = mc._compile_module_ast
mc._compile_module_ast = lambda name, source: parsed.append(name) or compile_ast(name, source)
if sys.argv[1] == "cached":
    import aegis_ansiballz_deps
    aegis_ansiballz_deps.patch(mc)
from ansible.plugins.loader import init_plugin_loader, module_loader
init_plugin_loader([sys.argv[2]])
from ansible._internal._ansiballz import _builder
out = {}
for name in sys.argv[3:]:
    path = module_loader.find_plugin_with_context(name).plugin_resolved_path
    parsed.clear()
    with open(path, "rb") as f:
        data = f.read()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        metadata = mc.recursive_finder(name, mc._get_ansible_module_fqn(path), data, zf,
                                       datetime.datetime(2020, 1, 1), _builder.ExtensionManager.create(task_vars={}))
    with zipfile.ZipFile(buf) as z:
        files = sorted([n, hashlib.sha256(z.read(n)).hexdigest()] for n in z.namelist())
    out[name] = {"files": files, "metadata": repr(metadata), "parsed": len(parsed)}
print(json.dumps(out))
"""


def build(home: Path, mode: str) -> dict:
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(BYTECODE)}
    run = subprocess.run([sys.executable, "-c", BUILD, mode, str(ROOT / "collections"), *MODULES], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.splitlines()[-1])


def payloads(result: dict) -> dict:
    return {name: (built["files"], built["metadata"]) for name, built in result.items()}


def test_the_payloads_are_the_same_and_a_warm_cache_parses_only_the_module(tmp_path):
    plain = build(tmp_path, "plain")
    cold = build(tmp_path, "cached")
    entries = list((tmp_path / ".cache" / "aegis" / "ansiballz-deps").rglob("*"))
    warm = build(tmp_path, "cached")
    assert payloads(cold) == payloads(plain) == payloads(warm)
    assert all(len(built["files"]) > 40 for built in plain.values())  # basic.py and what it imports
    assert all(plain[name]["parsed"] >= len(plain[name]["files"]) - 5 for name in MODULES)  # about one a file
    assert [warm[name]["parsed"] for name in MODULES] == [1] * len(MODULES)  # the module itself, for its metadata
    assert entries and all(p.is_dir() or not p.name.count(".") for p in entries)  # no partial file left


def test_a_broken_entry_is_parsed_again_and_replaced(tmp_path):
    plain = build(tmp_path, "plain")
    build(tmp_path, "cached")
    entries = [p for p in (tmp_path / ".cache" / "aegis" / "ansiballz-deps").rglob("*") if p.is_file()]
    for entry in entries:
        entry.write_bytes(b"not marshal data")
    again = build(tmp_path, "cached")
    assert payloads(again) == payloads(plain)
    assert all(entry.read_bytes() != b"not marshal data" for entry in entries)
    assert [build(tmp_path, "cached")[name]["parsed"] for name in MODULES] == [1] * len(MODULES)


def test_an_unwritable_cache_still_builds(tmp_path):
    (tmp_path / ".cache").write_text("a file where the folder would be")
    assert payloads(build(tmp_path, "cached")) == payloads(build(tmp_path, "plain"))


def test_ansible_playbook_runs_with_the_cache_the_tests_give_it(tmp_path):
    """tests/conftest.py puts the folder on PYTHONPATH; its sitecustomize installs the cache in ansible-playbook."""
    playbook = tmp_path / "play.yml"
    playbook.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n    - ansible.builtin.command: 'true'\n")
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(BYTECODE), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "t")}
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                          "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert len([p for p in (tmp_path / ".cache" / "aegis" / "ansiballz-deps").rglob("*") if p.is_file()]) > 40
