"""Unit-test fixtures of the aegis.rag collection (run by `ansible-test units`): call a module's main()
in-process, a scriptable stdlib HTTP server, and a loopback URL where nothing listens."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args


class ModuleExit(Exception):
    def __init__(self, result: dict):
        super().__init__(result.get("msg", ""))
        self.result = result


@pytest.fixture
def call_module(monkeypatch):
    """call_module(main, args, check=False, diff=False) -> result dict (result['failed'] on fail_json)."""

    def exit_json(self, **kw):
        kw.setdefault("changed", False)
        raise ModuleExit(kw)

    def fail_json(self, msg, **kw):
        kw.update(failed=True, msg=msg)
        raise ModuleExit(kw)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)

    def call(main, args: dict, check: bool = False, diff: bool = False) -> dict:
        args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
        with patch_module_args(args), pytest.raises(ModuleExit) as exc:
            main()
        return exc.value.result

    return call


@dataclass
class Seen:
    method: str
    path: str
    headers: dict
    body: bytes


@dataclass
class FakeHttp:
    """Answers each request with `handler(Seen) -> (status, headers, body)`; records what it saw."""
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    handler: object = None


@pytest.fixture
def http_server():
    fake = FakeHttp()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            req = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            fake.seen.append(req)
            status, headers, payload = fake.handler(req)
            if isinstance(payload, (dict, list)):
                payload = json.dumps(payload).encode()
                headers = {"Content-Type": "application/json", **(headers or {})}
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port_url():
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
