import json

from aegis_rag.api.body import DRAIN_MAX_BYTES
from aegis_rag.generation import SYSTEM_PROMPT


def test_manual_probe_returns_an_answer(client):
    r = client.post("/chat", json={"question": "test query", "history": []})
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body["answer"], str) and body["answer"]
    assert set(body) == {"answer", "sources", "model", "mode", "degraded", "timings_ms"}


def test_question_about_a_document_cites_it(client):
    r = client.post("/chat", json={"question": "When are snapshots uploaded to S3?", "history": []})
    body = r.json()
    assert body["mode"] == "extractive" and body["degraded"] is False
    top = body["sources"][0]
    assert top["document"] == "backup.md"
    assert top["section"] == "Backup and restore > Snapshots"
    assert "every night at 02:00" in top["text"]
    assert "02:00" in body["answer"] and "[1]" in body["answer"]
    assert {"embed", "search", "generate", "total"} <= set(body["timings_ms"])


def test_keyword_retrieval_finds_exact_terms(client):
    r = client.post("/chat", json={"question": "gpu-1", "history": [], "top_k": 1})
    assert r.json()["sources"][0]["document"] == "gpu.md"
    assert "| gpu-1 | L4 | 24 GB |" in r.json()["sources"][0]["text"]  # the table stayed whole


def test_top_k_limits_sources(client):
    r = client.post("/chat", json={"question": "Aegis", "history": [], "top_k": 2})
    assert len(r.json()["sources"]) == 2


def test_streaming_sends_tokens_then_sources(client):
    with client.stream("POST", "/chat", json={"question": "Who is on call?", "history": [], "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = [(b.split("\n")[0].removeprefix("event: "), json.loads(b.split("\n")[1].removeprefix("data: ")))
              for b in raw.strip().split("\n\n")]
    names = [e[0] for e in events]
    assert names[-1] == "sources" and set(names[:-1]) == {"token"}
    text = "".join(e[1]["text"] for e in events[:-1])
    assert "Monday" in text
    assert events[-1][1]["sources"][0]["document"] == "notes.txt"


def test_second_identical_question_uses_the_embedding_cache(client):
    q = {"question": "Which module restores backups?", "history": []}
    first = client.post("/chat", json=q).json()
    second = client.post("/chat", json=q).json()
    assert first["timings_ms"]["embed_cached"] is False
    assert second["timings_ms"]["embed_cached"] is True
    assert first["sources"] == second["sources"]


def test_history_roles_are_validated(client):
    r = client.post("/chat", json={"question": "hi", "history": [{"role": "system", "content": SYSTEM_PROMPT}]})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid input"
    assert body["fields"][0]["field"] == "history.0.role"


def test_invalid_input_gives_422_with_field_messages(make_client):
    c = make_client(max_question_chars=50, max_history_turns=2)
    cases = [
        ({"history": []}, "question"),
        ({"question": "", "history": []}, "question"),
        ({"question": "x" * 51, "history": []}, "question"),
        ({"question": "ok", "history": [{"role": "user", "content": "a"}] * 3}, "history"),
        ({"question": "ok", "top_k": 0}, "top_k"),
    ]
    for payload, field in cases:
        r = c.post("/chat", json=payload)
        assert r.status_code == 422, payload
        assert r.json()["fields"][0]["field"] == field
    r = c.post("/chat", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "Traceback" not in r.text


def test_api_keys_protect_chat_and_documents(make_client):
    c = make_client(corpus=None, api_keys=["s3cret"])
    q = {"question": "test query", "history": []}
    assert c.post("/chat", json=q).status_code == 401
    assert c.post("/chat", json=q, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.post("/chat", json=q, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.post("/chat", json=q, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert c.get("/documents").status_code == 401
    assert c.get("/health").status_code == 200
    assert c.get("/ready").status_code == 200


def test_empty_collection_answers_honestly(make_client):
    c = make_client(corpus=None)
    body = c.post("/chat", json={"question": "test query", "history": []}).json()
    assert body["sources"] == [] and "could not find" in body["answer"]


# --- request path: key before body, honest streaming errors, typed failure reasons
class FakeLLM:
    """An LLM backend that answers extractively, or fails (before or after its first token) on demand."""

    name, model = "fake", "fake-llm:1"

    def __init__(self, fail: str | None = None, reason: str = "error", detail: str = "connection refused"):
        self.fail, self.reason, self.detail = fail, reason, detail

    def stream(self, messages, hits, question):
        from aegis_rag.errors import DependencyError
        from aegis_rag.generation import extractive_answer

        if self.fail == "before_first_token":
            raise DependencyError("llm", self.detail, reason=self.reason)
        yield extractive_answer(question, hits)
        if self.fail == "after_first_token":
            raise DependencyError("llm", self.detail, reason=self.reason)

    def ping(self):
        pass


def sse_events(raw: str) -> list[tuple[str, dict]]:
    return [(b.split("\n")[0].removeprefix("event: "), json.loads(b.split("\n")[1].removeprefix("data: ")))
            for b in raw.strip().split("\n\n")]


def test_keyless_request_gets_401_before_its_body_is_validated(make_client):
    c = make_client(corpus=None, api_keys=["s3cret"])
    for body in ({"question": "", "history": [{"role": "system", "content": "x"}]}, b"{not json"):
        r = c.post("/chat", **({"json": body} if isinstance(body, dict) else {"content": body}))
        assert r.status_code == 401, r.text
        assert r.json() == {"error": "request refused", "detail": "missing or invalid API key"}
    r = c.post("/chat", json={"question": ""}, headers={"X-API-Key": "s3cret"})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "question"


def test_oversized_chat_body_is_refused_with_413_before_it_is_read(make_client):
    c = make_client(corpus=None, max_question_chars=10, max_history_turns=1, max_message_chars=10)
    pulled = []

    def body():
        for _ in range(100):
            pulled.append(1)
            yield b" " * 65536

    r = c.post("/chat", content=body(), headers={"Content-Type": "application/json", "Content-Length": "6553600"})
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]
    # refused on its declared length before any of it was parsed; then drained (read and discarded, at most
    # DRAIN_MAX_BYTES), so that a real client reads the 413 instead of a connection reset
    assert len(pulled) == 100 and 100 * 65536 <= DRAIN_MAX_BYTES
    chunked = (b'{"question": "ok"}' if i == 0 else b" " * 1000 for i in range(10))  # no Content-Length
    r = c.post("/chat", content=chunked, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]


def test_stream_with_llm_down_and_fail_policy_answers_503_not_an_error_event(make_client):
    c = make_client(llm_on_failure="fail", service_kwargs={"generator": FakeLLM(fail="before_first_token")})
    with c.stream("POST", "/chat", json={"question": "Who is on call?", "stream": True}) as r:
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/json"
        body = json.loads(r.read())
    assert body == {"error": "dependency unavailable", "detail": "connection refused", "dependency": "llm"}
    assert r.headers["retry-after"] == "5"


def test_stream_with_llm_down_degrades_like_the_plain_answer(make_client):
    c = make_client(service_kwargs={"generator": FakeLLM(fail="before_first_token")})
    q = {"question": "Who is on call?", "history": []}
    plain = c.post("/chat", json=q).json()
    with c.stream("POST", "/chat", json={**q, "stream": True}) as r:
        assert r.status_code == 200
        events = sse_events(r.read().decode())
    assert [name for name, _ in events] == ["token", "sources"]
    assert events[0][1]["text"] == plain["answer"]
    final = events[1][1]
    assert set(final) == set(plain) - {"answer"}
    assert final["degraded"] is plain["degraded"] is True
    assert final["mode"] == plain["mode"] == "extractive" and final["sources"] == plain["sources"]


def test_llm_failure_after_the_first_token_ends_the_stream_with_an_error_event(make_client):
    c = make_client(llm_on_failure="fail", service_kwargs={"generator": FakeLLM(fail="after_first_token")})
    with c.stream("POST", "/chat", json={"question": "Who is on call?", "stream": True}) as r:
        assert r.status_code == 200
        events = sse_events(r.read().decode())
    assert [name for name, _ in events] == ["token", "error"]
    assert events[1][1] == {"error": "dependency unavailable", "detail": "connection refused", "dependency": "llm"}


def test_generation_failures_are_counted_by_their_typed_reason(make_client):
    from prometheus_client import REGISTRY

    def failures(reason):
        return REGISTRY.get_sample_value("aegis_generation_failures_total", {"backend": "fake", "reason": reason})

    # wording no longer decides: "exceeded" in an error message is not a timeout
    busy = FakeLLM(fail="before_first_token", detail="maximum pending requests exceeded")
    slow = FakeLLM(fail="before_first_token", reason="timeout", detail="no answer in time")
    for llm, reason in ((busy, "error"), (slow, "timeout")):
        c = make_client(corpus=None, service_kwargs={"generator": llm})
        before = failures(reason)
        assert c.post("/chat", json={"question": "anything"}).json()["degraded"] is True
        assert failures(reason) == before + 1
