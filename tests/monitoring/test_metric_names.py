"""Every metric name the rules and dashboards read is exported by something that really runs.

Names come from a PromQL tokenizer (promql_names.py); recorded names (`aegis:...`) resolve to their own
expressions. The exporters are run here: the Aegis API in-process (scraped at /metrics after an ingest and a
chat), Debian's node_exporter (with the GPU textfile collector's output in its textfile directory) and
blackbox exporter (probing a loopback HTTP server). Qdrant is not run: its names are the documented list below.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
import yaml
from ansible_collections.aegis.rag.tests.unit.helpers.fake_nvidia_smi import fake_nvidia_smi
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.stack import Process, http_ready

from .conftest import DASHBOARDS, FILES, RULE_FILES
from .promql_names import resolve, selectors

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
BLACKBOX_EXPORTER = "/usr/bin/prometheus-blackbox-exporter"

# Qdrant's own names (Qdrant is not run here), each with where upstream defines it
QDRANT_NAMES = {
    "rest_responses_duration_seconds_bucket": "/work/shared/reference/upstream-api-facts.md (Qdrant REST latency)",
    "memory_resident_bytes": "qdrant/qdrant v1.19.0 src/common/metrics.rs (memory telemetry: resident bytes)",
}
# series Prometheus itself writes for every scrape target (Prometheus docs: "Jobs and instances")
PROMETHEUS_NAMES = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}
# which exporter a job of the scrape contract (docs/operations/monitoring.md) scrapes
JOB_SOURCE = {"aegis-api": "api", "node": "node", "qdrant": "qdrant", "blackbox-ollama": "blackbox",
              "blackbox-lb": "blackbox"}


def recorded_rules() -> dict[str, str]:
    return {r["record"]: r["expr"] for f in RULE_FILES for g in yaml.safe_load(f.read_text())["groups"]
            for r in g["rules"] if "record" in r}


def rule_exprs() -> list[str]:
    return [r["expr"] for f in RULE_FILES for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]]


def panel_exprs() -> list[str]:
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            out += [t["expr"] for t in panel.get("targets", [])]
    return out


def used_names(exprs: list[str]) -> set[tuple[str, str | None]]:
    names: set[tuple[str, str | None]] = set()
    for expr in exprs:
        names |= resolve(selectors(expr), recorded_rules())
    return names


def sample_names(text: str) -> set[str]:
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def _run(name: str, argv, ready, tmp: Path) -> Process:
    if not Path(argv(0)[0]).exists():
        pytest.skip(f"{argv(0)[0]} is not installed (scripts/setup.sh --dev installs it)")
    return Process(name, argv, ready, lambda p: f"http://127.0.0.1:{p}", tmp / f"{name}.log",
                   die_with_parent=True).start()


# -- what the exporters export ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def api_names(local_embedder, tmp_path_factory) -> set[str]:
    from aegis_rag.api import create_app
    from aegis_rag.service import RagService
    from aegis_rag.settings import Settings

    # llm=ollama on a closed port: generation is attempted (and fails, degraded), so its series are real
    settings = Settings(data_dir=tmp_path_factory.mktemp("api"), llm="ollama", ollama_url="http://127.0.0.1:9")
    with TestClient(create_app(settings, RagService(settings, embedder=local_embedder)),
                    raise_server_exceptions=False) as client:
        r = client.post("/documents", files={"file": ("gpu.md", b"# GPU\n\nOllama runs on NVIDIA L4 GPUs.", "text/plain")})
        assert r.status_code == 200, r.text
        assert client.post("/chat", json={"question": "Which GPUs run Ollama?", "history": []}).status_code == 200
        return sample_names(client.get("/metrics").text)


@pytest.fixture(scope="module")
def node_names(tmp_path_factory) -> set[str]:
    tmp = tmp_path_factory.mktemp("node")
    textfiles = tmp / "textfile"
    textfiles.mkdir()
    collector = subprocess.run([sys.executable, str(FILES / "aegis_gpu_metrics.py"), "--output-dir", str(textfiles),
                                "--nvidia-smi", str(fake_nvidia_smi(tmp))], capture_output=True, text=True)
    assert collector.returncode == 0, collector.stderr
    node = _run("node-exporter", lambda p: [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{p}",
                                            f"--collector.textfile.directory={textfiles}"],
                lambda p: http_ready(f"http://127.0.0.1:{p}/metrics"), tmp)
    try:
        return sample_names(_get(f"{node.url}/metrics"))
    finally:
        node.stop()


@pytest.fixture(scope="module")
def blackbox_names(tmp_path_factory) -> set[str]:
    tmp = tmp_path_factory.mktemp("blackbox")
    config = tmp / "blackbox.yml"
    config.write_text(yaml.safe_dump({"modules": {"http_2xx": {"prober": "http", "timeout": "5s"}}}))
    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    blackbox = _run("blackbox-exporter", lambda p: [BLACKBOX_EXPORTER, f"--config.file={config}",
                                                    f"--web.listen-address=127.0.0.1:{p}"],
                    lambda p: http_ready(f"http://127.0.0.1:{p}/-/healthy"), tmp)
    try:
        probe = _get(f"{blackbox.url}/probe?module=http_2xx&target=http://127.0.0.1:{target.server_port}/")
        assert "probe_success 1" in probe, probe
        return sample_names(probe)
    finally:
        blackbox.stop()
        target.shutdown()
        target.server_close()


@pytest.fixture(scope="module")
def exported(api_names, node_names, blackbox_names) -> dict[str, set[str]]:
    return {"api": api_names, "node": node_names, "blackbox": blackbox_names, "qdrant": set(QDRANT_NAMES)}


def unexported(names: set[tuple[str, str | None]], exported: dict[str, set[str]]) -> set[tuple[str, str | None]]:
    """Names no exporter has; a selector with a job of the scrape contract must find it in that job's exporter."""
    everything = set().union(*exported.values())
    missing = set()
    for name, job in names:
        source = JOB_SOURCE.get(job) if job else None
        if job and not source:
            missing.add((name, job))  # a job the scrape configuration does not have
        elif name in PROMETHEUS_NAMES:
            continue
        elif name not in (exported[source] if source else everything):
            missing.add((name, job))
    return missing


# -- the checks --------------------------------------------------------------------------------------------
def test_every_name_the_rules_read_is_exported(exported):
    names = used_names(rule_exprs())
    assert {n for n, _ in names} >= {"http_requests_total", "node_memory_MemTotal_bytes", "probe_success",
                                     "aegis_gpu_memory_used_bytes", "memory_resident_bytes"}, "parser lost names"
    assert unexported(names, exported) == set()


def test_every_name_the_dashboards_read_is_exported(exported):
    if not DASHBOARDS:
        pytest.skip("no dashboards yet")
    assert unexported(used_names(panel_exprs()), exported) == set()


@pytest.mark.parametrize(("expr", "missing"), [
    # the manual's names that nothing exports
    ("histogram_quantile(0.95, sum by (le) (rate(qdrant_search_duration_seconds_bucket[5m]))) > 0.5",
     {("qdrant_search_duration_seconds_bucket", None)}),
    ('rate(ollama_generation_failures_total{job="aegis-api"}[5m]) > 0.02',
     {("ollama_generation_failures_total", "aegis-api")}),
    # a real name asked of the wrong job, a job the scrape contract lacks, a recorded name nobody records
    ('node_memory_MemTotal_bytes{job="aegis-api"}', {("node_memory_MemTotal_bytes", "aegis-api")}),
    ('up{job="ollama"} == 0', {("up", "ollama")}),
    ('up{job="qdrant"} == 0', set()),
    ('probe_success{job="ollama"} == 0', {("probe_success", "ollama")}),
    ("aegis:no_such:ratio > 1", {("aegis:no_such:ratio", None)}),
])
def test_unknown_names_are_reported(exported, expr, missing):
    assert unexported(used_names([expr]), exported) == missing


def test_gpu_textfile_names_reach_node_exporter(node_names):
    assert {"aegis_gpu_memory_used_bytes", "aegis_gpu_memory_total_bytes", "aegis_gpu_utilization_ratio",
            "aegis_gpu_temperature_celsius"} <= node_names

