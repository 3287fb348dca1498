"""The test stack: the Qdrant, Ollama and Jina doubles plus real S3 (moto), Redis and Prometheus.

    python -m tests.stack up       # start everything on free loopback ports (detached)
    python -m tests.stack status   # pid, url and health of each service
    python -m tests.stack env      # shell exports (URLs, keys) for the running stack
    python -m tests.stack down     # stop everything; nothing is left running

State lives in ``var/stack/state.json``, logs in ``var/stack/<service>.log`` and data in
``var/stack/<service>-data`` (kept between runs like a real server's; delete the folder for a fresh stack;
``AEGIS_STACK_DIR`` overrides it). Every service runs as a plain subprocess in its own process group, is waited for
with a bounded readiness poll, and is stopped by signalling its whole group (SIGCONT, SIGTERM, then
SIGKILL). The pytest fixtures (tests/fixtures.py) use the same :class:`Process` with temporary folders.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QDRANT_API_KEY = "aegis-test-qdrant-key"
JINA_API_KEY = "aegis-test-jina-key"
S3_ACCESS_KEY = S3_SECRET_KEY = "testing"
S3_REGION = "us-east-1"
READY_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ready(url: str, expect: Callable[[int], bool] = lambda s: s == 200) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return expect(resp.status)
    except urllib.error.HTTPError as exc:
        return expect(exc.code)
    except (OSError, ValueError):
        return False


def redis_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class StartError(RuntimeError):
    pass


@dataclass
class Process:
    """One service: a subprocess in its own process group on a loopback port."""

    name: str
    argv: Callable[[int], list[str]]  # port -> command line
    ready: Callable[[int], bool]  # port -> is it answering?
    url_of: Callable[[int], str]
    log_path: Path
    port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    die_with_parent: bool = False  # fixtures: the child gets SIGKILL if pytest dies; `up` leaves it detached
    pid: int | None = None
    paused: bool = False
    _popen: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.url_of(self.port)

    def start(self, timeout: float = READY_TIMEOUT_S) -> Process:
        if self.alive():
            return self
        self.port = self.port or free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **self.env}
        with self.log_path.open("ab") as log:
            argv = self.argv(self.port)
            setpriv = shutil.which("setpriv")
            if self.die_with_parent and setpriv:  # util-linux: PR_SET_PDEATHSIG, kept across exec
                argv = [setpriv, "--pdeathsig", "KILL", *argv]
            self._popen = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        self.pid, self.paused = self._popen.pid, False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._popen.poll() is not None:
                raise StartError(f"{self.name} exited with {self._popen.returncode} at start-up:\n{self.log_tail()}")
            if self.ready(self.port):
                return self
            time.sleep(0.1)
        self.stop()
        raise StartError(f"{self.name} not ready on port {self.port} within {timeout:.0f}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        if self.pid is None:
            return False
        if self._popen is not None:
            return self._popen.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not _is_zombie(self.pid)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)  # the child leads its own session, so its pid is the group id
        except ProcessLookupError:
            pass

    def stop(self, grace: float = 5.0) -> None:
        """Stop the whole process group; the port stays reserved for a later start()."""
        if self.pid is None:
            return
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGTERM)
        if not self._wait_gone(grace):
            self._signal(signal.SIGKILL)
            self._wait_gone(grace)
        self.pid, self.paused = None, False

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._popen is not None and self._popen.poll() is not None and not _group_alive(self.pid):
                return True
            if self._popen is None and not _group_alive(self.pid):
                return True
            time.sleep(0.05)
        return False

    def pause(self) -> None:
        """SIGSTOP: the port stays open, connections hang."""
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        self.paused = False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False


def _group_alive(pgid: int) -> bool:
    """Is any non-zombie process left in the group?"""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            rest = stat.read_text().split(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(rest[2]) == pgid and rest[0] != "Z":
            return True
    return False


# -- the services -----------------------------------------------------------------------------------
def python() -> str:
    """The interpreter for the doubles and moto: the project's .venv when there is one (this launcher itself
    needs only the standard library, so `python3 -m tests.stack up` works from any Python 3.11)."""
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def _python_module(module: str, *args: str) -> Callable[[int], list[str]]:
    return lambda port: [python(), "-m", module, "--host", "127.0.0.1", "--port", str(port), *args]


def qdrant_double(workdir: Path, api_key: str | None = QDRANT_API_KEY, name: str = "qdrant",
                  extra: tuple[str, ...] = (), data_dir: Path | None = None) -> Process:
    args = ["--data-dir", str(data_dir or workdir / f"{name}-data"), *extra]
    if api_key:
        args += ["--api-key", api_key]
    return Process(name, _python_module("tests.doubles.qdrant", *args),
                   ready=lambda p: http_ready(f"http://127.0.0.1:{p}/readyz"),
                   url_of=lambda p: f"http://127.0.0.1:{p}", log_path=workdir / f"{name}.log")


def ollama_double(workdir: Path, name: str = "ollama", extra: tuple[str, ...] = (),
                  data_dir: Path | None = None) -> Process:
    args = ["--data-dir", str(data_dir or workdir / f"{name}-data"), *extra]
    return Process(name, _python_module("tests.doubles.ollama", *args),
                   ready=lambda p: http_ready(f"http://127.0.0.1:{p}/"),
                   url_of=lambda p: f"http://127.0.0.1:{p}", log_path=workdir / f"{name}.log")


def jina_double(workdir: Path, api_key: str = JINA_API_KEY, name: str = "jina",
                extra: tuple[str, ...] = ()) -> Process:
    return Process(name, _python_module("tests.doubles.jina", "--api-key", api_key, *extra),
                   ready=lambda p: http_ready(f"http://127.0.0.1:{p}/"),
                   url_of=lambda p: f"http://127.0.0.1:{p}", log_path=workdir / f"{name}.log")


def moto_s3(workdir: Path, name: str = "s3") -> Process:
    return Process(name, lambda p: [python(), "-m", "moto.server", "-p", str(p), "-H", "127.0.0.1"],
                   ready=lambda p: http_ready(f"http://127.0.0.1:{p}/moto-api/data.json"),
                   url_of=lambda p: f"http://127.0.0.1:{p}", log_path=workdir / f"{name}.log",
                   env={"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY})


def redis(workdir: Path, name: str = "redis") -> Process:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    data = workdir / f"{name}-data"
    data.mkdir(parents=True, exist_ok=True)
    return Process(name, lambda p: [binary, "--port", str(p), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no", "--daemonize", "no", "--dir", str(data)],
                   ready=redis_ready, url_of=lambda p: f"redis://127.0.0.1:{p}/0",
                   log_path=workdir / f"{name}.log")


PROMETHEUS_CONFIG = """global:
  scrape_interval: 15s
  evaluation_interval: 15s
rule_files:
  - {rules}/*.yml
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


def prometheus(workdir: Path, name: str = "prometheus") -> Process:
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    rules = workdir / f"{name}-rules"
    rules.mkdir(parents=True, exist_ok=True)
    config = workdir / f"{name}.yml"

    def argv(port: int) -> list[str]:
        config.write_text(PROMETHEUS_CONFIG.format(rules=rules, port=port))
        return [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / (name + '-tsdb')}",
                f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"]
    return Process(name, argv, ready=lambda p: http_ready(f"http://127.0.0.1:{p}/-/ready"),
                   url_of=lambda p: f"http://127.0.0.1:{p}", log_path=workdir / f"{name}.log")


def stack_services(workdir: Path) -> list[Process]:
    return [qdrant_double(workdir), ollama_double(workdir), jina_double(workdir), moto_s3(workdir),
            redis(workdir), prometheus(workdir)]


# -- the launcher -----------------------------------------------------------------------------------
def stack_dir() -> Path:
    return Path(os.environ.get("AEGIS_STACK_DIR", REPO / "var" / "stack"))


def _load_state(folder: Path) -> dict:
    path = folder / "state.json"
    return json.loads(path.read_text()) if path.exists() else {"services": {}}


def _save_state(folder: Path, state: dict) -> None:
    tmp = folder / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(folder / "state.json")


def _attached(folder: Path, name: str, entry: dict) -> Process:
    """A Process object for a service started by an earlier `up`."""
    proc = {p.name: p for p in stack_services(folder)}[name]
    proc.port, proc.pid = entry["port"], entry["pid"]
    return proc


def up(folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    state = _load_state(folder)
    running = [n for n, e in state["services"].items() if _attached(folder, n, e).alive()]
    if running:
        raise StartError(f"the stack is already up ({', '.join(running)}); run `down` first")
    state = {"services": {}}
    try:
        for proc in stack_services(folder):
            proc.start()
            state["services"][proc.name] = {"pid": proc.pid, "port": proc.port, "url": proc.url,
                                            "log": str(proc.log_path)}
            _save_state(folder, state)  # saved after each start, so `down` can clean a half-started stack
    except StartError:
        down(folder)
        raise
    return state


def down(folder: Path) -> list[str]:
    state = _load_state(folder)
    stopped = []
    for name, entry in state["services"].items():
        proc = _attached(folder, name, entry)
        if proc.alive():
            proc.stop()
            stopped.append(name)
    (folder / "state.json").unlink(missing_ok=True)
    return stopped


def status(folder: Path) -> list[dict]:
    rows = []
    for name, entry in _load_state(folder)["services"].items():
        proc = _attached(folder, name, entry)
        alive = proc.alive()
        rows.append({"name": name, "pid": entry["pid"], "url": entry["url"],
                     "state": ("ready" if proc.ready(proc.port) else "not answering") if alive else "dead"})
    return rows


def env_lines(folder: Path) -> list[str]:
    services = _load_state(folder)["services"]
    names = {"qdrant": ["AEGIS_TEST_QDRANT_URL"], "ollama": ["AEGIS_TEST_OLLAMA_URL"],
             "s3": ["AEGIS_TEST_S3_ENDPOINT"], "redis": ["AEGIS_TEST_REDIS_URL"],
             "jina": ["AEGIS_TEST_JINA_URL"], "prometheus": ["AEGIS_TEST_PROMETHEUS_URL"]}
    lines = [f"export {var}={services[svc]['url']}" for svc, vars_ in names.items() if svc in services
             for var in vars_]
    if "qdrant" in services:
        lines.append(f"export AEGIS_TEST_QDRANT_API_KEY={QDRANT_API_KEY}")
    if "s3" in services:
        lines += [f"export AWS_ACCESS_KEY_ID={S3_ACCESS_KEY}", f"export AWS_SECRET_ACCESS_KEY={S3_SECRET_KEY}",
                  f"export AWS_DEFAULT_REGION={S3_REGION}"]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.stack", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["up", "down", "status", "env"])
    args = ap.parse_args(argv)
    folder = stack_dir()
    if args.command == "up":
        try:
            state = up(folder)
        except StartError as exc:
            print(f"stack failed to start: {exc}", file=sys.stderr)
            return 1
        for name, entry in state["services"].items():
            print(f"{name:<11} {entry['url']:<32} pid {entry['pid']}")
        return 0
    if args.command == "down":
        stopped = down(folder)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    if args.command == "status":
        rows = status(folder)
        if not rows:
            print("the stack is down")
            return 3
        for row in rows:
            print(f"{row['name']:<11} {row['url']:<32} pid {row['pid']:<8} {row['state']}")
        return 0 if all(r["state"] == "ready" for r in rows) else 3
    print("\n".join(env_lines(folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
