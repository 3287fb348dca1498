"""playbooks/runbook_api_failure.yml's recovery verification of latency and error rate (the manual: "verify response
times return to normal, check error rates decrease below 1 %"), on loopback, with the fixtures and host doubles of
test_runbook_api_failure.py.

A real Aegis API (its own /metrics, prometheus-fastapi-instrumentator's) answering a share of /chat with 5xx while the
runbook runs (its Qdrant double failing queries) is ready, so nothing is repaired, but it is "degraded", named, and
fine again once the fault is gone. A repaired host (a FakeApiHost whose unit was stopped, its /metrics moving with
every read) whose recent 5xx share stays over 1 % is "degraded", not ok, measured from its own /metrics after the
repair even when Prometheus is set; a healthy host beside it is judged from Prometheus (backfilled with the monitoring
role's recording rules) and degraded by a P95 over 2 s. A P95 beyond the histogram's largest bucket (1 s) cannot be
compared with the 2 s target: a warning, not a degradation."""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.module_python import MODULE_PYTHON
from tests.runbooks import test_runbook_api_failure as base
from tests.runbooks.metrics_doubles import backfilled_prometheus

pytestmark = pytest.mark.slow

API_KEY = base.API_KEY
WINDOW = {"aegis_runbook_latency_window": 2}  # seconds between the two reads of a host's /metrics

# the fixtures of test_runbook_api_failure.py (assigned, not imported, so that pytest finds them here by name)
api_on_qdrant = base.api_on_qdrant
runbook = base.runbook


class MeteredApiHost(base.FakeApiHost):
    """A FakeApiHost whose /metrics page has the API's HTTP metrics (prometheus-fastapi-instrumentator's names, its
    default buckets 0.1, 0.5, 1): while it runs, each read finds `per_read` more /chat answers (each within 0.5 s, or
    over 1 s when `slow`), `errors_per_read` of them 5xx, and 50 more /ready answers 503 (never counted); a start of
    the unit starts its counters again, as a new process does."""

    def __init__(self, root: Path, per_read: int = 100, errors_per_read: int = 0, slow: bool = False, **kw) -> None:
        super().__init__(root, **kw)
        self.per_read, self.errors_per_read, self.slow = per_read, errors_per_read, slow
        self.reads, self.starts = 0, None

    def respond(self, path: str) -> tuple[int, bytes, str]:
        if path == "/metrics" and self.state["running"]:
            return 200, self.metrics().encode(), "text/plain; version=0.0.4"
        return super().respond(path)

    def metrics(self) -> str:
        if self.state["starts"] != self.starts:
            self.starts, self.reads = self.state["starts"], 0
        self.reads += 1
        n, errors, ready = self.reads * self.per_read, self.reads * self.errors_per_read, self.reads * 50
        chat, probe = 'handler="/chat",method="POST"', 'handler="/ready",method="GET"'
        within = {"0.1": 0, "0.5": 0 if self.slow else n, "1.0": 0 if self.slow else n, "+Inf": n}
        lines = ["# TYPE http_requests_total counter",
                 f'http_requests_total{{{chat},status="2xx"}} {float(n - errors)}',
                 f'http_requests_total{{{chat},status="5xx"}} {float(errors)}',
                 f'http_requests_total{{{probe},status="5xx"}} {float(ready)}',
                 "# TYPE http_request_duration_seconds histogram"]
        lines += [f'http_request_duration_seconds_bucket{{{chat},le="{le}"}} {float(c)}' for le, c in within.items()]
        lines += [f"http_request_duration_seconds_count{{{chat}}} {float(n)}",
                  f"http_request_duration_seconds_sum{{{chat}}} {n * (1.5 if self.slow else 0.3)}"]
        lines += [f'http_request_duration_seconds_bucket{{{probe},le="{le}"}} {float(ready)}'
                  for le in ("0.1", "0.5", "1.0", "+Inf")]
        return "\n".join(lines) + "\n"


@pytest.fixture
def metered_hosts(tmp_path):
    yield from base.make_hosts(tmp_path, MeteredApiHost)


def row(host: dict, check: str):
    [value] = [r[1] for r in host["tables"][1]["rows"] if r[0] == check]
    return value


class Traffic:
    """Clients asking /chat in a loop until stopped; counts the answers by status class."""

    def __init__(self, url: str) -> None:
        self.url, self.stop_event, self.answers = url, threading.Event(), {"2xx": 0, "5xx": 0, "other": 0}
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]

    def _run(self) -> None:
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
            while not self.stop_event.is_set():
                r = client.post(self.url + "/chat", json={"question": "How do I restore a collection?", "history": []})
                key = f"{r.status_code // 100}xx" if r.status_code // 100 in (2, 5) else "other"
                self.answers[key] += 1

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=60)


def test_a_ready_api_answering_5xx_is_degraded_then_fine_again(runbook, api_on_qdrant):
    server, qdrant = api_on_qdrant
    hosts = {"api-a": {"ansible_connection": "local", "ansible_python_interpreter": MODULE_PYTHON,
                       "aegis_runbook_api_url": server.url}}
    # a third of the searches fail in Qdrant: the API answers those /chat with 503, /ready stays ok
    qdrant.faults.add(path="/points/query$", method="POST", error_rate=0.34, status=500,
                      body={"status": {"error": "Service internal error: injected"}, "time": 0.0})
    with Traffic(server.url) as traffic:
        out = runbook(hosts, **WINDOW)
    assert traffic.answers["5xx"] > 0 and traffic.answers["2xx"] > 0, traffic.answers
    host = out.host("api-a")
    assert host["status"] == "degraded" and host["actions"] == [], out.describe()
    assert host["data"]["diagnosis"]["state"] == "ready"
    recent = host["data"]["recent"]
    assert recent["source"] == "/metrics" and recent["requests"] > 0 and recent["error_ratio"] > 0.1, recent
    [finding] = [f for f in host["findings"] if f.startswith("degraded: ")]
    assert re.fullmatch(r"degraded: [\d.]+% of recent requests answered 5xx, over the 1% target \(this host, "
                        r"/metrics, \d+ requests in 2 s\)", finding), finding
    assert finding[len("degraded: "):] in host["summary"]
    assert "changed=0" in out.stdout and "runbook_api_failure failed" not in out.stdout

    qdrant.faults.clear()
    with Traffic(server.url):
        again = runbook(hosts, **WINDOW)
    host = again.host("api-a")
    assert host["status"] == "ok" and host["findings"] == [], again.describe()
    assert re.fullmatch(r"P95 [\d.e-]+ s, 0% 5xx \(this host, /metrics, \d+ requests in 2 s\)",
                        row(host, "recent latency and errors")), host["tables"][1]
    assert host["data"]["recent"]["p95_s"] < 2


def test_a_repaired_host_still_answering_5xx_is_degraded_and_prometheus_judges_the_others(runbook, metered_hosts,
                                                                                            tmp_path):
    if not shutil.which("prometheus") and not Path("/usr/bin/prometheus").exists():
        pytest.skip("prometheus is not installed")
    broken = metered_hosts("api-a", per_read=100, errors_per_read=5)  # its unit stopped: down
    healthy = metered_hosts("api-b", per_read=100)
    healthy.systemctl("start", "aegis-api")
    now = int(time.time())
    # the service's last 5 minutes, as the monitoring role records them: the outage's errors, a slow P95
    (tmp_path / "prom").mkdir()
    prom = backfilled_prometheus(tmp_path / "prom", {
        "aegis:api_request_duration_seconds:p95": [(now - 120, 0.4), (now - 30, 2.5)],
        "aegis:api_errors:ratio_rate5m": [(now - 120, 0.0), (now - 30, 0.004)]})
    try:
        out = runbook({"api-a": broken.inventory(), "api-b": healthy.inventory()},
                      aegis_runbook_prometheus_url=prom.url, **WINDOW)
    finally:
        prom.stop()
    a, b = out.host("api-a"), out.host("api-b")
    assert broken.state["running"] and a["data"]["after"]["state"] == "ready", a
    assert "restart the aegis-api unit and wait for /ready" in a["actions"]
    # repaired: judged on its own requests after the repair (5 of every 100 answered 5xx), not on Prometheus' 5 minutes
    assert a["status"] == "degraded", out.describe()
    what = "this host after its repair, /metrics, 100 requests in 2 s"
    assert [f for f in a["findings"] if f.startswith("degraded: ")] == [
        f"degraded: 5% of recent requests answered 5xx, over the 1% target ({what})"], a["findings"]
    # 100 within (0.1, 0.5]: 0.1 + 0.4 * 95/100
    assert row(a, "recent latency and errors") == f"P95 0.48 s, 5% 5xx ({what})"
    # not repaired: the service's figures from Prometheus
    assert b["status"] == "degraded" and b["actions"] == [], b
    assert [f for f in b["findings"] if f.startswith("degraded: ")] == [
        "degraded: recent P95 2.5 s over the 2.0 s target (the service, Prometheus, last 5m)"]
    assert row(b, "recent latency and errors") == "P95 2.5 s, 0.4% 5xx (the service, Prometheus, last 5m)"
    assert healthy.reads == 0  # Prometheus answered: its /metrics was not read
    assert out.report["counts"] == {"degraded": 2}


def test_a_p95_beyond_the_largest_bucket_is_a_warning_and_no_traffic_is_no_verdict(runbook, metered_hosts):
    """Both hosts ready and not repaired, in one run (check mode: the recent figures are read all the same, the
    hosts' /metrics read over the same window); each is judged on its own /metrics."""
    slow = metered_hosts("api-a", per_read=20, slow=True)
    slow.systemctl("start", "aegis-api")
    quiet = metered_hosts("api-b", per_read=0)
    quiet.systemctl("start", "aegis-api")
    out = runbook({"api-a": slow.inventory(), "api-b": quiet.inventory()}, check=True, **WINDOW)
    host = out.host("api-a")
    assert host["status"] == "ok", out.describe()
    assert ("warning: recent P95 > 1 s, beyond the largest bucket of http_request_duration_seconds: it cannot be "
            "compared with the 2.0 s target") in host["findings"], host["findings"]
    assert row(host, "recent latency and errors") == "P95 > 1 s, 0% 5xx (this host, /metrics, 20 requests in 2 s)"

    host = out.host("api-b")
    assert host["status"] == "ok" and not [f for f in host["findings"] if "recent" in f], host["findings"]
    assert row(host, "recent latency and errors") == "no requests (this host, /metrics, 0 requests in 2 s)"
