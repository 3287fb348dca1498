"""Runs the collection's own unit tests (collections/ansible_collections/aegis/rag/tests/unit) the way the
collection's users and CI run them: `ansible-test units --local`, from a copy of the collection (so no
tests/output or caches land in the tree). This is how `pytest tests` covers them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from tests.collection.conftest import COLLECTION_ROOT, VENV_BIN

PYTHON = "%d.%d" % sys.version_info[:2]


def test_ansible_test_units_pass(tmp_path):
    root = tmp_path / "ansible_collections" / "aegis" / "rag"
    shutil.copytree(COLLECTION_ROOT, root, ignore=shutil.ignore_patterns("output", "__pycache__", ".*_cache"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run([str(VENV_BIN / "ansible-test"), "units", "--local", "--python", PYTHON, "--color", "no",
                           "--num-workers", "2"], cwd=root, env=env, check=False, capture_output=True, text=True,
                          timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    # both test contexts ran and found tests: plugins/modules and plugins/module_utils
    assert "Unit test modules with Python" in output and "Unit test module_utils with Python" in output, output
    passed = [int(n) for n in re.findall(r"=+ (\d+) passed", output)]
    assert len(passed) == 2 and min(passed) > 10, output[-3000:]
