"""Doubles of the metrics the runbooks read: a real Prometheus backfilled with series, and loopback /metrics pages
that move between two reads."""

from __future__ import annotations

import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests import stack


def backfilled_prometheus(workdir: Path, series: dict[str, list[tuple[int, float]]]) -> stack.Process:
    """A real Prometheus whose TSDB holds `series` ({'name{labels}': [(unix seconds, value)]})."""
    lines = []
    for name, samples in sorted(series.items()):
        lines += [f"{name} {value} {ts}" for ts, value in sorted(samples)]
    (workdir / "data.om").write_text("\n".join(lines) + "\n# EOF\n")
    tsdb = workdir / "prom-tsdb"
    subprocess.run([shutil.which("promtool") or "/usr/bin/promtool", "tsdb", "create-blocks-from", "openmetrics",
                    str(workdir / "data.om"), str(tsdb)], check=True, capture_output=True, timeout=120)
    return stack.prometheus(workdir, name="prom").start()


class MetricsPages:
    """serve(*texts) -> URL of a loopback /metrics page answering the texts in turn, the last one again and again
    (the API's counters moving between the runbook's two reads); reads[url] counts the reads."""

    def __init__(self) -> None:
        self.servers: list[ThreadingHTTPServer] = []
        self.reads: dict[str, int] = {}

    def __call__(self, *texts: str) -> str:
        pages, reads = list(texts), self.reads

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                body = (pages.pop(0) if len(pages) > 1 else pages[0]).encode()
                reads[url] = reads.get(url, 0) + 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        return url
