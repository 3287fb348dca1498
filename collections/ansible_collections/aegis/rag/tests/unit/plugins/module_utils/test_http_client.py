"""The shared HTTP client: retries, error shaping, streaming download/upload, NDJSON."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest
from ansible_collections.aegis.rag.plugins.module_utils import http_client as http_mod
from ansible_collections.aegis.rag.plugins.module_utils.http_client import (
    HttpClient,
    HttpError,
    error_reason,
    excerpt,
)


@pytest.fixture(autouse=True)
def no_real_sleep(monkeypatch):
    """Record backoff delays instead of sleeping them."""
    delays = []
    monkeypatch.setattr(http_mod.time, "sleep", delays.append)
    return delays


def test_error_reason_reads_each_service_shape():
    assert error_reason(b'{"status": {"error": "Not found: Collection `x` doesn\'t exist!"}, "time": 0.1}') \
        == "Not found: Collection `x` doesn't exist!"
    assert error_reason(b'{"error": "model \'llama9\' not found"}') == "model 'llama9' not found"
    assert error_reason(b'{"error": "dependency unavailable", "detail": "qdrant down"}') \
        == "dependency unavailable: qdrant down"
    assert error_reason(b'{"detail": "Unauthorized"}') == "Unauthorized"
    assert error_reason(b"<html>bad gateway</html>") is None


def test_excerpt_is_short_and_single_line():
    text = excerpt(b"a\n" * 1000)
    assert len(text) <= 300 and "\n" not in text and text.endswith("...")


def test_retries_503_with_growing_jittered_backoff_then_succeeds(http_server, no_real_sleep):
    answers = iter([(503, {}, b"busy"), (503, {}, b"busy"), (200, {}, {"ok": True})])
    http_server.handler = lambda req: next(answers)
    client = HttpClient(http_server.url, retries=3, backoff=0.5)
    assert client.get("/x").json() == {"ok": True}
    assert len(http_server.seen) == 3
    assert len(no_real_sleep) == 2
    assert 0.25 <= no_real_sleep[0] <= 0.75 and 0.5 <= no_real_sleep[1] <= 1.5


def test_gives_up_after_retries_with_status_and_excerpt(http_server):
    http_server.handler = lambda req: (502, {}, {"error": "upstream gone"})
    with pytest.raises(HttpError) as exc:
        HttpClient(http_server.url, retries=2).get("/x")
    assert len(http_server.seen) == 3
    assert exc.value.status == 502 and "upstream gone" in exc.value.body_excerpt
    assert "HTTP 502" in exc.value.msg and "upstream gone" in exc.value.msg


def test_client_errors_are_not_retried(http_server):
    http_server.handler = lambda req: (400, {}, {"status": {"error": "Wrong input: bad vector size"}})
    with pytest.raises(HttpError) as exc:
        HttpClient(http_server.url, retries=3).post("/collections/c/points", json={"points": []})
    assert len(http_server.seen) == 1
    assert exc.value.status == 400 and "bad vector size" in exc.value.msg


def test_expected_error_status_is_returned_not_raised(http_server):
    http_server.handler = lambda req: (404, {}, {"status": {"error": "Not found"}})
    resp = HttpClient(http_server.url).get("/collections/nope", expect=(200, 404))
    assert resp.status == 404 and resp.json()["status"]["error"] == "Not found"


def test_connection_refused_is_retried_then_reported_without_status(closed_port_url, no_real_sleep):
    with pytest.raises(HttpError) as exc:
        HttpClient(closed_port_url, retries=2, timeout=2).get("/readyz")
    assert exc.value.status is None and "refused" in exc.value.msg.lower()
    assert len(no_real_sleep) == 2


def test_headers_json_body_and_query(http_server):
    http_server.handler = lambda req: (200, {}, {"result": True})
    client = HttpClient(http_server.url + "/", headers={"api-key": "k1"})
    client.put("/collections/c", json={"a": 1}, query={"wait": True, "skip": None})
    req = http_server.seen[0]
    assert req.path == "/collections/c?wait=true"
    assert req.headers["api-key"] == "k1" and req.headers["content-type"] == "application/json"
    assert json.loads(req.body) == {"a": 1}


def test_invalid_json_answer_raises_http_error(http_server):
    http_server.handler = lambda req: (200, {}, b"not json")
    with pytest.raises(HttpError) as exc:
        HttpClient(http_server.url).get("/x").json()
    assert "invalid JSON" in exc.value.msg and exc.value.body_excerpt == "not json"


def test_stream_to_file_writes_and_hashes(http_server, tmp_path):
    payload = bytes(range(256)) * 5000
    http_server.handler = lambda req: (200, {"Content-Type": "application/octet-stream"}, payload)
    dest = tmp_path / "snap.snapshot"
    written, digest = HttpClient(http_server.url).stream_to_file("GET", "/s", str(dest), chunk=4096)
    assert written == len(payload) and digest == hashlib.sha256(payload).hexdigest()
    assert dest.read_bytes() == payload
    assert [p.name for p in tmp_path.iterdir()] == ["snap.snapshot"]


def test_stream_to_file_failure_leaves_no_file(http_server, tmp_path):
    http_server.handler = lambda req: (404, {}, {"status": {"error": "Snapshot not found"}})
    with pytest.raises(HttpError):
        HttpClient(http_server.url).stream_to_file("GET", "/s", str(tmp_path / "x"))
    assert list(tmp_path.iterdir()) == []


def test_upload_file_sends_one_multipart_field(http_server, tmp_path):
    src = tmp_path / "c.snapshot"
    src.write_bytes(b"\x00snapshot-bytes\xff" * 1000)
    http_server.handler = lambda req: (200, {}, {"result": True})
    resp = HttpClient(http_server.url).upload_file("POST", "/collections/c/snapshots/upload", str(src),
                                                   "snapshot", chunk=1000)
    assert resp.json() == {"result": True}
    req = http_server.seen[0]
    boundary = req.headers["content-type"].split("boundary=")[1]
    assert int(req.headers["content-length"]) == len(req.body)
    head, rest = req.body.split(b"\r\n\r\n", 1)
    assert b'name="snapshot"; filename="c.snapshot"' in head
    assert rest == src.read_bytes() + f"\r\n--{boundary}--\r\n".encode()


def test_stream_json_lines_yields_each_object(http_server):
    lines = b'{"status":"pulling manifest"}\n\n{"status":"success"}\n'
    http_server.handler = lambda req: (200, {"Content-Type": "application/x-ndjson"}, lines)
    events = list(HttpClient(http_server.url).stream_json_lines("POST", "/api/pull", json={"model": "m"}))
    assert events == [{"status": "pulling manifest"}, {"status": "success"}]


def test_timeout_is_reported_as_timed_out(monkeypatch, http_server):
    def slow(req):
        threading.Event().wait(1.5)  # time.sleep is patched by no_real_sleep
        return 200, {}, {}

    http_server.handler = slow
    t0 = time.monotonic()
    with pytest.raises(HttpError) as exc:
        HttpClient(http_server.url, timeout=0.3, retries=0).get("/slow")
    assert "timed out" in exc.value.msg and exc.value.status is None
    assert time.monotonic() - t0 < 1.4


def test_tls_context_is_cached_and_honours_validate_certs():
    import ssl

    strict = http_mod._tls_context("https://q:6333", True)
    lax = http_mod._tls_context("HTTPS://q:6333", False)
    assert strict.verify_mode == ssl.CERT_REQUIRED and lax.verify_mode == ssl.CERT_NONE
    assert http_mod._tls_context("https://other", True) is strict
