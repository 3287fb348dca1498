"""`aegis-rag ingest` against an API that is down or dies mid-run: one-line errors, a summary, exit 1."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aegis_rag import cli
from aegis_rag.errors import DependencyError


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in ("a.md", "b.md", "c.md"):
        (folder / name).write_text(f"# {name}\n\nSome text.\n")
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FlakyApi(ThreadingHTTPServer):
    """Answers POST /documents with `replies` in turn; None = close the connection and stop listening."""

    daemon_threads = True

    def __init__(self, replies: list[tuple[int, dict] | None]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.replies = list(replies)
        self.received: list[str] = []

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FlakyApi

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(body.split(b'filename="', 1)[1].split(b'"', 1)[0].decode())
        reply = self.server.replies.pop(0)
        if reply is None:  # the API dies: no answer, and nobody listens any more
            self.close_connection = True
            threading.Thread(target=self.server.stop).start()
            return
        status, payload = reply
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_api():
    servers = []

    def start(replies):
        server = FlakyApi(replies)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


def created(name):
    return 200, {"id": name, "document": name, "status": "created", "chunks": 1}


def test_unreachable_api_is_one_line_and_exit_1(docs):
    url = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.run([sys.executable, "-m", "aegis_rag.cli", "ingest", "--quiet", "--url", url, str(docs)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("aegis-rag:")]
    assert len(errors) == 1
    assert f"the API at {url} is unreachable or closed the connection" in errors[0]
    assert "stopped after 1 of 3 file(s)" in errors[0]
    assert proc.stdout.strip() == "created=0 updated=0 unchanged=0 failed=1 skipped=2"


def test_api_dying_mid_run_reports_what_was_indexed(docs, flaky_api, capsys):
    api = flaky_api([created("a.md"), None, created("c.md")])
    code = cli.main(["ingest", "--quiet", "--url", api.url, str(docs)])
    out, err = capsys.readouterr()
    assert code == 1
    assert [name.rsplit("/", 1)[-1] for name in api.received] == ["a.md", "b.md"]
    assert out.strip() == "created=1 updated=0 unchanged=0 failed=1 skipped=1"
    assert "Traceback" not in err
    assert "b.md: the API at " in err and "closed the connection" in err
    assert "stopped after 2 of 3 file(s)" in err


def test_a_refused_file_does_not_stop_the_run(docs, flaky_api, capsys):
    api = flaky_api([created("a.md"), (413, {"error": "bad document", "detail": "b.md: too big"}), created("c.md")])
    code = cli.main(["ingest", "--quiet", "--url", api.url, str(docs)])
    out, err = capsys.readouterr()
    assert code == 1
    assert out.strip() == "created=2 updated=0 unchanged=0 failed=1 skipped=0"
    assert "b.md: the API answered HTTP 413: b.md: too big" in err
    assert "stopped" not in err


@pytest.mark.parametrize("status", [401, 503])
def test_answers_every_file_would_get_stop_the_run(docs, flaky_api, capsys, status):
    api = flaky_api([(status, {"error": "no", "detail": "try later"})] * 3)
    assert cli.main(["ingest", "--quiet", "--url", api.url, str(docs)]) == 1
    out, err = capsys.readouterr()
    assert out.strip() == "created=0 updated=0 unchanged=0 failed=1 skipped=2"
    assert f"the API answered HTTP {status}: try later; stopped after 1 of 3 file(s)" in err
    assert len(api.received) == 1


def test_an_unusable_store_in_direct_mode_is_one_line(docs, monkeypatch, capsys):
    class DownService:
        def __init__(self, settings):
            raise DependencyError("vector_store", "Qdrant unreachable at http://127.0.0.1:1")

    monkeypatch.setattr("aegis_rag.service.RagService", DownService)
    assert cli.main(["ingest", "--quiet", "--direct", str(docs)]) == 1
    out, err = capsys.readouterr()
    assert err.strip() == ("aegis-rag: cannot open the vector store: DependencyError: "
                           "vector_store: Qdrant unreachable at http://127.0.0.1:1")
    assert out == ""


def test_invalid_settings_are_one_line_naming_the_variable_and_the_value(monkeypatch, capsys):
    monkeypatch.setenv("AEGIS_TOP_K", "notanumber")
    monkeypatch.setenv("AEGIS_QDRANT_API_KEY", "s3cret")
    monkeypatch.setenv("AEGIS_LLM", "gpt")
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("aegis-rag: invalid settings: "), err
    assert "top_k (AEGIS_TOP_K): Input should be a valid integer" in err and "(given 'notanumber')" in err
    assert "llm (AEGIS_LLM): Input should be 'ollama', 'llamacpp' or 'extractive' (given 'gpt')" in err
    assert "s3cret" not in err


def test_a_secret_setting_is_never_echoed():
    from pydantic import BaseModel, ValidationError

    class Secrets(BaseModel):
        redis_password: int
        api_keys: int
        port: int

    with pytest.raises(ValidationError) as caught:
        Secrets(redis_password="hunter2", api_keys="k1,k2", port="eighty")
    line = cli.settings_problem(caught.value)
    assert "redis_password (AEGIS_REDIS_PASSWORD): Input should be a valid integer" in line
    assert "hunter2" not in line and "k1,k2" not in line and "(given 'eighty')" in line
