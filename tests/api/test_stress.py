"""The API under stress: monitoring never queues behind the request threads, abandoned ingests stop and write
nothing, a bounded number of ingests at once, a stop during an ingest ends within the unit's stop timeout,
and refusals of over-limit uploads always reach the client.

Time bounds here are behavioural, each a fraction of the timeout or delay it is compared with; speed
figures live in bench/bench_reliability.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.api.conftest import wait_ready
from tests.stack import free_port

LLM_TIMEOUT_S = 10
PARALLEL_CHATS = 60  # more than the 40 request threads
Q = {"question": "When are snapshots uploaded to S3?", "history": []}
SMALL_DOC = b"# Snapshots\n\nSnapshots are uploaded to the S3 bucket aegis-backups every night at 02:00.\n"


def big_markdown(sections: int) -> bytes:
    """One chunk per section (each under AEGIS_CHUNK_MAX_CHARS)."""
    return "".join(f"## Section {i}\n\n" + f"Paragraph {i} about restoring snapshot {i}. " * 20 + "\n\n"
                   for i in range(sections)).encode()


@pytest.fixture
def black_hole():
    """A dependency that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


class SlowEmbedder:
    """The real local embedder, with a delay per passage batch and a count of the batches embedded."""

    def __init__(self, embedder, delay_s: float) -> None:
        self._embedder, self.delay_s, self.batches = embedder, delay_s, 0

    def __getattr__(self, name):
        return getattr(self._embedder, name)

    def embed_passages(self, texts):
        time.sleep(self.delay_s)
        self.batches += 1
        return self._embedder.embed_passages(texts)


# --- monitoring routes never wait for the request threads
def test_monitoring_answers_while_every_request_thread_waits_on_a_hung_llm(start_aegis, black_hole):
    server = start_aegis(llm="ollama", ollama_url=black_hole, llm_timeout_s=LLM_TIMEOUT_S)
    server.add_document()
    chats_done: list[float] = []

    def chat() -> int:
        r = httpx.post(server.url + "/chat", json=Q, timeout=4 * LLM_TIMEOUT_S)
        chats_done.append(time.monotonic())
        return r.status_code

    with ThreadPoolExecutor(PARALLEL_CHATS) as clients:
        started = time.monotonic()
        chats = [clients.submit(chat) for _ in range(PARALLEL_CHATS)]
        time.sleep(2)  # every request thread is now waiting on the LLM
        took = {}
        for path in ("/metrics", "/health", "/ready"):
            t0 = time.monotonic()
            r = httpx.get(server.url + path, timeout=4 * LLM_TIMEOUT_S)
            took[path] = time.monotonic() - t0
            assert r.status_code in (200, 503), (path, r.status_code)
        answered_at = time.monotonic()
        statuses = [c.result() for c in chats]
    assert not [t for t in chats_done if t < answered_at], "a /chat finished first: the threads were not all held"
    assert answered_at - started < LLM_TIMEOUT_S
    assert took["/metrics"] < 1 and took["/health"] < 1, took
    assert took["/ready"] < 3 + 1, took  # bounded by its own probe of the hung LLM (3 s), not by the threads
    assert statuses == [200] * PARALLEL_CHATS  # each degraded to an extractive answer after the LLM timeout


# --- ingestion: abandoned with its client, bounded, refused clearly
def test_an_upload_whose_client_gives_up_stops_and_writes_nothing(start_aegis, local_embedder):
    embedder = SlowEmbedder(local_embedder, delay_s=0.2)
    server = start_aegis(embedder=embedder, embed_batch_size=4, max_concurrent_ingests=1)
    doc = big_markdown(400)  # 100 batches: 20 s of embedding
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/documents", files={"file": ("manual.md", doc, "text/markdown")}, timeout=2)
    gave_up = embedder.batches
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the ingest notices within its watch interval and one batch
        before = embedder.batches
        time.sleep(1)
        if embedder.batches == before:
            break
    stopped_at = embedder.batches
    time.sleep(1)
    assert embedder.batches == stopped_at < 100, (gave_up, stopped_at, embedder.batches)
    assert httpx.get(server.url + "/documents", timeout=10).json() == {"documents": [], "count": 0}
    r = httpx.post(server.url + "/documents", files={"file": ("small.md", SMALL_DOC, "text/markdown")}, timeout=30)
    assert r.status_code == 200, r.text  # the one ingest slot is free again
    assert [d["document"] for d in httpx.get(server.url + "/documents", timeout=10).json()["documents"]] == ["small.md"]


def test_uploads_beyond_the_concurrent_ingest_limit_get_429_with_retry_after(start_aegis, local_embedder):
    embedder = SlowEmbedder(local_embedder, delay_s=0.2)
    server = start_aegis(embedder=embedder, embed_batch_size=4, max_concurrent_ingests=1)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, server.url + "/documents", timeout=60,
                            files={"file": ("manual.md", big_markdown(40), "text/markdown")})  # 10 batches: 2 s
        while embedder.batches == 0:
            time.sleep(0.05)
        busy = httpx.post(server.url + "/documents", files={"file": ("small.md", SMALL_DOC, "text/markdown")},
                          timeout=30)
        assert first.result().status_code == 200
    assert busy.status_code == 429, busy.text
    assert busy.headers["retry-after"] == "5"
    assert busy.json()["detail"] == "1 uploads are being ingested; retry later"
    again = httpx.post(server.url + "/documents", files={"file": ("small.md", SMALL_DOC, "text/markdown")}, timeout=30)
    assert again.status_code == 200, again.text


# --- a stop during an ingest
def test_sigterm_during_an_ingest_stops_within_the_unit_timeout_and_keeps_the_store_consistent(start_double, tmp_path):
    jina = start_double("jina")
    port = free_port()
    env = dict(os.environ, AEGIS_DATA_DIR=str(tmp_path / "data"), AEGIS_PORT=str(port), AEGIS_EMBEDDER="jina",
               AEGIS_JINA_URL=jina.url, AEGIS_JINA_API_KEY=jina.api_key, AEGIS_EMBED_BATCH_SIZE="4",
               AEGIS_SHUTDOWN_TIMEOUT_S="3", AEGIS_LOG_LEVEL="warning", AEGIS_CACHE="none")
    url = f"http://127.0.0.1:{port}"
    server = _serve(env)
    try:
        wait_ready(url, server)
        r = httpx.post(url + "/documents", files={"file": ("small.md", SMALL_DOC, "text/markdown")}, timeout=30)
        assert r.status_code == 200, r.text
        jina.faults.add(path="^/v1/embeddings$", latency_ms=500)  # 100 batches: 50 s of embedding
        outcome: list = []
        upload = threading.Thread(target=_post_catching, args=(url, big_markdown(400), outcome))
        upload.start()
        time.sleep(2)  # the ingest is embedding
        t0 = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        stopped_in = time.monotonic() - t0
        upload.join(30)
    finally:
        _kill(server)
    assert stopped_in < 30, f"{stopped_in:.1f} s: systemd's TimeoutStopSec=30 would have killed it"
    assert not (outcome and isinstance(outcome[0], httpx.Response) and outcome[0].status_code == 200), outcome
    jina.faults.clear()
    again = _serve(env)
    try:
        wait_ready(url, again)
        docs = httpx.get(url + "/documents", timeout=10).json()
        assert [d["document"] for d in docs["documents"]] == ["small.md"], docs
        r = httpx.post(url + "/chat", json=Q, timeout=30)
        assert r.status_code == 200 and r.json()["sources"][0]["document"] == "small.md", r.text
    finally:
        _kill(again)


def _serve(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aegis_rag.cli", "serve"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


def _post_catching(url: str, doc: bytes, outcome: list) -> None:
    try:
        outcome.append(httpx.post(url + "/documents", files={"file": ("manual.md", doc, "text/markdown")}, timeout=90))
    except httpx.HTTPError as exc:
        outcome.append(exc)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


# --- over-limit uploads always get their 413
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is installed by scripts/setup.sh")
@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_an_over_limit_upload_always_gets_its_413(start_aegis, tmp_path, chunked):
    server = start_aegis(max_upload_bytes=1024 * 1024)
    big = tmp_path / "big.md"
    with big.open("wb") as fh:  # 256 MB, mostly a hole: cheap to make and to read
        fh.truncate(256 * 1024 * 1024)
    framing = ["-H", "Transfer-Encoding: chunked"] if chunked else []
    codes = []
    for _ in range(12):
        run = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect:", *framing,
                              "-F", f"file=@{big};type=text/markdown", server.url + "/documents"],
                             capture_output=True, text=True, timeout=120, check=False)
        codes.append((run.returncode, run.stdout, run.stderr.strip()))
    assert codes == [(0, "413", "")] * 12, codes
