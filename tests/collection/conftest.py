"""Harness for the aegis.rag collection tests.

- Puts <repo>/collections on sys.path, so tests import collection code as
  `ansible_collections.aegis.rag.plugins...` (and test helpers as `...aegis.rag.tests.unit.helpers`).
  The collection's own unit tests live in the collection (tests/unit, run by `ansible-test units`);
  test_collection_units.py runs them.
- `run_tasks` runs a list of tasks through the real `ansible-playbook` against localhost and returns
  the per-task results parsed from the JSON stdout callback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.module_python import MODULE_PYTHON

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / "collections"
COLLECTION_ROOT = COLLECTIONS / "ansible_collections" / "aegis" / "rag"
VENV_BIN = Path(sys.executable).parent
JSON_CALLBACK = "ansible.posix.json"

if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


@dataclass
class PlayResult:
    rc: int
    stdout: str
    stderr: str
    elapsed_s: float
    results: list[dict] = field(default_factory=list)
    task_names: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    def result(self, which: int | str = -1) -> dict:
        """A task's result by index or by task name."""
        if isinstance(which, str):
            return self.results[self.task_names.index(which)]
        return self.results[which]

    def describe(self) -> str:
        return f"rc={self.rc}\nstdout:\n{self.stdout[-6000:]}\nstderr:\n{self.stderr[-3000:]}"


def ansible_env(tmp_path: Path, **extra: str) -> dict:
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_STDOUT_CALLBACK": JSON_CALLBACK,
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / ".ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / ".ansible-remote"),
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "false",
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
    })
    env.pop("ANSIBLE_CONFIG", None)
    env.update(extra)
    return env


def parse_json_callback(stdout: str) -> tuple[list[dict], list[str], dict]:
    start = stdout.find("{")
    if start < 0:
        return [], [], {}
    data = json.loads(stdout[start:])
    results, names = [], []
    for play in data.get("plays", []):
        for task in play.get("tasks", []):
            hosts = task.get("hosts", {})
            results.append(hosts.get("localhost", next(iter(hosts.values()), {})))
            names.append(task.get("task", {}).get("name", ""))
    return results, names, data.get("stats", {})


@pytest.fixture
def run_tasks(tmp_path):
    """run_tasks(tasks, check=False, diff=False, extra_vars=None, expect_failure=False, python=None,
    play=None, timeout=300) -> PlayResult.

    `python` is the target interpreter (default: this venv's; pass "/usr/bin/python3" to prove a module
    needs nothing beyond the standard library). `play` adds keys to the play (e.g. module_defaults)."""
    counter = {"n": 0}

    def run(tasks: list[dict], check: bool = False, diff: bool = False, extra_vars: dict | None = None,
            expect_failure: bool = False, python: str | None = None, play: dict | None = None,
            timeout: float = 300) -> PlayResult:
        counter["n"] += 1
        workdir = tmp_path / f"play{counter['n']}"
        workdir.mkdir()
        playbook = [{"name": "run_tasks", "hosts": "localhost", "gather_facts": False, **(play or {}),
                     "tasks": tasks}]
        (workdir / "play.yml").write_text(json.dumps(playbook, indent=1))
        (workdir / "hosts.ini").write_text(
            f"localhost ansible_connection=local ansible_python_interpreter={python or MODULE_PYTHON}\n")
        cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(workdir / "hosts.ini"), str(workdir / "play.yml")]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if extra_vars:
            (workdir / "extra_vars.json").write_text(json.dumps(extra_vars))
            cmd += ["-e", f"@{workdir / 'extra_vars.json'}"]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, check=False, cwd=workdir, env=ansible_env(workdir), capture_output=True, text=True,
                              timeout=timeout)
        elapsed = time.monotonic() - t0
        try:
            results, names, stats = parse_json_callback(proc.stdout)
        except ValueError as exc:
            raise AssertionError(f"ansible-playbook output is not JSON ({exc}):\n{proc.stdout}\n{proc.stderr}") from exc
        out = PlayResult(proc.returncode, proc.stdout, proc.stderr, elapsed, results, names, stats)
        if expect_failure:
            assert out.rc != 0, f"expected the play to fail\n{out.describe()}"
        else:
            assert out.rc == 0, f"play failed\n{out.describe()}"
        return out

    return run


@pytest.fixture(scope="session")
def collection_root() -> Path:
    return COLLECTION_ROOT


@pytest.fixture(scope="module")
def aegis_api(tmp_path_factory, local_embedder):
    """A real Aegis API (embedded vector store, extractive answers) on a free loopback port, one document in."""
    from tests.collection.aegis_app import AegisServer

    server = AegisServer(tmp_path_factory.mktemp("aegis-data"), embedder=local_embedder).start()
    server.add_document()
    yield server
    server.stop()


@pytest.fixture
def closed_port_url():
    """A loopback URL where nothing listens (connection refused)."""
    from tests.stack import free_port

    return f"http://127.0.0.1:{free_port()}"
