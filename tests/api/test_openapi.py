"""/openapi.json tells the truth: every reply the API gives, as provoked here, is documented for its route
and status, with its content type, and its body validates against the documented schema."""

from __future__ import annotations

import jsonschema
import pytest

from aegis_rag.errors import DependencyError

from .test_chat import FakeLLM

KEY = {"X-API-Key": "s3cret"}
Q = {"question": "When are snapshots uploaded to S3?"}


@pytest.fixture
def api(make_client):
    llm = FakeLLM()
    client = make_client(api_keys=["s3cret"], llm_on_failure="fail", max_upload_bytes=1000,
                         max_question_chars=100, service_kwargs={"generator": llm})
    client.llm = llm
    return client


def provoke(c, monkeypatch) -> list[tuple[str, str, object]]:
    """(method, path template, response) for every status these routes can be driven to."""
    service = c.app.state.service
    doc_id = c.get("/documents", headers=KEY).json()["documents"][0]["id"]
    replies = [
        ("post", "/chat", c.post("/chat", json=Q, headers=KEY)),
        ("post", "/chat", c.post("/chat", json={**Q, "stream": True}, headers=KEY)),
        ("post", "/chat", c.post("/chat", json=Q)),
        ("post", "/chat", c.post("/chat", json={"question": "x" * 5000}, headers=KEY)),
        ("post", "/chat", c.post("/chat", json={"question": ""}, headers=KEY)),
        ("post", "/documents", c.post("/documents", files={"file": ("a.md", b"# A\n\nSome text.")}, headers=KEY)),
        ("post", "/documents", c.post("/documents", files={"file": ("a.md", b"  \n")}, headers=KEY)),
        ("post", "/documents", c.post("/documents", files={"file": ("a.md", b"x" * 2000)}, headers=KEY)),
        ("post", "/documents", c.post("/documents", files={"file": ("a.png", b"\x89PNG")}, headers=KEY)),
        ("post", "/documents", c.post("/documents", data={"x": "1"}, headers=KEY)),
        ("post", "/documents", c.post("/documents", files={"file": ("a.md", b"# A")})),
        ("get", "/documents", c.get("/documents", headers=KEY)),
        ("get", "/documents", c.get("/documents")),
        ("delete", "/documents/{doc_id}", c.delete(f"/documents/{doc_id}", headers=KEY)),
        ("delete", "/documents/{doc_id}", c.delete(f"/documents/{doc_id}", headers=KEY)),
        ("delete", "/documents/{doc_id}", c.delete(f"/documents/{doc_id}")),
        ("get", "/health", c.get("/health")),
        ("get", "/ready", c.get("/ready")),
        ("get", "/metrics", c.get("/metrics")),
    ]
    c.llm.fail = "before_first_token"
    replies += [("post", "/chat", c.post("/chat", json=Q, headers=KEY)),
                ("post", "/chat", c.post("/chat", json={**Q, "stream": True}, headers=KEY))]

    def down(*args, **kwargs):
        raise DependencyError("vector_store", "Qdrant unreachable")

    monkeypatch.setattr(service, "documents", down)
    monkeypatch.setattr(service, "ingest_bytes", down)
    monkeypatch.setattr(service, "delete_document", down)
    replies += [("get", "/documents", c.get("/documents", headers=KEY)),
                ("post", "/documents", c.post("/documents", files={"file": ("b.md", b"# B")}, headers=KEY)),
                ("delete", "/documents/{doc_id}", c.delete(f"/documents/{doc_id}", headers=KEY))]
    return replies


def test_every_reply_is_documented_with_its_schema(api, monkeypatch):
    doc = api.get("/openapi.json").json()
    seen = set()
    for method, path, r in provoke(api, monkeypatch):
        operation = doc["paths"][path][method]
        documented = operation["responses"].get(str(r.status_code))
        assert documented, f"{method.upper()} {path} answered {r.status_code}, which is not documented"
        media = r.headers["content-type"].split(";")[0]
        assert media in documented.get("content", {}), f"{method.upper()} {path} {r.status_code}: {media}"
        if media == "application/json":
            schema = {**documented["content"][media]["schema"], "components": doc["components"]}
            jsonschema.validate(r.json(), schema)
        seen.add((method, path, r.status_code))
    assert {s for _, _, s in seen} >= {200, 400, 401, 404, 413, 415, 422, 503}


def test_protected_routes_declare_the_api_key_schemes(api):
    doc = api.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {"type": "http", "scheme": "bearer", "description": "one of AEGIS_API_KEYS"}
    assert schemes["APIKeyHeader"]["in"] == "header" and schemes["APIKeyHeader"]["name"] == "X-API-Key"
    for path, method in (("/chat", "post"), ("/documents", "post"), ("/documents", "get"),
                         ("/documents/{doc_id}", "delete")):
        # two requirement objects: either scheme is enough
        assert doc["paths"][path][method]["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}]
        assert "401" in doc["paths"][path][method]["responses"]
    for path in ("/health", "/ready", "/metrics"):
        assert "security" not in doc["paths"][path]["get"]


def test_document_describes_bodies_streams_and_metrics_as_they_are(make_client):
    doc = make_client(corpus=None).get("/openapi.json").json()
    chat = doc["paths"]["/chat"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatRequest"}
    assert set(doc["components"]["schemas"]["ChatRequest"]["properties"]) == {"question", "history", "top_k", "stream"}
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert "security" not in chat and "401" not in chat["responses"]  # no keys configured: nothing to claim
    upload = doc["paths"]["/documents"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert upload["required"] == ["file"] and upload["properties"]["file"]["format"] == "binary"
    assert set(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert doc["components"]["schemas"]["InvalidInput"]["required"] == ["error", "detail", "fields"]
