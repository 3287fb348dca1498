"""A warm interpreter for the Ansible modules the tests run on loopback.

Half of a loopback module run's CPU is its Python importing ansible.module_utils (about 0.11 s of 0.2 s: dataclasses
built, idna loaded). The tests' `ansible_python_interpreter` is a launcher script (`launcher()`) that runs
`client()`: it hands its stdin, stdout, stderr, environment, working directory and umask over a unix socket to a
server of the same Python and environment, which imported ansible.module_utils once and forks a child per run; the
child runs the program as `python` would (from stdin when pipelining, else the AnsiballZ file given) and the client
exits with its exit status. The payload and its zip are the same: only ansible-core's module_utils are the server's
copies of the same installed files.

Anything else goes to the real interpreter, by exec with its arguments and stdin untouched: options or more than one
argument (`-c`, async_wrapper), no server to reach (one is started for the next runs), a user other than the
server's (become). A client killed mid-run kills its run's process group. A server exits after IDLE_S seconds
(AEGIS_MODULE_PYTHON_IDLE_S) without a run; its socket and lock are keyed by the Python, the user, this file and
the environment that decides imports (KEY_ENV)."""

from __future__ import annotations

import os
import socket
import struct
import sys

IDLE_S = 30
KEY_ENV = ("PYTHONPATH", "PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED", "PYTHONSAFEPATH",
           "PYTHONWARNINGS", "PYTHONIOENCODING", "PYTHONUTF8", "LANG", "LC_ALL", "LC_CTYPE")
# What every module run imports (ansible.module_utils.basic and AnsiballZ's loader) and what many do (urls: uri).
PRELOAD = ("ansible.module_utils.basic", "ansible.module_utils._internal._ansiballz._loader",
           "ansible.module_utils.urls", "runpy", "zipfile", "base64", "shutil", "tempfile", "datetime")
STATUS = struct.Struct("!i")


def state_dir() -> str:
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "aegis", "module-python")


def socket_path(python: str) -> str:
    """The server's socket for this Python, user, file and importing environment."""
    import zlib

    here = os.stat(__file__)
    key = "\0".join([python, str(os.getuid()), str(here.st_mtime_ns), str(here.st_size),
                     *(f"{name}={os.environ.get(name, '')}" for name in KEY_ENV)])
    return os.path.join(state_dir(), f"{zlib.crc32(key.encode()):08x}-{len(key)}.sock")


def launcher(python: str | None = None) -> str:
    """The path of an executable that runs client() with `python` (default: this one), written once."""
    python = python or sys.executable
    import hashlib

    name = hashlib.sha256(f"{python}\0{__file__}".encode()).hexdigest()[:16]
    path = os.path.join(state_dir(), f"python-{name}")
    text = (f"#!{python} -S\nimport sys\nsys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
            "import aegis_module_python\naegis_module_python.client()\n")
    try:
        with open(path) as current:
            if current.read() == text:
                return path
    except OSError:
        pass
    os.makedirs(state_dir(), exist_ok=True)
    temporary = f"{path}.{os.getpid()}"
    with open(temporary, "w") as new:
        new.write(text)
    os.chmod(temporary, 0o755)
    os.replace(temporary, path)
    return path


# The client: the launcher's whole process.

def client() -> None:
    python, args = sys.executable, sys.argv[1:]
    if len(args) <= 1 and not (args and args[0].startswith("-")):
        status = run_on_server(python, args)
        if status is not None:
            os._exit(status)
    os.execv(python, [python, *args])


def run_on_server(python: str, args: list[str]) -> int | None:
    """The exit status of the run on the server; None if it did not take it (stdin still unread)."""
    path = socket_path(python)
    if len(path.encode()) > 100:  # beyond what a unix socket's address holds
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        start_server(python, path)
        return None
    with conn:
        try:
            if conn.recv(1) != b"Y":  # another user's server, or one on its way out
                return None
        except OSError:
            return None
        request = repr({"args": args, "env": dict(os.environ), "cwd": os.getcwd(), "umask": os.umask(0o22)}).encode()
        conn.sendmsg([STATUS.pack(len(request))], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("3i", 0, 1, 2))])
        conn.sendall(request)
        reply = recv_exactly(conn, STATUS.size)
        if reply is None:
            os.write(2, b"aegis_module_python: the module's process ended without an exit status\n")
            return 255
        return STATUS.unpack(reply)[0]


def recv_exactly(conn: socket.socket, size: int) -> bytes | None:
    """size bytes from conn; None if it closes first."""
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def start_server(python: str, path: str) -> None:
    import subprocess

    subprocess.Popen([python, os.path.abspath(__file__), path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


# The server.

def serve(path: str) -> None:
    import fcntl

    os.makedirs(os.path.dirname(path), exist_ok=True)
    lock = open(f"{path}.lock", "w")  # noqa: SIM115 - held for the server's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another server has this key
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener.bind(path)
    listener.listen(64)
    listener.settimeout(float(os.environ.get("AEGIS_MODULE_PYTHON_IDLE_S", IDLE_S)))
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                return
            reap()
            with conn:
                _, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
                if (uid, gid) != (os.getuid(), os.getgid()):
                    conn.sendall(b"N")
                    continue
                if os.fork() == 0:
                    listener.close()
                    lock.close()
                    run_child(conn)
    finally:
        os.unlink(path)
        os.unlink(lock.name)  # still held: a server starting now makes a new lock file


def reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def run_child(conn: socket.socket) -> None:
    """In the forked child: become the client's `python [script]` and run it; never returns."""
    import ast
    import atexit
    import threading

    status = 1
    finished = threading.Event()
    try:
        conn.settimeout(None)
        conn.sendall(b"Y")
        head, fds, _, _ = socket.recv_fds(conn, STATUS.size, 3)
        data = recv_exactly(conn, STATUS.unpack(head)[0])
        if data is None:
            os._exit(1)
        request = ast.literal_eval(data.decode())
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.setpgid(0, 0)

        def watch() -> None:  # the client gone before the run ended: it was killed, so is the run
            try:
                conn.recv(1)
            except OSError:
                pass
            if not finished.is_set():
                os.killpg(0, 9)

        threading.Thread(target=watch, daemon=True).start()
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        status = run_main(request["args"])
        threading._shutdown()  # as python's exit does: wait for the run's own threads, then the atexit functions
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 - reported as python would, on the module's stderr
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        finished.set()
        try:
            conn.sendall(STATUS.pack(status))
        finally:
            os._exit(status)


def run_main(args: list[str]) -> int:
    """`python` reading its program from stdin, or `python <script>`: the exit status."""
    import types

    if args:
        script = args[0]
        with open(script, "rb") as source:
            program = source.read()
        sys.path[0] = os.path.dirname(os.path.realpath(script))
    else:
        script, program = "<stdin>", sys.stdin.buffer.read()
        sys.path[0] = ""
    code = compile(program, script, "exec")
    sys.argv = list(args) or [""]
    main = types.ModuleType("__main__")
    main.__file__, main.__builtins__ = script, __builtins__
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)  # noqa: S102 - the module's payload, as python runs it
    except SystemExit as exc:
        return exit_status(exc.code)
    except BaseException:  # noqa: BLE001 - python prints it and exits 1
        import traceback

        traceback.print_exc()
        return 1
    return 0


def exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    serve(sys.argv[1])
