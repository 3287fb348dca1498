"""HAProxy's runtime API on a unix socket, as far as the loadbalancer role's aegis-haproxy-server uses it: `show
servers state`, `show stat`, `set server B/S state ...`; with that tool, written beside the socket."""

from __future__ import annotations

import re
import shutil
import socketserver
import sys
import tempfile
import threading
from pathlib import Path

from tests.collection.conftest import COLLECTIONS

LB_TOOL = COLLECTIONS / "ansible_collections/aegis/rag/roles/loadbalancer/files/aegis_haproxy_server.py"
HAPROXY_STATUS = {"ready": "UP", "drain": "DRAIN", "maint": "MAINT"}
HAPROXY_BITS = {"ready": 0, "drain": 0x08, "maint": 0x01}  # srv_admin_state: forced maint, forced drain


class FakeHAProxy:
    """`admin` is each server's administrative state (ready, drain or maint); the health checks of the servers in
    `down` fail (status DOWN when ready), the others pass."""

    def __init__(self, servers: dict[str, str], backend: str = "aegis_api") -> None:
        self.folder = tempfile.mkdtemp(prefix="haproxy-", dir="/tmp")  # a socket path has at most 107 bytes
        self.socket = f"{self.folder}/admin.sock"
        self.backend = backend
        self.admin = dict(servers)
        self.down: set[str] = set()
        self.tool = Path(self.folder) / "aegis-haproxy-server"
        self.tool.write_text(f'#!/bin/sh\nexec {sys.executable} {LB_TOOL} "$@"\n')
        self.tool.chmod(0o755)
        double = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(double.answer(self.rfile.readline().decode().strip()).encode())

        self.server = socketserver.ThreadingUnixStreamServer(self.socket, Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def status(self, name: str) -> str:
        admin = self.admin[name]
        return "DOWN" if admin == "ready" and name in self.down else HAPROXY_STATUS[admin]

    def answer(self, line: str) -> str:
        if line == f"show servers state {self.backend}":
            rows = ["1", "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state"]
            rows += [f"3 {self.backend} {n} {name} 127.0.0.1 2 {HAPROXY_BITS[admin]} 1 1 0 0 0 0"
                     for n, (name, admin) in enumerate(self.admin.items(), 1)]
            return "\n".join(rows) + "\n\n"
        if line == "show stat":
            rows = ["# pxname,svname,scur,status", f"{self.backend},FRONTEND,0,OPEN"]
            rows += [f"{self.backend},{name},0,{self.status(name)}" for name in self.admin]
            rows.append(f"{self.backend},BACKEND,0,UP")
            return "\n".join(rows) + "\n"
        wanted = re.fullmatch(rf"set server {self.backend}/(\S+) state (ready|drain|maint)", line)
        if wanted and wanted[1] in self.admin:
            self.admin[wanted[1]] = wanted[2]
            return "\n"
        return "Unknown command.\n"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.folder, ignore_errors=True)
