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
