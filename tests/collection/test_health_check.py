"""aegis.rag.health_check through ansible-playbook against a real Aegis API and the Qdrant/Ollama/Jina doubles.

Modules run on /usr/bin/python3 (the system interpreter, no venv packages): they need nothing but Python.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.collection.conftest import VENV_BIN, ansible_env

SYSTEM_PYTHON = "/usr/bin/python3"
REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "collections/ansible_collections/aegis/rag/playbooks/health_check.yml"


def health_task(**options) -> dict:
    return {"name": "health", "aegis.rag.health_check": options}


def by_name(result: dict) -> dict:
    return {c["name"]: c for c in result["checks"]}


@pytest.fixture
def full_stack(aegis_api, qdrant, ollama, jina) -> dict:
    """health_check options covering every kind of check, all expected to pass."""
    return {
        "timeout": 10,
        "aegis": {"url": aegis_api.url},
        "qdrant": {"url": qdrant.url, "api_key": qdrant.api_key},
        "ollama": {"url": ollama.url, "models": ["deepseek-r1:7b", "nomic-embed-text"]},
        "jina": {"url": jina.url, "api_key": jina.api_key},
        "urls": [{"name": "qdrant_healthz", "url": qdrant.url + "/healthz"}],
    }


def test_everything_healthy(run_tasks, full_stack):
    result = run_tasks([health_task(**full_stack)], python=SYSTEM_PYTHON).result("health")
    checks = by_name(result)
    assert list(checks) == ["aegis_health", "aegis_ready", "aegis_chat", "qdrant_ready", "ollama_tags",
                            "jina_embeddings", "url:qdrant_healthz"]
    assert {c["status"] for c in checks.values()} == {"ok"}, checks
    assert result["changed"] is False and result["failed_checks"] == []
    assert result["summary"]["ok"] == 7 and result["summary"]["total"] == 7
    assert "mode extractive" in checks["aegis_chat"]["detail"]
    assert "required present: deepseek-r1:7b, nomic-embed-text" in checks["ollama_tags"]["detail"]
    assert all(c["latency_ms"] >= 0 for c in checks.values())
    assert checks["aegis_health"]["http_status"] == checks["aegis_ready"]["http_status"] == 200
    assert {d["name"] for d in checks["aegis_ready"]["dependencies"]} == {"vector_store", "embedder", "llm", "cache"}
    assert "http_status" not in checks["qdrant_ready"] and "dependencies" not in checks["aegis_chat"]


def test_check_mode_runs_the_read_only_probes(run_tasks, full_stack):
    result = run_tasks([health_task(**full_stack)], check=True, diff=True, python=SYSTEM_PYTHON).result("health")
    assert result["changed"] is False and result["summary"]["ok"] == 7
    assert "diff" not in result


def test_missing_model_fails_and_names_it(run_tasks, ollama):
    play = run_tasks([health_task(ollama={"url": ollama.url, "models": ["deepseek-r1:7b", "llama9:70b"]})],
                     expect_failure=True, python=SYSTEM_PYTHON)
    result = play.result("health")
    assert result["failed"] and result["failed_checks"] == ["ollama_tags"]
    assert result["msg"].startswith("health check failed: ollama_tags: missing models: llama9:70b")


def test_hung_ollama_is_bounded_by_its_timeout(run_tasks, aegis_api, qdrant, ollama):
    """A SIGSTOPped Ollama holds its connections; the other checks still report and the run ends on time."""
    ollama.pause()
    options = {"timeout": 10, "aegis": {"url": aegis_api.url, "checks": ["health", "ready"]},
               "qdrant": {"url": qdrant.url}, "ollama": {"url": ollama.url, "timeout": 2}}
    play = run_tasks([health_task(**options)], expect_failure=True, python=SYSTEM_PYTHON)
    result = play.result("health")
    checks = by_name(result)
    assert result["failed_checks"] == ["ollama_tags"]
    assert checks["ollama_tags"]["detail"] in ("no answer within 2.0s",
                                                f"GET {ollama.url}/api/tags failed: timed out")
    assert checks["aegis_health"]["status"] == checks["qdrant_ready"]["status"] == "ok"
    assert result["summary"]["elapsed_ms"] < (2 + 5) * 1000  # correctness bound; speed lives in bench/


def test_stopped_qdrant_fails_cleanly(run_tasks, qdrant):
    qdrant.stop()
    play = run_tasks([health_task(qdrant={"url": qdrant.url}, timeout=3)], expect_failure=True,
                     python=SYSTEM_PYTHON)
    result = play.result("health")
    assert result["failed_checks"] == ["qdrant_ready"]
    assert "Connection refused" in by_name(result)["qdrant_ready"]["detail"]
    assert "Traceback" not in play.stdout


def test_qdrant_not_ready_503_is_a_failure(run_tasks, qdrant):
    qdrant.faults.add(path="^/readyz$", error_rate=1.0, status=503, body={"status": "shards loading"})
    result = run_tasks([health_task(qdrant={"url": qdrant.url})], expect_failure=True,
                       python=SYSTEM_PYTHON).result("health")
    assert "returned HTTP 503" in by_name(result)["qdrant_ready"]["detail"]


def test_jina_is_skipped_without_key_and_only_warns_on_failure(run_tasks, jina):
    result = run_tasks([
        health_task(jina={"url": jina.url, "api_key": ""}),
        {"name": "bad key", "aegis.rag.health_check": {"jina": {"url": jina.url, "api_key": "wrong-key"}}},
    ], python=SYSTEM_PYTHON)
    skipped = by_name(result.result("health"))["jina_embeddings"]
    assert skipped["status"] == "skipped" and skipped["required"] is False
    warned = by_name(result.result("bad key"))["jina_embeddings"]
    assert warned["status"] == "warning" and "HTTP 401" in warned["detail"]
    assert result.result("bad key")["failed_checks"] == []
    assert "wrong-key" not in result.stdout  # api keys are no_log


def test_aegis_api_key_is_sent_and_never_logged(run_tasks, start_aegis):
    secret = "s3cret-aegis-key-123"
    api = start_aegis(api_keys=[secret])
    play = run_tasks([
        {"name": "without key", "aegis.rag.health_check": {"aegis": {"url": api.url}, "fail_on_failure": False}},
        {"name": "with key", "aegis.rag.health_check": {"aegis": {"url": api.url, "api_key": secret}}},
    ], python=SYSTEM_PYTHON)
    without = by_name(play.result("without key"))
    assert without["aegis_chat"]["status"] == "failed" and "HTTP 401" in without["aegis_chat"]["detail"]
    assert without["aegis_health"]["status"] == "ok"  # /health and /ready need no key
    assert {c["status"] for c in by_name(play.result("with key")).values()} == {"ok"}
    assert secret not in play.stdout


class _ChatStub(BaseHTTPRequestHandler):
    """An Aegis look-alike whose /chat reply shape is set per test (for edge cases the real app never sends)."""

    reply: object = None
    gets: dict = {}  # path -> (status, body) of a GET; others answer 200 {"status": "ok"}

    def log_message(self, *args):
        pass

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(*type(self).gets.get(self.path, (200, {"status": "ok"})))

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(200, type(self).reply)


@pytest.fixture
def chat_stub():
    handler = type("Stub", (_ChatStub,), {"gets": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("reply,status,fragment", [
    ({"sources": [], "mode": "extractive"}, "failed", "reply has no answer"),
    ({"answer": "   ", "sources": []}, "failed", "reply has no answer"),
    ({"answer": "fallback text", "sources": [], "mode": "extractive", "degraded": True}, "warning", "degraded"),
])
def test_chat_reply_shapes(run_tasks, chat_stub, reply, status, fragment):
    handler, url = chat_stub
    handler.reply = reply
    result = run_tasks([health_task(aegis={"url": url, "checks": ["chat"], "required": True},
                                    fail_on_failure=False)], python=SYSTEM_PYTHON).result("health")
    chat = by_name(result)["aegis_chat"]
    assert chat["status"] == status and fragment in chat["detail"]


def test_the_api_s_checks_return_the_http_status_and_ready_s_dependencies(run_tasks, chat_stub, closed_port_url):
    """What a runbook reads instead of re-parsing /ready: the status of each answer and the dependencies by name."""
    handler, url = chat_stub
    handler.gets["/ready"] = (503, {"status": "not ready", "checks": {
        "vector_store": {"status": "failed", "required": True, "latency_ms": 2.5, "detail": "refused " * 60},
        "llm": {"status": "ok", "required": False, "latency_ms": 1.0}, "cache": "not a mapping"}})
    tasks = [health_task(aegis={"url": api, "checks": ["health", "ready"]}, fail_on_failure=False)
             for api in (url, closed_port_url)]
    play = run_tasks(tasks, python=SYSTEM_PYTHON)
    answered, nothing = by_name(play.result(0)), by_name(play.result(1))
    assert (answered["aegis_health"]["status"], answered["aegis_health"]["http_status"]) == ("ok", 200)
    ready = answered["aegis_ready"]
    assert (ready["status"], ready["http_status"]) == ("failed", 503) and "vector_store (refused" in ready["detail"]
    assert ready["dependencies"] == [
        {"name": "llm", "status": "ok", "required": False, "latency_ms": 1.0, "detail": ""},
        {"name": "vector_store", "status": "failed", "required": True, "latency_ms": 2.5, "detail": ("refused " * 60)[:300]}]
    assert [(c["status"], c["http_status"]) for c in nothing.values()] == [("failed", None), ("failed", None)]
    assert nothing["aegis_ready"]["dependencies"] == []


@pytest.mark.parametrize("options,fragment", [
    ({}, "no checks configured"),
    ({"aegis": {"checks": ["health"]}}, "missing required arguments: url"),
    ({"qdrant": {"url": "http://127.0.0.1:1"}, "timeout": -1}, "timeout must be greater than 0"),
    ({"aegis": {"url": "http://127.0.0.1:1", "checks": ["metrics"]}}, "value of checks must be one or more of"),
    ({"urls": [{"url": "http://a"}, {"url": "http://a"}]}, "check names must be unique"),
])
def test_bad_parameters_fail_with_a_clear_message(run_tasks, options, fragment):
    result = run_tasks([health_task(**options)], expect_failure=True, python=SYSTEM_PYTHON).result("health")
    assert result["failed"] and fragment in result["msg"]


# -- the playbook

def run_playbook(*extra: str, tmp_path: Path):
    env = ansible_env(tmp_path)
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.default"
    return subprocess.run([str(Path(REPO / ".venv/bin/ansible-playbook")), "-i", str(REPO / "inventories/local"),
                           str(PLAYBOOK), *extra], check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_playbook_prints_a_table_and_passes(aegis_api, tmp_path):
    proc = run_playbook("-e", f"aegis_health_api_url={aegis_api.url}", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CHECK                STATUS       LATENCY  DETAIL" in proc.stdout
    for name in ("aegis_health", "aegis_ready", "aegis_chat"):
        assert re.search(rf"^\W*{name:<20} ok ", proc.stdout, re.M), name  # a table row, JSON or YAML output
    assert "3 of 3 checks ok" in proc.stdout


def test_playbook_fails_when_a_required_check_fails(tmp_path, closed_port_url):
    proc = run_playbook("-e", f"aegis_health_api_url={closed_port_url}", tmp_path=tmp_path)
    assert proc.returncode != 0
    assert "FAILED: aegis_health, aegis_ready, aegis_chat" in proc.stdout  # the table is printed first
    assert "required health checks failed: aegis_health, aegis_ready, aegis_chat" in proc.stdout + proc.stderr


class _NeedsToken(BaseHTTPRequestHandler):
    """200 only with the expected Authorization header, else 401: proves the header is still sent."""

    token = ""

    def log_message(self, *args):
        pass

    def do_GET(self):
        status = 200 if self.headers.get("Authorization") == f"Bearer {type(self).token}" else 401
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_url_headers_are_sent_but_masked_at_vvv(tmp_path):
    secret = "hdr-s3cret-0a1b2c3d4e"
    handler = type("Guarded", (_NeedsToken,), {"token": secret})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    playbook = [{"hosts": "localhost", "gather_facts": False, "tasks": [{"aegis.rag.health_check": {
        "urls": [{"name": "guarded", "url": url, "headers": {"Authorization": f"Bearer {secret}"}}]}}]}]
    (tmp_path / "play.yml").write_text(json.dumps(playbook))
    (tmp_path / "hosts.ini").write_text(f"localhost ansible_connection=local ansible_python_interpreter={SYSTEM_PYTHON}\n")
    env = ansible_env(tmp_path, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    try:
        proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-vvv", "-i", "hosts.ini", "play.yml"],
                              check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    finally:
        server.shutdown()
        server.server_close()
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]  # the check passed, so the header reached the server
    assert "HTTP 200" in output and "module_args" in output  # -vvv prints the invocation...
    assert secret not in output  # ...with the header value masked
