"""Shared by the Molecule scenario runs (test_scenarios.py, and tests/fleet for the fleet): podman usable and the test
hosts' base image in place, and `molecule test -s <scenario>` run from the repository root. Skips only where
podman cannot run at all, and never in CI (CI set): there a missing podman is a failure.

Clean runs: before a scenario starts, what earlier runs left is swept (its own hosts, hosts of scenarios that no
longer exist, molecule and ansible-playbook processes of it or orphaned); molecule runs in a session of its own,
and a run that times out (or is interrupted) is killed with everything it started, then its hosts destroyed."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
VENV_BIN = Path(sys.executable).parent
SCENARIOS = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
# The molecule podman driver labels its containers owner=molecule; the test-host image labels them with its recipe.
HOST_LABELS = ("owner=molecule", "org.aegis.testhost.recipe")
TOOLS = {"molecule", "ansible-playbook"}
LOCK_DIR = Path("/run/lock")  # machine-wide, as the Makefile's fleet targets use it
LOCK_WAIT_S = 1800


def podman_problem() -> str | None:
    """Why podman cannot run containers here, or None."""
    podman = shutil.which("podman")
    if podman is None:
        return "podman is not installed (scripts/testhosts.sh installs it)"
    info = subprocess.run([podman, "info"], capture_output=True, text=True, check=False, timeout=120)
    if info.returncode != 0:
        return f"`podman info` failed: {info.stderr.strip()[-500:]}"
    return None


def ensure_test_hosts() -> None:
    """podman usable and the base image in place (scripts/testhosts.sh is idempotent and quick once done); skips
    where podman cannot run, and fails instead in CI."""
    problem = podman_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the real-host tests, but {problem}")
        pytest.skip(problem)
    setup = subprocess.run([str(ROOT / "scripts" / "testhosts.sh")], capture_output=True, text=True,
                           check=False, timeout=1200)
    assert setup.returncode == 0, f"scripts/testhosts.sh failed:\n{setup.stdout}{setup.stderr}"


@pytest.fixture(scope="module")
def test_hosts():
    ensure_test_hosts()


def scenario_hosts(scenario: str) -> set[str]:
    """The container names of a scenario (its molecule.yml's platforms; every scenario lists its own)."""
    config = yaml.safe_load((ROOT / "molecule" / scenario / "molecule.yml").read_text()) or {}
    return {p["name"] for p in config.get("platforms") or []}


def host_containers() -> list[str]:
    """Names of the containers (running or not) that Molecule made from the test-host image."""
    filters = [f"--filter=label={label}" for label in HOST_LABELS]
    listed = subprocess.run(["podman", "ps", "-a", *filters, "--format", "{{.Names}}"], capture_output=True,
                            text=True, check=True, timeout=60)
    return listed.stdout.split()


def _processes() -> dict[int, tuple[int, list[str], str]]:
    """pid: (ppid, argv, cwd) of every process we can read."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cwd = os.readlink(entry / "cwd")
        except (OSError, ValueError, IndexError):
            continue
        found[int(entry.name)] = (ppid, argv, cwd)
    return found


def _tool(argv: list[str]) -> str | None:
    """molecule or ansible-playbook when argv runs one (directly or through python), else None."""
    for arg in argv[:2]:
        if (name := Path(arg).name) in TOOLS:
            return name
    return None


def _of_scenario(argv: list[str], scenario: str) -> bool:
    """argv is molecule's `-s scenario` or an ansible-playbook of the scenario's playbooks or inventory."""
    pairs = zip(argv, argv[1:])
    return (any(a in ("-s", "--scenario-name") and b == scenario for a, b in pairs)
            or any(f"/molecule/{scenario}/" in a or a.endswith(f".{scenario}/inventory") for a in argv))


def leftover_processes(scenario: str) -> list[tuple[int, list[str]]]:
    """molecule and ansible-playbook processes run from this repository that belong to `scenario` or are
    orphaned (their parent gone: reparented to pid 1), with every process they started."""
    procs = _processes()
    root = str(ROOT)
    roots = {pid for pid, (ppid, argv, cwd) in procs.items()
             if pid != os.getpid() and _tool(argv) and (cwd == root or cwd.startswith(root + os.sep))
             and (ppid == 1 or _of_scenario(argv, scenario))}
    return [(pid, procs[pid][1]) for pid in sorted(_with_descendants(roots, procs))]


def _with_descendants(pids: set[int], procs: dict[int, tuple[int, list[str], str]]) -> set[int]:
    """pids and all their descendants. Ansible's workers run in sessions of their own, so a process group does
    not hold everything a run started."""
    found, todo = set(pids), list(pids)
    while todo:
        parent = todo.pop()
        for pid, (ppid, _argv, _cwd) in procs.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                todo.append(pid)
    return found


def _signal(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def kill_tree(pids: set[int], grace_s: float = 10.0) -> None:
    """SIGTERM to the processes and their descendants, SIGKILL to whatever is left after grace_s."""
    targets = _with_descendants(pids, _processes())
    _signal(targets, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        # Children started since (a worker forking a `podman exec`) are caught on the way.
        targets |= _with_descendants(targets, _processes())
        if not any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in targets):
            return
        time.sleep(0.2)
    _signal(_with_descendants(targets, _processes()), signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def fleet_state_dir() -> Path:
    """Molecule's folder of the fleet's state (inventory, ansible.cfg, instance config), one per checkout, where the
    Makefile's `make fleet` puts it too: tests/fleet reuses a fleet it finds there. AEGIS_FLEET_STATE names another
    (e.g. to run the fleet tests of a clean worktree against the fleet of the main checkout)."""
    if os.environ.get("AEGIS_FLEET_STATE"):
        return Path(os.environ["AEGIS_FLEET_STATE"])
    digest = hashlib.sha1(str(ROOT).encode()).hexdigest()[:8]  # noqa: S324 - a name, not a secret
    return Path.home() / ".cache" / "aegis" / f"fleet-{digest}"


def molecule_env(scenario: str) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    if scenario == "default":
        env["MOLECULE_EPHEMERAL_DIRECTORY"] = str(fleet_state_dir())
    return env


def sweep(scenario: str) -> list[str]:
    """Remove what earlier runs left before `scenario` starts: its molecule/ansible-playbook processes and orphaned
    ones, its hosts, and hosts of scenarios that no longer exist (other scenarios' hosts stay: `make test` runs two
    scenarios at once, `make fleet` leaves the fleet up). Returns what it removed."""
    removed = []
    if leftovers := leftover_processes(scenario):
        kill_tree({pid for pid, _argv in leftovers})
        removed += [f"process {pid}: {' '.join(argv)[:200]}" for pid, argv in leftovers]
    known = set().union(*(scenario_hosts(s) for s in SCENARIOS if s != scenario))
    stale = [name for name in host_containers() if name in scenario_hosts(scenario) or name not in known]
    if stale:
        subprocess.run(["podman", "rm", "--force", "--time=0", *stale], capture_output=True, text=True,
                       check=False, timeout=300)
        removed += [f"container {name}" for name in stale]
    return removed


def lock_path(scenario: str) -> Path:
    return LOCK_DIR / f"aegis-molecule-{scenario}.lock"


@contextmanager
def scenario_lock(scenario: str, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """One run of a scenario at a time on this machine, from whichever checkout: its hosts have fixed names, and
    without it a second run's sweep would remove the first's hosts mid-run. `make fleet` and `make fleet-down`
    take the same lock (flock(1)); the kernel releases it when its holder dies."""
    path = lock_path(scenario)
    with path.open("a") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another run of the {scenario} scenario has held {path} for over "
                                       f"{wait_s:g} s (`fuser {path}` names it)") from None
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_molecule(scenario: str, timeout_s: float, command: str = "test",
                 cut_at: re.Pattern[str] | None = None) -> tuple[int | None, str]:
    """`molecule <command> -s scenario` from the repository root, under the scenario's lock and after a sweep();
    (exit code, output), the code None when it was cut: at its timeout, or once its output matches `cut_at`.
    Molecule runs in a session of its own: when cut, or when the test itself is interrupted (pytest-timeout, ^C),
    it is killed with every process it started (SIGTERM, then SIGKILL) and `molecule destroy -s scenario` removes
    its hosts."""
    with scenario_lock(scenario):
        return _run_locked(scenario, timeout_s, command, cut_at)


def _run_locked(scenario: str, timeout_s: float, command: str,
                cut_at: re.Pattern[str] | None = None) -> tuple[int | None, str]:
    swept = sweep(scenario)
    env = molecule_env(scenario)
    with tempfile.TemporaryFile("w+") as out:  # a file, not a pipe: nothing that outlives the kill can hold it
        if swept:
            out.write("swept before the run:\n" + "\n".join(swept) + "\n")
            out.flush()
        proc = subprocess.Popen([str(VENV_BIN / "molecule"), command, "-s", scenario], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        finished, deadline = False, time.monotonic() + timeout_s
        try:
            # a look every second until it ends, its deadline passes or its output matches cut_at
            while not finished and time.monotonic() < deadline and not (cut_at and cut_at.search(_written(out))):
                try:
                    proc.wait(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
                    finished = True
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if not finished:
                _stop(proc, scenario, env, out)
        out.seek(0)
        output = out.read()
    if not finished:
        return None, output
    return proc.returncode, output


def _written(out) -> str:
    """What the run wrote so far (pread: the run shares the file's offset)."""
    return os.pread(out.fileno(), os.fstat(out.fileno()).st_size, 0).decode(errors="replace")


def _stop(proc: subprocess.Popen, scenario: str, env: dict[str, str], out) -> None:
    """Kill the run's process group and every descendant (Ansible's workers have sessions of their own), then
    destroy the scenario's hosts."""
    pids = {proc.pid} | {pid for pid, (_ppid, _argv, _cwd) in _processes().items()
                         if _pgid(pid) == proc.pid}
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    kill_tree(pids)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    out.write(f"\n--- cut: killed; molecule destroy -s {scenario}:\n")
    out.flush()
    subprocess.run([str(VENV_BIN / "molecule"), "destroy", "-s", scenario], cwd=ROOT, env=env,
                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, check=False, timeout=600)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def molecule_test(scenario: str, timeout_s: int) -> None:
    """`molecule test -s scenario` passes; on failure the assertion shows the end of its output. On timeout the run
    is killed and its hosts destroyed (run_molecule), and the test fails with the end of the output."""
    returncode, output = run_molecule(scenario, timeout_s)
    if returncode is None:
        pytest.fail(f"molecule test -s {scenario} timed out after {timeout_s} s (killed, hosts destroyed):\n"
                    f"{output[-12000:]}")
    assert returncode == 0, f"molecule test -s {scenario} failed:\n{output[-12000:]}"

