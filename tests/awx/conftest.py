"""Harness for the AWX tests: the AWX stand-in on loopback and `ansible-playbook playbooks/awx_configure.yml`.

- `awx` (one per test module) starts tests/doubles/awx.py (uvicorn in a thread, a free port on 127.0.0.1) with this repository as
  its project; `awx.standin` is the in-memory API to inspect what the playbook created.
- `apply` runs the apply playbook against it (real awx.awx modules over HTTP) with a data file and a
  plaintext vault file, and returns rc, output and the play recap's changed/failed counts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
import yaml

from tests.doubles.awx import AwxStandIn, build_app

REPO = Path(__file__).resolve().parents[2]
DATA_FILE = REPO / "awx" / "aegis.yml"
VAULT_EXAMPLE = REPO / "awx" / "vault.example.yml"
APPLY_PLAYBOOK = REPO / "playbooks" / "awx_configure.yml"
VENV_BIN = Path(sys.executable).parent
USER, PASSWORD = "admin", "stand-in-password"


class AnsibleLoader(yaml.SafeLoader):
    """Reads Ansible YAML: `!unsafe` strings are plain strings here."""


AnsibleLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load_data(path: Path = DATA_FILE) -> dict:
    return yaml.load(path.read_text(), Loader=AnsibleLoader)["aegis_awx"]


@dataclass
class AwxServer:
    url: str
    standin: AwxStandIn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def awx():
    app = build_app(REPO, USER, PASSWORD)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the AWX stand-in did not start")
        time.sleep(0.05)
    yield AwxServer(f"http://127.0.0.1:{port}", app.state.standin)
    server.should_exit = True
    thread.join(timeout=10)


@dataclass
class ApplyResult:
    rc: int
    stdout: str
    stderr: str
    stats: dict

    @property
    def changed(self) -> int:
        return self.stats.get("localhost", {}).get("changed", -1)

    def _items(self):
        """(task name, item label, result) for every task and loop item of the run."""
        start = self.stdout.find("{")
        plays = json.loads(self.stdout[start:]).get("plays", []) if start >= 0 else []
        for task in (t for play in plays for t in play.get("tasks", [])):
            result = task.get("hosts", {}).get("localhost", {})
            for item in result.get("results") or [result]:
                yield task["task"]["name"], item.get("_ansible_item_label", ""), item

    @property
    def changed_tasks(self) -> list[str]:
        """'task name: item label' for every changed task (or loop item) of the run."""
        return [f"{name}: {label}" if label else name for name, label, item in self._items() if item.get("changed")]

    @property
    def failure(self) -> str:
        """The messages of the failed tasks (or loop items), with the API's answer when a module got one."""
        return "\n".join(f"{item.get('msg', '')} {item.get('response', '')}".strip()
                         for _, _, item in self._items() if item.get("failed"))

    def describe(self) -> str:
        return f"rc={self.rc}\nstdout:\n{self.stdout[-8000:]}\nstderr:\n{self.stderr[-3000:]}"


@pytest.fixture(scope="module")
def apply(awx, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("awx-apply")
    vault = tmp_path / "vault.yml"
    vault.write_text(VAULT_EXAMPLE.read_text())

    def run(data_file: Path = DATA_FILE, *extra: str) -> ApplyResult:
        env = dict(os.environ)
        env.pop("ANSIBLE_CONFIG", None)
        env.update({
            "CONTROLLER_HOST": awx.url, "CONTROLLER_USERNAME": USER, "CONTROLLER_PASSWORD": PASSWORD,
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / ".ansible-local"),
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        })
        cmd = ["ansible-playbook", str(APPLY_PLAYBOOK), "-e", f"aegis_awx_data_file={data_file}",
               "-e", f"aegis_awx_vault_file={vault}", "-e", "aegis_awx_scm_url=https://git.example.org/aegis.git",
               *extra]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        start = proc.stdout.find("{")
        stats = json.loads(proc.stdout[start:]).get("stats", {}) if start >= 0 else {}
        return ApplyResult(proc.returncode, proc.stdout, proc.stderr, stats)

    return run


def write_data(path: Path, data: dict) -> Path:
    """A data file for one test (the real one, edited); `!unsafe` does not survive, so injectors are escaped."""
    text = yaml.safe_dump({"aegis_awx": data}, sort_keys=False)
    text = text.replace("'{{ ", "!unsafe '{{ ")
    path.write_text("---\n" + text)
    return path
