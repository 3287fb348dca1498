"""tests/module_python: the warm interpreter runs a program as `python` would, and modules give the same results."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.collection.conftest import COLLECTIONS, VENV_BIN, ansible_env, parse_json_callback
from tests.module_python import aegis_module_python

# What a program sees of its interpreter; `warm`: ansible.module_utils was imported before it started.
PROBE = """
import json, os, sys, __main__
mask = os.umask(0); os.umask(mask)
print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "file": getattr(__main__, "__file__", None), "cwd": os.getcwd(),
                  "probe": os.environ.get("PROBE"), "umask": mask, "stdin": sys.stdin.read(),
                  "warm": "ansible.module_utils.basic" in sys.modules}))
print("to stderr", file=sys.stderr)
sys.exit(7)
"""


@pytest.fixture
def cache(monkeypatch):
    """A cache folder of the test's own (short: a socket's address holds about 100 bytes), so its own server."""
    folder = tempfile.mkdtemp(prefix="amp-", dir="/tmp")
    monkeypatch.setenv("XDG_CACHE_HOME", folder)
    monkeypatch.setenv("AEGIS_MODULE_PYTHON_IDLE_S", "5")
    yield Path(folder)
    for sock in Path(folder).glob("aegis/module-python/*.sock"):
        subprocess.run(["pkill", "-f", str(sock)], check=False)
    shutil.rmtree(folder, ignore_errors=True)


def server_socket(timeout_s: float = 20) -> Path:
    path = Path(aegis_module_python.socket_path(sys.executable))
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"no server at {path}"
        time.sleep(0.05)
    return path


def warm_launcher() -> str:
    """The launcher, its server started (the first run goes to python itself and starts it)."""
    launcher = aegis_module_python.launcher()
    run([launcher], "")
    server_socket()
    return launcher


def run(args: list[str], stdin: str = "", cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, input=stdin, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60, check=False)


def probe(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 7 and result.stderr == "to stderr\n", result
    return json.loads(result.stdout)


def test_a_program_on_stdin_sees_what_python_shows_it(cache, tmp_path):
    launcher = aegis_module_python.launcher()
    first = probe(run([launcher], PROBE, cwd=tmp_path, PROBE="one"))  # no server yet: python itself
    server_socket()
    old = os.umask(0o027)
    try:
        warm = probe(run([launcher], PROBE, cwd=tmp_path, PROBE="two"))
    finally:
        os.umask(old)
    plain = probe(run([sys.executable], PROBE, cwd=tmp_path, PROBE="two"))
    assert (first["warm"], warm["warm"], plain["warm"]) == (False, True, False)
    assert {**warm, "warm": False, "umask": old} == {**plain, "umask": old}, (warm, plain)
    assert (warm["umask"], warm["argv"], warm["path0"], warm["file"]) == (0o027, [""], "", "<stdin>")


def test_a_script_sees_what_python_shows_it(cache, tmp_path):
    launcher = warm_launcher()
    script = tmp_path / "script.py"
    script.write_text(PROBE)
    warm, plain = (probe(run([python, str(script)], "input", PROBE="x")) for python in (launcher, sys.executable))
    assert (warm.pop("warm"), plain.pop("warm")) == (True, False)
    assert warm == plain == {"argv": [str(script)], "path0": str(tmp_path), "file": str(script), "cwd": os.getcwd(),
                             "probe": "x", "umask": warm["umask"], "stdin": "input"}


def test_options_and_more_arguments_are_python_s_own(cache, tmp_path):
    launcher = warm_launcher()
    script = tmp_path / "script.py"
    script.write_text(PROBE)
    assert probe(run([launcher, "-c", PROBE]))["warm"] is False
    assert probe(run([launcher, str(script), "a", "b"]))["argv"] == [str(script), "a", "b"]


def test_a_killed_client_takes_its_run_down(cache, tmp_path):
    launcher = warm_launcher()
    pid_file = tmp_path / "pid"
    program = f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n"
    client = subprocess.Popen([launcher], stdin=subprocess.PIPE, text=True)
    client.stdin.write(program)
    client.stdin.close()
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and client.poll() is None, "the run did not start"
        time.sleep(0.05)
    run_pid = int(pid_file.read_text())
    assert run_pid != client.pid  # run by the server's child
    client.send_signal(signal.SIGKILL)
    client.wait(timeout=10)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{run_pid}").exists() and Path(f"/proc/{run_pid}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() < deadline, "the run outlived its client"
        time.sleep(0.05)


def test_an_idle_server_exits_and_takes_its_socket_and_lock_away(cache):
    run([aegis_module_python.launcher()], "")
    sock = server_socket()
    deadline = time.monotonic() + 30
    while sock.exists() or Path(f"{sock}.lock").exists():
        assert time.monotonic() < deadline, "the server is still there after 5 s idle"
        time.sleep(0.2)
    while subprocess.run(["pgrep", "-f", str(sock)], capture_output=True, check=False).returncode == 0:
        assert time.monotonic() < deadline, "the server's process is still there"
        time.sleep(0.2)


TASKS = [
    {"name": "stat", "ansible.builtin.stat": {"path": "{{ work }}/absent"}},
    {"name": "command", "ansible.builtin.command": "sh -c 'echo out; echo err >&2; exit 3'", "failed_when": False},
    {"name": "copy", "ansible.builtin.copy": {"dest": "{{ work }}/file", "content": "new\n", "mode": "0640"}},
    {"name": "copy again", "ansible.builtin.copy": {"dest": "{{ work }}/file", "content": "new\n", "mode": "0640"}},
    {"name": "collection module", "aegis.rag.qdrant_collection": {"qdrant_url": "http://127.0.0.1:9", "name": "c"},
     "ignore_errors": True},
    {"name": "uri", "ansible.builtin.uri": {"url": "http://127.0.0.1:9/"}, "ignore_errors": True},
    {"name": "bad argument", "ansible.builtin.stat": {"path": "/", "no_such_option": 1}, "ignore_errors": True},
]
VOLATILE = {"start", "end", "delta", "elapsed", "src", "_original_basename"}  # times, temporary files


def module_results(work: Path, python: str) -> list[tuple[str, dict]]:
    work.mkdir()
    (work / "file").write_text("old\n")
    play = [{"hosts": "localhost", "gather_facts": False, "vars": {"work": str(work)}, "tasks": TASKS}]
    (work / "play.yml").write_text(json.dumps(play))
    (work / "hosts.ini").write_text(f"localhost ansible_connection=local ansible_python_interpreter={python}\n")
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "hosts.ini", "--diff", "play.yml"], cwd=work,
                          env=ansible_env(work, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS)), capture_output=True,
                          text=True, timeout=300, check=False)
    results, names, _ = parse_json_callback(proc.stdout)
    assert proc.returncode == 0 and len(results) == len(TASKS), proc.stdout[-3000:] + proc.stderr[-2000:]

    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in VOLATILE}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value.replace(str(work), "<work>") if isinstance(value, str) else value

    return list(zip(names, clean(results), strict=True))


def test_modules_give_the_same_results_as_with_a_new_interpreter(cache, tmp_path):
    launcher = warm_launcher()
    warm, plain = (module_results(tmp_path / name, python) for name, python in (("warm", launcher),
                                                                                 ("plain", sys.executable)))
    assert warm == plain
    outcomes = {name: (r.get("changed"), r.get("failed", False), r.get("rc")) for name, r in warm}
    assert outcomes == {"stat": (False, False, None), "command": (True, False, 3), "copy": (True, False, None),
                        "copy again": (False, False, None), "collection module": (False, True, None),
                        "uri": (False, True, None), "bad argument": (False, True, None)}, outcomes
    messages = {name: r.get("msg", "") for name, r in warm}
    assert "Connection refused" in messages["uri"] and "no_such_option" in messages["bad argument"], messages
    assert "127.0.0.1:9" in messages["collection module"], messages


def test_the_implicit_localhost_s_modules_use_the_tests_interpreter(tmp_path):
    """tests/bytecode/sitecustomize.py gives the implicit localhost AEGIS_LOCALHOST_PYTHON (Ansible's own Python
    otherwise), in ansible-playbook processes."""
    marker = tmp_path / "ran"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    (tmp_path / "play.yml").write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"ansible.builtin.stat": {"path": "/"}}]}]))
    for given in ("", str(python)):
        proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "play.yml"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, check=False,
                              env={**ansible_env(tmp_path), "AEGIS_LOCALHOST_PYTHON": given})
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        assert marker.exists() == bool(given), given
