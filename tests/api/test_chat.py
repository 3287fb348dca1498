import json

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
