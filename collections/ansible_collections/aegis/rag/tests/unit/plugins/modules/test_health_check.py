"""health_check: building checks from parameters, the concurrent runner, and each probe's verdicts."""

from __future__ import annotations

import threading
import time

import pytest
from ansible_collections.aegis.rag.plugins.module_utils.http_client import HttpClient
from ansible_collections.aegis.rag.plugins.modules import health_check as hc


def params(**sections):
    base = {"timeout": 10.0, "validate_certs": True, "fail_on_failure": True, "aegis": None, "qdrant": None,
            "ollama": None, "jina": None, "urls": []}
    base.update(sections)
    return base


AEGIS = {"url": "http://api:8910", "api_key": None, "checks": ["health", "ready", "chat"], "question": "test query",
         "timeout": None, "required": True}


def test_build_checks_names_urls_and_timeouts():
    checks = hc.build_checks(params(
        aegis=dict(AEGIS, checks=["health", "chat"]),
        qdrant={"url": "http://q:6333", "api_key": "k", "timeout": 2.0, "required": True},
        ollama={"url": "http://o:11434", "models": ["m"], "timeout": None, "required": False},
        jina={"url": "https://api.jina.ai", "api_key": None, "model": "jina-embeddings-v3", "timeout": None},
        urls=[{"name": "prom", "url": "http://p:9090/-/ready", "method": "GET", "status": [200], "headers": None,
               "timeout": 1.0, "required": True}]))
    got = [(c.name, c.url, c.timeout, c.required) for c in checks]
    assert got == [("aegis_health", "http://api:8910/health", 10.0, True),
                   ("aegis_chat", "http://api:8910/chat", 10.0, True),
                   ("qdrant_ready", "http://q:6333/readyz", 2.0, True),
                   ("ollama_tags", "http://o:11434/api/tags", 10.0, False),
                   ("jina_embeddings", "https://api.jina.ai/v1/embeddings", 0, False),
                   ("url:prom", "http://p:9090/-/ready", 1.0, True)]
    assert checks[4].outcome[0] == hc.SKIPPED  # no Jina key: decided without a probe


def test_duplicate_names_and_bad_timeouts_are_rejected():
    url = {"name": "x", "url": "http://a", "method": "GET", "status": [200], "headers": None, "timeout": None,
           "required": True}
    with pytest.raises(ValueError, match="repeated: url:x"):
        hc.build_checks(params(urls=[url, dict(url, url="http://b")]))
    with pytest.raises(ValueError, match="greater than 0"):
        hc.build_checks(params(urls=[dict(url, timeout=-1.0)]))
    with pytest.raises(ValueError, match="greater than 0"):
        hc.build_checks(params(qdrant={"url": "http://q", "api_key": None, "timeout": 0.0, "required": True}))


def check(name, probe, timeout=1.0, required=True):
    return hc.Check(name, "http://x/" + name, timeout, required, probe)


def test_runner_bounds_a_hung_probe_and_keeps_the_others():
    release = threading.Event()
    checks = [check("fast", lambda: (hc.OK, "fine")),
              check("hung", lambda: (release.wait(30), (hc.OK, "late"))[1], timeout=0.5),
              check("boom", lambda: 1 / 0),
              check("optional", lambda: (never for never in ()).throw(hc.CheckFailed("down")), required=False)]
    t0 = time.monotonic()
    reports = {r["name"]: r for r in hc.run_checks(checks)}
    elapsed = time.monotonic() - t0
    release.set()
    assert elapsed < 0.5 + 1.0  # the hung probe's timeout plus grace, never the sum of timeouts
    assert reports["fast"]["status"] == hc.OK
    assert reports["hung"]["status"] == hc.FAILED and "no answer within 0.5s" in reports["hung"]["detail"]
    assert reports["hung"]["latency_ms"] == 500.0
    assert reports["boom"]["status"] == hc.FAILED and "ZeroDivisionError" in reports["boom"]["detail"]
    assert reports["optional"]["status"] == hc.WARNING and reports["optional"]["detail"] == "down"


def test_checks_run_concurrently():
    barrier = threading.Barrier(3, timeout=2)
    probes = [check(f"c{i}", lambda: (barrier.wait(), (hc.OK, "met"))[1], timeout=3) for i in range(3)]
    assert [r["status"] for r in hc.run_checks(probes)] == [hc.OK] * 3  # only possible if all run at once


def test_a_late_answer_cannot_overwrite_a_timeout():
    c = check("late", None, timeout=0.1)
    c._settle(hc.FAILED, "no answer within 0.1s", 100.0)
    c._settle(hc.OK, "late", 2000.0)
    assert c.report()["status"] == hc.FAILED


def test_summary_counts():
    reports = [{"status": s} for s in ("ok", "ok", "failed", "warning", "skipped")]
    assert hc.summarize(reports, 12.34) == {"total": 5, "ok": 2, "failed": 1, "warning": 1, "skipped": 1,
                                            "elapsed_ms": 12.3}


# -- probes against a scripted HTTP server

def client(server):
    return HttpClient(server.url, timeout=2, retries=0)


def test_ready_503_lists_what_is_not_ready(http_server):
    http_server.handler = lambda req: (503, {}, {"status": "not ready", "checks": {
        "vector_store": {"status": "failed", "detail": "connection refused", "required": True},
        "embedder": {"status": "ok", "required": True}}})
    with pytest.raises(hc.CheckFailed, match="not ready: vector_store \\(connection refused\\)") as failed:
        hc.aegis_ready(client(http_server))
    assert failed.value.fields == {"http_status": 503, "dependencies": [
        {"name": "embedder", "status": "ok", "required": True, "latency_ms": None, "detail": ""},
        {"name": "vector_store", "status": "failed", "required": True, "latency_ms": None,
         "detail": "connection refused"}]}


def test_ready_with_a_failing_optional_dependency_is_a_warning(http_server):
    http_server.handler = lambda req: (200, {}, {"status": "ready", "checks": {
        "vector_store": {"status": "ok"}, "llm": {"status": "failed", "detail": "ollama down"}}})
    status, detail, fields = hc.aegis_ready(client(http_server))
    assert status == hc.WARNING and "llm (ollama down)" in detail
    assert fields["http_status"] == 200 and [d["name"] for d in fields["dependencies"]] == ["llm", "vector_store"]
    assert fields["dependencies"][0]["required"] is True  # not said: required, as the runbook reads it


@pytest.mark.parametrize("reply,status,fragment", [
    ({"answer": "Snapshots go to S3.", "sources": [{}], "mode": "extractive", "degraded": False}, hc.OK, "mode extractive"),
    ({"answer": "x", "sources": [], "mode": "extractive", "degraded": True}, hc.WARNING, "degraded"),
])
def test_chat_probe_accepts_answers(http_server, reply, status, fragment):
    http_server.handler = lambda req: (200, {}, reply)
    got_status, detail = hc.aegis_chat(client(http_server), "test query")
    assert got_status == status and fragment in detail
    assert http_server.seen[0].body == b'{"question": "test query", "history": []}'


@pytest.mark.parametrize("reply", [{"answer": ""}, {"sources": []}, ["answer"], b"<html>ok</html>"])
def test_chat_probe_rejects_replies_without_answer(http_server, reply):
    http_server.handler = lambda req: (200, {}, reply)
    with pytest.raises(hc.CheckFailed):
        hc.aegis_chat(client(http_server), "test query")


def test_ollama_probe_names_missing_models(http_server):
    http_server.handler = lambda req: (200, {}, {"models": [{"name": "nomic-embed-text:latest", "digest": "d"}]})
    assert hc.ollama_tags(client(http_server), ["nomic-embed-text"])[0] == hc.OK
    with pytest.raises(hc.CheckFailed, match="missing models: deepseek-r1:7b \\(installed: nomic-embed-text:latest\\)"):
        hc.ollama_tags(client(http_server), ["nomic-embed-text", "deepseek-r1:7b"])


def test_jina_probe_needs_an_embedding(http_server):
    http_server.handler = lambda req: (200, {}, {"data": [{"index": 0, "embedding": [0.1] * 8}]})
    assert hc.jina_embeddings(client(http_server), "jina-embeddings-v3") == (hc.OK, "embedding of 8 dimensions")
    http_server.handler = lambda req: (200, {}, {"data": []})
    with pytest.raises(hc.CheckFailed, match="no embedding"):
        hc.jina_embeddings(client(http_server), "jina-embeddings-v3")


# -- the module's argument handling

def test_module_without_any_check_fails_clearly(call_module):
    result = call_module(hc.main, {})
    assert result["failed"] and "no checks configured" in result["msg"]


def test_module_rejects_unknown_aegis_check(call_module):
    result = call_module(hc.main, {"aegis": {"url": "http://a", "checks": ["health", "metrics"]}})
    assert result["failed"] and "metrics" in result["msg"]


def test_module_fails_listing_failures_and_never_changes(call_module, closed_port_url):
    result = call_module(hc.main, {"qdrant": {"url": closed_port_url}, "timeout": 2}, check=True)
    assert result["failed"] and result["changed"] is False
    assert result["failed_checks"] == ["qdrant_ready"] and result["msg"].startswith("health check failed: qdrant_ready")


def test_module_report_only_mode_succeeds_with_failures(call_module, closed_port_url):
    result = call_module(hc.main, {"qdrant": {"url": closed_port_url}, "fail_on_failure": False})
    assert not result.get("failed") and result["failed_checks"] == ["qdrant_ready"]
    assert result["summary"]["failed"] == 1
