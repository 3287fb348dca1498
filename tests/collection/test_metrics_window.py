"""The filter aegis.rag.metrics_window: what happened between two reads of a /metrics page.

Read from prometheus_client's own exposition (the library the Aegis API exports with) and from hand-written pages:
the quantile of the bucket increases (cross-checked with Prometheus' histogram_quantile through `promtool test
rules`), the +Inf bucket, the mean, counter ratios, label selectors, a restart between the reads, pages without
the series, escaped label values and exemplars, and the errors a playbook can make."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from ansible_collections.aegis.rag.plugins.filter.metrics_window import FilterModule, bucket_quantile, metrics_window

SEARCH = "aegis_vector_search_duration_seconds"
FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)  # the API's search buckets


class Api:
    """A registry shaped like the Aegis API's: the search histogram and counters, and the HTTP metrics of
    prometheus-fastapi-instrumentator (handler, method, status grouped as 2xx/5xx; buckets 0.1, 0.5, 1)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.search = Histogram(SEARCH, "Vector store query time", buckets=FAST, registry=self.registry)
        self.searches = Counter("aegis_vector_searches_total", "Vector store queries", registry=self.registry)
        self.failures = Counter("aegis_vector_search_failures_total", "failed", registry=self.registry)
        self.requests = Counter("http_requests_total", "requests", ["handler", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds", "latency", ["handler", "method"],
                                 buckets=(0.1, 0.5, 1), registry=self.registry)

    def page(self) -> str:
        return generate_latest(self.registry).decode()

    def searched(self, seconds: float, times: int = 1, failed: bool = False) -> None:
        for _ in range(times):
            self.search.observe(seconds)
            self.searches.inc()
            if failed:
                self.failures.inc()

    def answered(self, handler: str, seconds: float, status: str = "2xx", times: int = 1) -> None:
        for _ in range(times):
            self.latency.labels(handler, "POST" if handler == "/chat" else "GET").observe(seconds)
            self.requests.labels(handler, "POST" if handler == "/chat" else "GET", status).inc()


def test_the_filter_is_registered():
    assert FilterModule().filters() == {"metrics_window": metrics_window}


def test_only_the_searches_between_the_reads_count():
    api = Api()
    api.searched(2.0, times=1000)  # a slow past: the process's totals are dominated by it
    before = api.page()
    api.searched(0.004, times=90)
    api.searched(0.02, times=10)
    out = metrics_window(api.page(), before, histogram=SEARCH, errors="aegis_vector_search_failures_total",
                         total="aegis_vector_searches_total")
    assert out["observations"] == 100 and out["histogram_found"] and out["counters_found"] and not out["reset"]
    # rank 95 of 100 lies in (0.01, 0.025], which holds the 10 slower searches: 0.01 + 0.015 * 5/10
    assert out["quantile_value"] == pytest.approx(0.0175)
    assert out["above_largest_bucket"] is False and out["largest_bucket"] == 2.5
    assert out["mean"] == pytest.approx((90 * 0.004 + 10 * 0.02) / 100)
    assert out["errors"] == 0 and out["total"] == 100 and out["error_ratio"] == 0.0
    # the same page twice: nothing happened in between
    idle = metrics_window(before, before, histogram=SEARCH, errors="aegis_vector_search_failures_total",
                          total="aegis_vector_searches_total")
    assert idle["observations"] == 0 and idle["quantile_value"] is None and idle["mean"] is None
    assert idle["error_ratio"] is None and idle["histogram_found"] and idle["counters_found"]


def test_a_quantile_beyond_the_largest_bucket_is_that_bound_and_says_so():
    api = Api()
    before = api.page()
    api.answered("/chat", 0.3, times=90)
    api.answered("/chat", 4.0, times=10)  # 4 s: only the +Inf bucket holds it
    out = metrics_window(api.page(), before, histogram='http_request_duration_seconds{handler="/chat"}')
    assert out["quantile_value"] == 1.0 and out["above_largest_bucket"] is True and out["largest_bucket"] == 1.0
    assert out["observations"] == 100 and out["mean"] == pytest.approx(0.67)


def test_selectors_choose_the_series_and_the_error_ratio():
    api = Api()
    api.answered("/chat", 0.2, status="5xx", times=50)  # before the window
    before = api.page()
    api.answered("/chat", 0.2, times=97)
    api.answered("/chat", 0.2, status="5xx", times=3)
    api.answered("/ready", 0.05, status="5xx", times=400)  # a host out of service answers /ready 503
    api.answered("/documents", 0.9, times=5)
    out = metrics_window(api.page(), before, histogram='http_request_duration_seconds{handler!~"/health|/ready"}',
                         errors='http_requests_total{status=~"5..", handler!~"/health|/ready"}',
                         total='http_requests_total{handler!~"/health|/ready"}')
    assert (out["errors"], out["total"]) == (3, 105) and out["error_ratio"] == pytest.approx(3 / 105)
    assert out["observations"] == 105
    chat_only = metrics_window(api.page(), before, errors='http_requests_total{status="5xx",handler="/chat"}',
                               total='http_requests_total{handler="/chat", method="POST"}')
    assert (chat_only["errors"], chat_only["total"]) == (3, 100)
    everything = metrics_window(api.page(), before, errors='http_requests_total{status=~"5.."}',
                                total="http_requests_total")
    assert (everything["errors"], everything["total"]) == (403, 505)
    # regular expressions are anchored as in PromQL: "5" alone matches no status
    assert metrics_window(api.page(), before, errors='http_requests_total{status=~"5"}',
                          total="http_requests_total")["errors"] == 0


def test_a_restart_between_the_reads_counts_the_new_process_only():
    old = Api()
    old.searched(0.003, times=500, failed=False)
    old.searched(0.003, times=20, failed=True)
    before = old.page()
    new = Api()  # the API restarted: its counters start again from zero
    new.searched(0.2, times=40)
    new.searched(0.2, times=2, failed=True)
    out = metrics_window(new.page(), before, histogram=SEARCH, errors="aegis_vector_search_failures_total",
                         total="aegis_vector_searches_total")
    assert out["reset"] is True
    assert out["observations"] == 42 and (out["errors"], out["total"]) == (2, 42)
    assert 0.1 < out["quantile_value"] <= 0.25


def test_a_series_born_between_the_reads_counts_from_zero():
    api = Api()
    api.answered("/chat", 0.2, times=10)
    before = api.page()  # no 5xx series yet: prometheus_client makes it on its first increment
    assert 'status="5xx"' not in before
    api.answered("/chat", 0.2, status="5xx", times=5)
    api.answered("/chat", 0.2, times=5)
    out = metrics_window(api.page(), before, errors='http_requests_total{status=~"5.."}', total="http_requests_total")
    assert (out["errors"], out["total"], out["error_ratio"]) == (5, 10, 0.5) and not out["reset"]


def test_pages_without_the_series():
    out = metrics_window("", "", histogram=SEARCH, errors="a_total", total="b_total")
    assert out["histogram_found"] is False and out["counters_found"] is False
    assert out["observations"] == 0 and out["quantile_value"] is None and out["error_ratio"] is None
    # a JSON answer (not a /metrics page) is read as a page without samples, not an error
    assert metrics_window('{"status": "ok"}', "{}", histogram=SEARCH)["histogram_found"] is False


def test_hand_written_pages_escapes_exemplars_timestamps_and_nan():
    before = "\n".join([
        "# HELP x_seconds a histogram",
        "# TYPE x_seconds histogram",
        'x_seconds_bucket{path="/a\\"b,c}",le="0.5"} 1',
        'x_seconds_bucket{path="/a\\"b,c}",le="1"} 1',
        'x_seconds_bucket{path="/a\\"b,c}",le="+Inf"} 1 1712345678000',
        'x_seconds_count{path="/a\\"b,c}"} 1',
        'x_seconds_sum{path="/a\\"b,c}"} 0.25',
        "garbage line without a value",
        "y_total NaN",
    ])
    after = "\n".join([
        'x_seconds_bucket{path="/a\\"b,c}",le="0.5"} 3 # {trace_id="abc"} 0.4 1712345679.1',
        'x_seconds_bucket{path="/a\\"b,c}",le="1.0"} 5',
        'x_seconds_bucket{path="/a\\"b,c}",le="+Inf"} 5',
        'x_seconds_count{path="/a\\"b,c}"} 5',
        'x_seconds_sum{path="/a\\"b,c}"} 2.25',
        "# EOF",
    ])
    out = metrics_window(after, before, histogram='x_seconds{path="/a\\"b,c}"}')
    assert out["observations"] == 4 and out["sum"] == pytest.approx(2.0) and out["mean"] == pytest.approx(0.5)
    # le="1" and le="1.0" are one bound; rank 3.8 of 4: in (0.5, 1] holding 2 of them: 0.5 + 0.5 * 1.8/2
    assert out["quantile_value"] == pytest.approx(0.95)
    assert metrics_window(after, before, histogram="x_seconds", quantile=0.5)["quantile_value"] == pytest.approx(0.5)
    assert metrics_window(after, before, histogram='x_seconds{path="/other"}')["histogram_found"] is False


@pytest.mark.parametrize("kwargs,message", [
    ({"histogram": "not a selector{"}, "not a selector"),
    ({"histogram": 'x{le=~"("}'}, "bad regular expression"),
    ({"histogram": "x{le=0.5}"}, "cannot read the selector"),
    ({"errors": "a_total"}, "errors and total go together"),
    ({"histogram": "x", "quantile": 1.5}, "within [0, 1]"),
    ({"histogram": "x", "quantile": "high"}, "must be a number"),
])
def test_mistakes_are_named(kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message.replace("[", r"\[").replace("]", r"\]")):
        metrics_window("", "", **kwargs)
    with pytest.raises(AnsibleFilterError, match="text of a /metrics page"):
        metrics_window(None, "")


BUCKET_SETS = [
    [(0.1, 10), (0.5, 80), (1.0, 95), (2.5, 100), (float("inf"), 100)],
    [(0.001, 0), (0.01, 3), (0.1, 3), (1.0, 50), (float("inf"), 51)],
    [(0.1, 0), (0.5, 0), (1.0, 0), (float("inf"), 7)],
    [(0.25, 1), (0.5, 2), (1.0, 3), (float("inf"), 3)],
    [(0.05, 17), (0.1, 17), (3.0, 20), (10.0, 40), (float("inf"), 40)],
]


def test_the_quantile_equals_prometheus_histogram_quantile(promtool, tmp_path):
    """Each bucket set as a promtool rule unit test whose expected value is bucket_quantile's: promtool passes only
    when Prometheus' histogram_quantile computes the same."""
    tests = []
    for i, buckets in enumerate(BUCKET_SETS):
        series = [{"series": f'h{i}_bucket{{le="{"+Inf" if b == float("inf") else b}"}}', "values": f"{n}x2"}
                  for b, n in buckets]
        for q in (0.5, 0.9, 0.95, 0.99):
            value, _ = bucket_quantile(q, buckets)
            tests.append({"interval": "1m", "input_series": series, "promql_expr_test": [
                {"expr": f"histogram_quantile({q}, sum by (le) (h{i}_bucket))", "eval_time": "1m",
                 "exp_samples": [{"labels": "{}", "value": value}]}]})
    (tmp_path / "quantile.test.yml").write_text(yaml.safe_dump({"rule_files": [], "tests": tests}))
    run = subprocess.run([promtool, "test", "rules", "quantile.test.yml"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
