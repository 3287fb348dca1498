"""Document ingestion through the API: upload, list, delete, and the refusals."""

import tempfile
import threading
import time

import httpx
import pytest
import uvicorn

from aegis_rag.api import create_app
from aegis_rag.api.body import DRAIN_MAX_BYTES
from aegis_rag.service import RagService
from aegis_rag.settings import Settings
from tests.stack import free_port


def upload(client, name, data, ctype="text/plain"):
    return client.post("/documents", files={"file": (name, data if isinstance(data, bytes) else data.encode(), ctype)})


def docs_by_name(client):
    return {d["document"]: d for d in client.get("/documents").json()["documents"]}


def test_list_documents(client):
    docs = docs_by_name(client)
    assert set(docs) == {"backup.md", "gpu.md", "notes.txt"}
    assert docs["backup.md"]["chunks"] >= 2


def test_unchanged_upload_changes_nothing(client):
    from .conftest import CORPUS

    before = docs_by_name(client)
    r = upload(client, "backup.md", CORPUS["backup.md"])
    assert r.json()["status"] == "unchanged"
    assert docs_by_name(client) == before


def test_changed_upload_replaces_chunks(client):
    r = upload(client, "notes.txt", "The on-call rotation changes on Fridays at noon.")
    assert r.json()["status"] == "updated" and r.json()["chunks"] == 1
    docs = docs_by_name(client)
    assert docs["notes.txt"]["chunks"] == 1
    body = client.post("/chat", json={"question": "When does the on-call rotation change?", "history": []}).json()
    texts = [s["text"] for s in body["sources"] if s["document"] == "notes.txt"]
    assert texts == ["The on-call rotation changes on Fridays at noon."]


def test_shrinking_document_deletes_surplus_chunks(make_client):
    long_doc = "# Big\n\n" + "\n\n".join(f"## Part {i}\n\n" + f"Sentence {i} about topic {i}. " * 30 for i in range(6))
    c = make_client(corpus={"big.md": long_doc})
    assert docs_by_name(c)["big.md"]["chunks"] >= 6
    upload(c, "big.md", "# Big\n\nNow short.")
    assert docs_by_name(c)["big.md"]["chunks"] == 1
    sources = c.post("/chat", json={"question": "topic 5", "history": [], "top_k": 10}).json()["sources"]
    assert [s["text"] for s in sources] == ["Now short."]


def test_html_upload_keeps_sections(make_client):
    html = "<html><head><title>Runbook</title></head><body><h1>Runbook</h1><h2>Restart</h2>" \
           "<p>Restart the API with systemctl restart aegis-api.</p></body></html>"
    c = make_client(corpus=None)
    assert upload(c, "runbook.html", html, "text/html").json()["status"] == "created"
    top = c.post("/chat", json={"question": "how to restart the API", "history": []}).json()["sources"][0]
    assert top["document"] == "runbook.html" and "Restart" in top["section"]


def test_delete_document(client):
    doc_id = docs_by_name(client)["gpu.md"]["id"]
    assert client.delete(f"/documents/{doc_id}").json() == {"id": doc_id, "status": "deleted"}
    assert "gpu.md" not in docs_by_name(client)
    r = client.delete(f"/documents/{doc_id}")
    assert r.status_code == 404 and r.json()["error"] == "request refused"


def test_bad_uploads_are_refused_cleanly(make_client):
    c = make_client(corpus=None, max_upload_bytes=1000)
    r = upload(c, "big.md", "x" * 1001)
    assert r.status_code == 413
    r = upload(c, "image.png", b"\x89PNG....")
    assert r.status_code == 415 and ".md" in r.json()["detail"]
    r = upload(c, "broken.pdf", b"%PDF-1.4 this is not a pdf", "application/pdf")
    assert r.status_code == 400 and "Traceback" not in r.text
    r = upload(c, "empty.md", "   \n")
    assert r.status_code == 400
    assert c.get("/documents").json()["count"] == 0
    assert c.post("/documents").status_code == 422


# --- uploads: key and size checked before the body is read, never spooled to disk
GIB = 1 << 30
BOUNDARY = "aegis-test-boundary"
PART_HEAD = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.md"\r\n'
             f"Content-Type: text/markdown\r\n\r\n").encode()


class GiantUpload:
    """A 1 GiB multipart upload produced on demand, counting how much of it the server pulled."""

    def __init__(self) -> None:
        self.sent = 0

    def __iter__(self):
        yield PART_HEAD
        block = b"x" * (1 << 20)
        while self.sent < GIB:
            self.sent += len(block)
            yield block


@pytest.fixture
def live_api(tmp_path, embedder):
    """The API under a real uvicorn in this process: a client can stream a body to it as to production."""
    servers = []

    def start(**overrides) -> str:
        settings = Settings(data_dir=tmp_path / f"live{len(servers)}", **overrides)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings, RagService(settings, embedder=embedder)),
                                               host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        for _ in range(3000):
            if server.started:
                return f"http://127.0.0.1:{port}"
            time.sleep(0.01)
        raise RuntimeError("uvicorn did not start")

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def temp_files(monkeypatch):
    """Every temporary file created in this process (Starlette spools big form parts to one)."""
    created = []
    original = tempfile.TemporaryFile

    def recording(*args, **kwargs):
        created.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", recording)
    return created


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("keyed", [False, True], ids=["keyless", "keyed"])
def test_giant_upload_is_refused_without_being_read_or_spooled(live_api, temp_files, declared, keyed):
    url = live_api(api_keys=["s3cret"], max_upload_bytes=1000)
    body = GiantUpload()
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    if declared:
        headers["Content-Length"] = str(len(PART_HEAD) + GIB)
    if keyed:
        headers["X-API-Key"] = "s3cret"
    r = httpx.post(f"{url}/documents", content=iter(body), headers=headers, timeout=30)
    assert r.status_code == (413 if keyed else 401), r.text
    assert r.json()["error"] == "request refused" and "Traceback" not in r.text
    assert body.sent < DRAIN_MAX_BYTES + (32 << 20)  # what the server drains plus socket buffers, of 1 GiB
    assert temp_files == []


def test_keyed_upload_over_the_limit_gets_413_and_nothing_is_indexed(make_client, temp_files):
    c = make_client(corpus=None, api_keys=["s3cret"], max_upload_bytes=100_000)
    key = {"X-API-Key": "s3cret"}
    r = c.post("/documents", files={"file": ("big.md", b"# Big\n\n" + b"word " * 500_000, "text/markdown")},
               headers=key)
    assert r.status_code == 413 and "over the limit of 100000 bytes" in r.json()["detail"]
    r = c.post("/documents", files={"file": ("fits.md", b"# Fits\n\n" + b"word " * 19_000, "text/markdown")},
               headers=key)
    assert r.status_code == 200, r.text
    assert [d["document"] for d in c.get("/documents", headers=key).json()["documents"]] == ["fits.md"]
    assert temp_files == []  # a 95 kB upload stays in memory too


def test_malformed_uploads_get_clear_4xx(make_client):
    c = make_client(corpus=None)
    r = c.post("/documents", files={"attachment": ("a.md", b"# A")})
    assert r.status_code == 422 and r.json()["fields"] == [{"field": "file", "message": "Field required"}]
    r = c.post("/documents", content=b"not multipart", headers={"Content-Type": "text/plain"})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "file"
    assert "multipart/form-data" in r.json()["detail"]
    r = c.post("/documents", content=b"garbage", headers={"Content-Type": "multipart/form-data"})
    assert r.status_code == 400 and "multipart" in r.json()["detail"]
