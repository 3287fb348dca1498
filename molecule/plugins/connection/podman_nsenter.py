"""Tasks in a local rootful podman container through nsenter(1), for the test hosts: every module in one
fork of nsenter into the container's namespaces (about 0.01 s) instead of a `podman exec` (0.2 s) plus the
`podman mount` containers.podman's connection runs for every task (0.2 s). Files go through `cat` inside the
container the same way. The container's pid and environment come from `podman inspect` once and are cached in
/run/aegis-podman-nsenter/ while that process lives.

Processes enter all of the container's namespaces as root with the container's environment, like `podman
exec`, but with root's full privileges on the machine (as on a real host, not the container's reduced
capabilities): for the test hosts on a developer's machine only.
Used by every scenario through .config/molecule/config.yml (ansible_connection: podman_nsenter).
"""

import json
import os
import subprocess
from pathlib import Path

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.plugins.connection import ConnectionBase

DOCUMENTATION = """
name: podman_nsenter
short_description: Run tasks in a local rootful podman container through nsenter
description:
  - Enters the namespaces of the container's first process with nsenter(1) for every command; supports
    pipelining.
options:
  remote_addr:
    description: The container's name or id.
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_podman_host
  podman_executable:
    description: The podman command that finds the container's process.
    default: podman
    vars:
      - name: ansible_podman_executable
    env:
      - name: ANSIBLE_PODMAN_EXECUTABLE
"""

CACHE = Path("/run/aegis-podman-nsenter")


def _start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/<pid>/stat): with the pid, it names one process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def find_target(container: str, podman: str = "podman") -> dict:
    """{"pid", "start", "env"} of the container's first process, from the cache while it still runs; LookupError
    when the container does not run. Also used by the tests' testinfra backend (tests/testinfra_nsenter.py)."""
    cached = CACHE / f"{container}.json"
    try:
        target = json.loads(cached.read_text())
        if _start_time(target["pid"]) == target["start"]:
            return target
    except (OSError, ValueError, KeyError, TypeError):
        pass
    inspect = subprocess.run(
        [podman, "inspect", "--type=container", "--format={{json .State.Pid}} {{json .Config.Env}}", container],
        capture_output=True, text=True, check=False)
    if inspect.returncode != 0:
        raise LookupError(f"podman inspect {container} failed: {inspect.stderr.strip()}")
    pid_text, env_text = inspect.stdout.split(" ", 1)
    pid = json.loads(pid_text)
    if not pid:
        raise LookupError(f"container {container} is not running")
    target = {"pid": pid, "start": _start_time(pid), "env": json.loads(env_text)}
    CACHE.mkdir(mode=0o700, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}")
    partial.write_text(json.dumps(target))
    partial.replace(cached)
    return target


def nsenter_command(target: dict, argv: list[str]) -> list[str]:
    """argv run as root in all of the target's namespaces, in its working directory (`--wd=/` would open the
    controller's /), with the container's environment only."""
    return ["nsenter", f"--target={target['pid']}", "--all", "--wd", "--", "/usr/bin/env", "-i", *target["env"],
            *argv]


class Connection(ConnectionBase):
    transport = "podman_nsenter"
    has_pipelining = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._target: dict | None = None

    def _connect(self):
        if not self._connected:
            self._target = self._find(self.get_option("remote_addr"))
            self._connected = True
        return self

    def _find(self, container: str) -> dict:
        try:
            return find_target(container, self.get_option("podman_executable"))
        except LookupError as error:
            raise AnsibleConnectionFailure(str(error)) from None

    def _run(self, argv: list[str], stdin=None, in_data: bytes | None = None) -> tuple[int, bytes, bytes]:
        command = nsenter_command(self._target, argv)
        self._display.vvv(f"NSENTER {command}", host=self.get_option("remote_addr"))
        proc = subprocess.Popen(command, stdin=stdin if stdin is not None else subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, stderr = proc.communicate(in_data)
        return proc.returncode, stdout, stderr

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        return self._run(["/bin/sh", "-c", cmd], in_data=in_data or b"")

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        with open(in_path, "rb") as source:
            code, _out, err = self._run(["/bin/sh", "-c", 'cat > "$1"', "sh", out_path], stdin=source)
        if code != 0:
            raise AnsibleError(f"failed to put {in_path} to {out_path}: {err.decode(errors='replace')}")

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        code, out, err = self._run(["cat", in_path], in_data=b"")
        if code != 0:
            raise AnsibleError(f"failed to fetch {in_path}: {err.decode(errors='replace')}")
        Path(out_path).write_bytes(out)

    def close(self):
        self._connected = False
