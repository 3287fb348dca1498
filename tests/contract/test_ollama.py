"""Ollama contract: the official `ollama` client (and raw HTTP) against the double, or a real server when
AEGIS_TEST_OLLAMA_URL is set. Against a real server the models come from AEGIS_TEST_OLLAMA_MODEL (a thinking
model, default deepseek-r1:7b), AEGIS_TEST_OLLAMA_EMBED_MODEL (nomic-embed-text) and
AEGIS_TEST_OLLAMA_PULL_MODEL (a small model the pull tests download and delete, default all-minilm).
Double-only checks (derived answers, registry control, faults, queue) skip against a real server."""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time

import httpx
import ollama as ollama_lib
import pytest

GEN_MODEL = os.environ.get("AEGIS_TEST_OLLAMA_MODEL", "deepseek-r1:7b")
EMBED_MODEL = os.environ.get("AEGIS_TEST_OLLAMA_EMBED_MODEL", "nomic-embed-text")
PULL_MODEL = os.environ.get("AEGIS_TEST_OLLAMA_PULL_MODEL", "all-minilm")
CONTEXT = ("Context:\n[1] Snapshots of the collection are uploaded to the bucket aegis-backups every night.\n"
           "Question: where do snapshots go?")


@pytest.fixture
def client(ollama):
    return ollama.client(timeout=120)


def double_only(service) -> None:
    if service.real:
        pytest.skip("checks the double's documented behaviour")


def test_root_and_version(ollama, client):
    r = httpx.get(ollama.url + "/")
    assert (r.status_code, r.text) == (200, "Ollama is running")
    assert re.match(r"\d+\.\d+\.\d+", httpx.get(ollama.url + "/api/version").json()["version"])


def test_list_and_show(client):
    models = {m.model: m for m in client.list().models}
    gen = models[GEN_MODEL if ":" in GEN_MODEL else GEN_MODEL + ":latest"]
    assert re.fullmatch(r"[0-9a-f]{64}", gen.digest) and gen.size > 0 and gen.details.family
    shown = client.show(GEN_MODEL)
    assert "completion" in shown.capabilities and shown.details.parameter_size and shown.modelinfo
    with pytest.raises(ollama_lib.ResponseError) as exc:
        client.show("no-such-model-aegis:1")
    assert exc.value.status_code == 404


def test_pull_streams_progress_then_delete(client):
    events = list(client.pull(PULL_MODEL, stream=True))
    assert events[0].status == "pulling manifest" and events[-1].status == "success"
    layers = [e for e in events if e.digest]
    assert layers and all(re.fullmatch(r"sha256:[0-9a-f]{64}", e.digest) and e.total for e in layers)
    assert any(e.completed == e.total for e in layers)
    listed = {m.model: m.digest for m in client.list().models}
    name = PULL_MODEL if ":" in PULL_MODEL else PULL_MODEL + ":latest"
    assert re.fullmatch(r"[0-9a-f]{64}", listed[name])
    assert client.pull(PULL_MODEL, stream=False).status == "success"  # already there: still success
    assert client.delete(PULL_MODEL).status == "success"
    assert name not in {m.model for m in client.list().models}
    with pytest.raises(ollama_lib.ResponseError) as exc:
        client.delete(PULL_MODEL)
    assert exc.value.status_code == 404


def test_pull_of_unknown_model_fails_after_http_200(ollama, client):
    with httpx.stream("POST", ollama.url + "/api/pull", json={"model": "no-such-model-aegis:1"}, timeout=60) as r:
        assert r.status_code == 200
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert "error" in lines[-1] and "error" not in lines[0]
    with pytest.raises(ollama_lib.ResponseError):
        list(client.pull("no-such-model-aegis:1", stream=True))
    with pytest.raises(ollama_lib.ResponseError):
        client.pull("no-such-model-aegis:1", stream=False)


def test_generate_not_streamed(ollama, client):
    r = client.generate(model=GEN_MODEL, prompt=CONTEXT, think=False, stream=False)
    assert r.done and r.done_reason == "stop" and r.response and r.eval_count > 0
    if not ollama.real:
        assert "aegis-backups" in r.response and "[1]" in r.response and "<think>" not in r.response


def test_generate_streamed_and_ps(ollama, client):
    parts = list(client.generate(model=GEN_MODEL, prompt=CONTEXT, think=False, stream=True))
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    text = "".join(p.response for p in parts)
    assert text
    if not ollama.real:
        assert text == client.generate(model=GEN_MODEL, prompt=CONTEXT, think=False).response  # deterministic
    loaded = {m.model for m in client.ps().models}
    assert (GEN_MODEL if ":" in GEN_MODEL else GEN_MODEL + ":latest") in loaded


def test_chat_streamed_and_not(ollama, client):
    messages = [{"role": "system", "content": "Answer only from the context."}, {"role": "user", "content": CONTEXT}]
    whole = client.chat(model=GEN_MODEL, messages=messages, think=False)
    assert whole.message.role == "assistant" and whole.message.content and whole.done
    parts = list(client.chat(model=GEN_MODEL, messages=messages, think=False, stream=True))
    assert parts[-1].done and "".join(p.message.content for p in parts)
    if not ollama.real:
        assert "aegis-backups" in whole.message.content


def test_thinking_model_thinks_separately(client):
    r = client.chat(model=GEN_MODEL, messages=[{"role": "user", "content": CONTEXT}], think=True)
    assert r.message.thinking and "<think>" not in r.message.content


def test_embed(client):
    e = client.embed(model=EMBED_MODEL, input=["snapshots go to S3", "GPU hosts run Ollama"])
    assert len(e.embeddings) == 2 and len(e.embeddings[0]) == len(e.embeddings[1]) > 0
    assert math.isclose(sum(v * v for v in e.embeddings[0]), 1.0, rel_tol=1e-3)
    again = client.embed(model=EMBED_MODEL, input="snapshots go to S3").embeddings[0]
    assert all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(again, e.embeddings[0]))


def test_unknown_model_is_404(client):
    with pytest.raises(ollama_lib.ResponseError) as exc:
        client.generate(model="no-such-model-aegis:1", prompt="hi")
    assert exc.value.status_code == 404
    with pytest.raises(ollama_lib.ResponseError) as exc:
        client.embed(model="no-such-model-aegis:1", input="hi")
    assert exc.value.status_code == 404


def test_bad_bodies(ollama):
    r = httpx.post(ollama.url + "/api/generate", content=b"")
    assert r.status_code == 400 and r.json()["error"] == "missing request body"
    r = httpx.post(ollama.url + "/api/embed", json={"model": EMBED_MODEL, "input": [1, 2]})
    assert r.status_code == 400 and "error" in r.json()


# -- double-only ------------------------------------------------------------------------------------
def test_embed_dimensions_and_similarity(ollama, client):
    double_only(ollama)
    e = client.embed(model=EMBED_MODEL, input=["backup snapshot bucket", "backup snapshot bucket nightly",
                                               "gpu memory utilisation"], dimensions=256)
    a, b, c = e.embeddings
    assert len(a) == 256

    def cos(x, y):
        return sum(p * q for p, q in zip(x, y))
    assert cos(a, b) > cos(a, c)


def test_registry_control_failure_and_new_revision(ollama, client):
    double_only(ollama)
    ollama.set_registry("broken-model:1", fail="max retries exceeded: unexpected EOF")
    with httpx.stream("POST", ollama.url + "/api/pull", json={"model": "broken-model:1"}) as r:
        assert r.status_code == 200
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert any("digest" in line for line in lines) and lines[-1] == {"error": "max retries exceeded: unexpected EOF"}
    bad = httpx.post(ollama.url + "/api/pull", json={"model": "broken-model:1", "stream": False})
    assert bad.status_code == 500 and "unexpected EOF" in bad.json()["error"]
    assert "broken-model:1" not in {m.model for m in client.list().models}

    ollama.set_registry("tiny:1", size=1000)
    client.pull("tiny:1")
    first = {m.model: m.digest for m in client.list().models}["tiny:1"]
    client.pull("tiny:1")
    assert {m.model: m.digest for m in client.list().models}["tiny:1"] == first  # unchanged upstream
    ollama.set_registry("tiny:1", revision=2)
    client.pull("tiny:1")
    assert {m.model: m.digest for m in client.list().models}["tiny:1"] != first


def test_state_is_reset_between_tests(ollama, client):
    double_only(ollama)
    models = {m.model for m in client.list().models}
    assert "tiny:1" not in models and {"deepseek-r1:7b", "nomic-embed-text:latest"} <= models


def test_think_leak_and_thinking_support_errors(ollama, client):
    double_only(ollama)
    ollama.install("old-r1:7b", capabilities=["completion"], leak_think=True)
    r = client.generate(model="old-r1:7b", prompt=CONTEXT, think=False)
    assert r.response.startswith("<think>") and "</think>" in r.response and "aegis-backups" in r.response
    with pytest.raises(ollama_lib.ResponseError) as exc:
        client.generate(model="old-r1:7b", prompt=CONTEXT, think=True)
    assert exc.value.status_code == 400 and "does not support thinking" in exc.value.error
    with pytest.raises(ollama_lib.ResponseError) as exc:
        client.generate(model=EMBED_MODEL, prompt=CONTEXT)  # an embedding model cannot generate
    assert exc.value.status_code == 400 and "does not support generate" in exc.value.error


def test_generation_failure_mid_stream(ollama, client):
    double_only(ollama)
    ollama.install("crashy:1", fail_generate="llama runner process has terminated: exit status 2")
    with pytest.raises(ollama_lib.ResponseError) as exc:
        list(client.generate(model="crashy:1", prompt=CONTEXT, stream=True))
    assert "terminated" in exc.value.error
    r = httpx.post(ollama.url + "/api/generate", json={"model": "crashy:1", "prompt": CONTEXT, "stream": False})
    assert r.status_code == 500 and "terminated" in r.json()["error"]


def test_full_queue_answers_503(ollama, client):
    double_only(ollama)
    ollama.configure(num_parallel=1, max_queue=0, token_delay_ms=100)
    with httpx.stream("POST", ollama.url + "/api/generate", json={"model": GEN_MODEL, "prompt": CONTEXT,
                                                                  "think": False}) as running:
        lines = running.iter_lines()  # keep a reference: dropping it closes the stream (a client disconnect)
        assert json.loads(next(lines))["done"] is False
        with pytest.raises(ollama_lib.ResponseError) as exc:
            client.generate(model=GEN_MODEL, prompt="another question")
        assert exc.value.status_code == 503 and "server busy" in exc.value.error
    deadline = time.monotonic() + 5  # the closed stream frees its slot
    while True:
        try:
            client.embed(model=EMBED_MODEL, input="x")
            break
        except ollama_lib.ResponseError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_faults_slow_first_token_latency_and_per_model_errors(ollama, client):
    ollama.faults.add(path="^/api/generate$", first_token_delay_ms=400)
    started = time.monotonic()
    stream = client.generate(model=GEN_MODEL, prompt=CONTEXT, think=False, stream=True)
    next(iter(stream))
    assert time.monotonic() - started >= 0.4
    ollama.faults.clear()
    ollama.faults.add(path="^/api/chat$", model=GEN_MODEL, status=500, error_rate=1.0,
                      body={"error": "llama runner process has terminated"})
    with pytest.raises(ollama_lib.ResponseError) as exc:
        client.chat(model=GEN_MODEL, messages=[{"role": "user", "content": "hi"}])
    assert exc.value.status_code == 500
    assert client.embed(model=EMBED_MODEL, input="other model and endpoint unaffected").embeddings


def test_hard_down_and_hang(ollama, client):
    ollama.stop()
    with pytest.raises(ConnectionError):
        client.list()
    ollama.start()
    assert client.list().models
    ollama.pause()
    try:
        with pytest.raises(httpx.TimeoutException):
            httpx.get(ollama.url + "/api/tags", timeout=0.5)
    finally:
        ollama.resume()


def test_models_survive_restart(start_double, tmp_path):
    o = start_double("ollama", data_dir=tmp_path / "models", preload="")
    c = o.client()
    assert c.list().models == []
    c.pull("all-minilm")
    o.stop()
    o.start()
    assert [m.model for m in o.client().list().models] == ["all-minilm:latest"]


def test_concurrent_streams_within_parallel_limit(start_double):
    o = start_double("ollama", num_parallel=2, max_queue=0, token_delay_ms=20)
    errors: list[Exception] = []

    def run():
        try:
            list(o.client().generate(model="deepseek-r1:7b", prompt=CONTEXT, think=False, stream=True))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
