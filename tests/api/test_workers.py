"""`aegis-rag serve` with several uvicorn workers: /metrics sums every worker (multiprocess mode)."""

import os
import shutil
import subprocess
import sys
import time

import httpx
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import wait_ready
from tests.stack import free_port



def serve_env(tmp_path, port, qdrant, ollama, collection_name, **more) -> dict:
    """`aegis-rag serve` with two workers on the Qdrant and Ollama doubles."""
    return dict(os.environ, AEGIS_DATA_DIR=str(tmp_path), AEGIS_PORT=str(port), AEGIS_WORKERS="2",
                AEGIS_QDRANT_URL=qdrant.url, AEGIS_QDRANT_API_KEY=qdrant.api_key or "", AEGIS_COLLECTION=collection_name,
                AEGIS_EMBEDDER="ollama", AEGIS_EMBED_MODEL="nomic-embed-text", AEGIS_OLLAMA_URL=ollama.url,
                **{"AEGIS_LOG_LEVEL": "warning", **more})


def test_metrics_are_summed_across_workers(qdrant, ollama, collection_name, tmp_path):
    port = free_port()
    env = serve_env(tmp_path, port, qdrant, ollama, collection_name)
    proc = subprocess.Popen([sys.executable, "-m", "aegis_rag.cli", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        with httpx.Client(base_url=url, timeout=10) as client:
            for i in range(40):  # a new connection each time, so both workers get some
                r = httpx.post(f"{url}/chat", json={"question": f"question {i}", "history": []}, timeout=10)
                assert r.status_code == 200
            text = client.get("/metrics").text
        # each worker writes its own counter file (counter_<pid>.db): both answered some requests
        per_worker = [_chat_requests(f, tmp_path / f"one-{i}")
                      for i, f in enumerate(sorted((tmp_path / "prometheus-multiproc").glob("counter_*.db")))]
        assert len(per_worker) == 2 and all(n > 0 for n in per_worker), per_worker
        values = {(s.name, tuple(sorted(s.labels.items()))): s.value
                  for fam in text_string_to_metric_families(text) for s in fam.samples}
        assert values[("http_requests_total", (("handler", "/chat"), ("method", "POST"), ("status", "2xx")))] == 40
        assert values[("aegis_embedding_cache_misses_total", ())] == 40
        assert values[("aegis_vector_search_duration_seconds_count", ())] == 40
    finally:
        proc.terminate()
        proc.wait(15)


def _chat_requests(counter_file, scratch) -> float:
    """/chat 2xx requests counted by one worker: its file alone in a folder, read by the public collector."""
    scratch.mkdir()
    shutil.copy(counter_file, scratch)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(scratch))
    return registry.get_sample_value("http_requests_total", {"handler": "/chat", "method": "POST", "status": "2xx"}) or 0


# Run as a child subreaper (PR_SET_CHILD_SUBREAPER): a process `aegis-rag serve` leaves behind when it exits comes
# to this script, which prints the pids it reaps (or "running" for one still alive a second later).
ORPHANS = r"""
import ctypes, json, os, signal, subprocess, sys, time, urllib.request
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
proc = subprocess.Popen([sys.executable, "-m", "aegis_rag.cli", "serve"], stdout=subprocess.DEVNULL)
deadline = time.monotonic() + 60
while True:
    try:
        urllib.request.urlopen(sys.argv[1] + "/health", timeout=2).read()
        break
    except OSError:
        assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
        time.sleep(0.2)
proc.send_signal(signal.SIGTERM)
proc.wait(30)
time.sleep(1)
orphans = []
while True:
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        break
    orphans.append(pid or "running")
    if not pid:
        break
print(json.dumps(orphans))
"""


def test_serve_with_workers_leaves_no_process_behind_when_it_stops(qdrant, ollama, collection_name, tmp_path):
    """systemd then has nothing to kill after the main process: on hosts where it cannot see a cgroup empty
    (systemd in a container on cgroup v1) a process left behind made every stop wait out TimeoutStopSec."""
    port = free_port()
    env = serve_env(tmp_path, port, qdrant, ollama, collection_name)
    run = subprocess.run([sys.executable, "-c", ORPHANS, f"http://127.0.0.1:{port}"], env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "[]", f"left behind: {run.stdout} (the resource tracker when not stopped)"


def test_workers_past_their_request_limit_recycle_one_at_a_time(qdrant, ollama, collection_name, tmp_path):
    """Two workers with a limit of 20 requests and no jitter reach it together under an even load: one recycles
    while the other serves, never both (uvicorn's own limit let both exit at once, and the host answered nothing
    until a new worker started: its load balancer marked it DOWN). Every request is answered."""
    port = free_port()
    env = serve_env(tmp_path, port, qdrant, ollama, collection_name, AEGIS_LIMIT_MAX_REQUESTS="20",
                    AEGIS_LIMIT_MAX_REQUESTS_JITTER="0", AEGIS_LOG_LEVEL="info")
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "aegis_rag.cli", "serve"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        statuses = [httpx.post(f"{url}/chat", json={"question": f"question {i}"}, timeout=60).status_code
                    for i in range(150)]  # a new connection each time, so both workers get some
        deadline = time.monotonic() + 60  # the last recycled worker's replacement may still be starting
        while _count(log, "Started server process") < 2 + _count(log, "recycles after") and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(30)
    assert statuses == [200] * 150
    lines = log.read_text().splitlines()
    # Workers serving, line by line: one more at each start, one less at each recycle; never none once both served.
    serving, lowest, recycles = 0, 2, 0
    for line in lines:
        if "Application startup complete" in line:
            serving += 1
        elif "recycles after" in line:
            recycles += 1
            serving -= 1
            lowest = min(lowest, serving)
    assert recycles >= 2 and lowest >= 1, "\n".join(lines[-60:])
    assert _count(log, "Started server process") == 2 + recycles, "\n".join(lines[-60:])  # each one replaced


def _count(log, text: str) -> int:
    return log.read_text().count(text)
