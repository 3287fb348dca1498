"""Set or wait for one HAProxy server's state through the runtime API (the admin stats socket).

Run as /usr/local/sbin/aegis-haproxy-server, a wrapper the role writes:

  aegis-haproxy-server [--socket PATH] [--check] [--keep STATE] set BACKEND SERVER ready|drain|maint
  aegis-haproxy-server [--socket PATH] [--timeout S] wait BACKEND SERVER idle|up|others-up
  aegis-haproxy-server [--socket PATH] show BACKEND SERVER
  aegis-haproxy-server [--socket PATH] save-state FILE

`set` changes the administrative state only when it differs (`set server B/S state ...`) and is not
one of the --keep states (drain a server unless it is already in maint); `wait idle` waits until the
server has no current sessions, `wait up` until its health checks report it UP, `wait others-up` until
taking the server out leaves another one UP (at once when the server itself is not UP, or when the backend has
no other server: then nothing is gained by waiting); `show` only reads.
These print one JSON object: the server's state before and after, and whether it changed.
`save-state` writes `show servers state` to FILE, which `load-server-state-from-file` reads on the
next start or reload, so a drained server stays drained across reloads. Exit status: 0 done,
1 timeout or HAProxy error, 2 unknown backend or server.
"""

import argparse
import csv
import json
import os
import socket
import sys
import tempfile
import time

# srv_admin_state bits of `show servers state` forced from the runtime API (HAProxy's SRV_ADMF_*).
FORCED_MAINT = 0x01
FORCED_DRAIN = 0x08
# `show stat` statuses of a server that takes new requests (DRAIN and MAINT do not; "UP 1/3" is going down).
UP = ("UP", "no check")


class HAProxyError(Exception):
    """HAProxy refused a command or cannot be reached."""


class UnknownServer(Exception):
    """The backend or server is not in HAProxy's running configuration."""


def command(path, line):
    """Sends one runtime API command and returns HAProxy's whole answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(path)
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return b"".join(chunks).decode()
                chunks.append(chunk)
    except OSError as exc:
        raise HAProxyError("cannot talk to HAProxy on %s: %s" % (path, exc)) from exc


def admin_state(path, backend, server):
    """'maint', 'drain' or 'ready': the state forced through the runtime API."""
    answer = command(path, "show servers state %s" % backend)
    if not answer.startswith("1\n"):
        raise UnknownServer("HAProxy has no backend %r: %s" % (backend, answer.strip()))
    for line in answer.splitlines()[1:]:
        fields = line.split()
        if line.startswith("#") or len(fields) < 7:
            continue
        if fields[3] == server:
            bits = int(fields[6])
            return "maint" if bits & FORCED_MAINT else "drain" if bits & FORCED_DRAIN else "ready"
    raise UnknownServer("HAProxy's backend %r has no server %r" % (backend, server))


def backend_stats(path, backend):
    """{server: its `show stat` row: status (UP, DOWN, DRAIN, MAINT, ...) and current sessions}."""
    rows = csv.DictReader(command(path, "show stat").lstrip("# ").splitlines())
    return {row["svname"]: {"status": row["status"], "sessions": int(row["scur"] or 0)}
            for row in rows if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND")}


def state(path, backend, server, condition=None):
    found = backend_stats(path, backend)  # one `show stat` for the server and, for others-up, the rest
    if server not in found:
        raise UnknownServer("HAProxy's backend %r has no server %r" % (backend, server))
    current = dict(found[server], admin=admin_state(path, backend, server))
    if condition == "others-up":  # and the status of the backend's other servers
        current["others"] = {name: row["status"] for name, row in found.items() if name != server}
    return current


def set_state(path, backend, server, wanted, check, keep=()):
    before = state(path, backend, server)
    changed = before["admin"] not in (wanted, *keep)
    if changed and not check:
        answer = command(path, "set server %s/%s state %s" % (backend, server, wanted)).strip()
        if answer:
            raise HAProxyError("HAProxy refused 'state %s' for %s/%s: %s" % (wanted, backend, server, answer))
    after = before if check else state(path, backend, server)
    return {"changed": changed, "before": before, "after": after}


def is_done(condition, current):
    if condition == "idle":
        return current["sessions"] == 0
    if condition == "others-up":
        others = current["others"].values()
        return any(status in UP for status in others) or current["status"] not in UP or not others
    return current["status"] in UP


def wait(path, backend, server, condition, timeout):
    before = current = state(path, backend, server, condition)
    deadline = time.monotonic() + timeout
    while not is_done(condition, current):
        if time.monotonic() > deadline:
            what = "has no other server UP" if condition == "others-up" else "is not " + condition
            raise HAProxyError("%s/%s %s after %s s: %s" % (backend, server, what, timeout, current))
        time.sleep(0.5)
        current = state(path, backend, server, condition)
    return {"changed": False, "before": before, "after": current}


def save_state(path, target):
    """Writes `show servers state` atomically, beside the file it replaces."""
    answer = command(path, "show servers state")
    if not answer.startswith("1\n"):
        raise HAProxyError("unexpected answer to 'show servers state': %s" % answer.strip())
    folder = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".server-state.")
    with os.fdopen(fd, "w") as out:
        out.write(answer)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    return {"changed": True, "path": target}


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--socket", default="/run/haproxy/admin.sock", help="HAProxy's admin stats socket")
    parser.add_argument("--check", action="store_true", help="report what 'set' would change, change nothing")
    parser.add_argument("--keep", action="append", default=[], choices=["ready", "drain", "maint"],
                        help="'set' leaves a server in this state as it is (repeatable)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds 'wait' waits")
    actions = parser.add_subparsers(dest="action", required=True)
    save = actions.add_parser("save-state")
    save.add_argument("file")
    show = actions.add_parser("show")
    show.add_argument("backend")
    show.add_argument("server")
    for name, choices in (("set", ["ready", "drain", "maint"]), ("wait", ["idle", "up", "others-up"])):
        action = actions.add_parser(name)
        action.add_argument("backend")
        action.add_argument("server")
        action.add_argument("target", choices=choices)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    try:
        if args.action == "save-state":
            result = save_state(args.socket, args.file)
        elif args.action == "show":
            current = state(args.socket, args.backend, args.server)
            result = {"changed": False, "before": current, "after": current}
        elif args.action == "set":
            result = set_state(args.socket, args.backend, args.server, args.target, args.check, args.keep)
        else:
            result = wait(args.socket, args.backend, args.server, args.target, args.timeout)
    except UnknownServer as exc:
        print(exc, file=sys.stderr)
        return 2
    except HAProxyError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
