"""The Alertmanager template: valid for amtool, routes by priority (severity as fallback), and inhibits as
documented (checked on a real Alertmanager on loopback)."""

import socket
import subprocess
import time
from pathlib import Path

import httpx
import jinja2
import pytest
import yaml

from .conftest import ROLE

VARS = {**yaml.safe_load((ROLE / "defaults/main.yml").read_text()), "ansible_managed": "test",
        "monitoring_alertmanager_pager_url": "http://127.0.0.1:9/pager",
        "monitoring_alertmanager_chat_webhook_url": "http://127.0.0.1:9/chat",
        "monitoring_alertmanager_email_to": "oncall@example.org",
        "monitoring_alertmanager_smtp_smarthost": "127.0.0.1:25"}


def render(**overrides) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=False)
    env.filters["bool"] = lambda v: v in (True, "yes", "true", 1)
    return env.get_template("alertmanager.yml.j2").render(**{**VARS, **overrides})


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "alertmanager.yml"
    path.write_text(render())
    return path


@pytest.mark.parametrize("overrides", [{}, {"monitoring_alertmanager_pager_url": "",
                                            "monitoring_alertmanager_chat_webhook_url": "",
                                            "monitoring_alertmanager_smtp_smarthost": ""}],
                         ids=["every channel", "no channel filled yet"])
def test_config_passes_amtool_check(amtool, tmp_path, overrides):
    path = tmp_path / "alertmanager.yml"
    path.write_text(render(**overrides))
    run = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_receivers_get_the_channels_of_their_priority(config):
    receivers = {r["name"]: r for r in yaml.safe_load(config.read_text())["receivers"]}
    assert "webhook_configs" in receivers["P0"] and "slack_configs" in receivers["P0"]
    assert "webhook_configs" not in receivers["P2"] and "email_configs" in receivers["P2"]
    assert set(receivers["P3"]) == {"name", "email_configs"}


@pytest.mark.parametrize("labels, receiver", [
    ({"priority": "P0", "severity": "critical"}, "P0"),
    ({"priority": "P1", "severity": "critical"}, "P1"),
    ({"priority": "P2", "severity": "warning"}, "P2"),
    ({"priority": "P3", "severity": "warning"}, "P3"),
    ({"severity": "critical"}, "P1"),
    ({"severity": "warning"}, "P2"),
    ({"alertname": "Unlabelled"}, "P3"),
])
def test_routes(amtool, config, labels, receiver):
    run = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config}",
                          f"--verify.receivers={receiver}", *(f"{k}={v}" for k, v in labels.items())],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def alertmanager(config, tmp_path):
    binary = Path("/usr/bin/prometheus-alertmanager")
    if not binary.exists():
        pytest.skip("prometheus-alertmanager is not installed (scripts/setup.sh --dev)")
    port = _free_port()
    proc = subprocess.Popen([str(binary), f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("Alertmanager did not become ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _alert(name: str, **labels: str) -> dict:
    return {"labels": {"alertname": name, **labels}, "annotations": {"summary": name}}


def _inhibited(url: str, names: list[str]) -> dict[str, bool]:
    for _ in range(50):  # inhibition is computed when alerts are listed; give the source a moment
        got = {a["labels"]["alertname"]: bool(a["status"]["inhibitedBy"])
               for a in httpx.get(url + "/api/v2/alerts", timeout=5).json()}
        if set(names) <= set(got) and any(got.values()):
            return got
        time.sleep(0.1)
    return got


def test_a_service_down_silences_its_own_latency_and_errors_only(alertmanager):
    alerts = [
        _alert("AegisServiceDown", service="qdrant", severity="critical", priority="P1", category="down",
               kpi="service_up"),
        _alert("QdrantHighSearchLatency", service="qdrant", severity="critical", priority="P1", category="latency",
               kpi="search_latency_p95"),
        _alert("QdrantQuerySuccessRateCritical", service="qdrant", severity="critical", priority="P1",
               category="errors", kpi="qdrant_query_success"),
        _alert("QdrantDiskUsageHigh", service="qdrant", severity="warning", priority="P2", category="resources",
               kpi="qdrant_disk", instance="q1"),
        _alert("AegisAPIHighLatency", service="aegis-api", severity="critical", priority="P1", category="latency",
               kpi="api_latency_p95"),
    ]
    httpx.post(alertmanager + "/api/v2/alerts", json=alerts, timeout=5).raise_for_status()
    got = _inhibited(alertmanager, [a["labels"]["alertname"] for a in alerts])
    assert got == {"AegisServiceDown": False, "QdrantHighSearchLatency": True, "QdrantQuerySuccessRateCritical": True,
                   "QdrantDiskUsageHigh": False, "AegisAPIHighLatency": False}


def test_a_critical_silences_the_warning_of_its_kpi(alertmanager):
    alerts = [
        _alert("GPUMemoryCritical", service="ollama", severity="critical", priority="P1", kpi="gpu_memory",
               instance="gpu-1:9100", gpu="0", category="resources"),
        _alert("GPUMemoryHigh", service="ollama", severity="warning", priority="P2", kpi="gpu_memory",
               instance="gpu-1:9100", gpu="0", category="resources"),
        _alert("GPUMemoryHigh", service="ollama", severity="warning", priority="P2", kpi="gpu_memory",
               instance="gpu-1:9100", gpu="1", category="resources"),
    ]
    httpx.post(alertmanager + "/api/v2/alerts", json=alerts, timeout=5).raise_for_status()
    for _ in range(50):
        got = {(a["labels"]["alertname"], a["labels"]["gpu"]): bool(a["status"]["inhibitedBy"])
               for a in httpx.get(alertmanager + "/api/v2/alerts", timeout=5).json()}
        if len(got) == 3 and any(got.values()):
            break
        time.sleep(0.1)
    assert got == {("GPUMemoryCritical", "0"): False, ("GPUMemoryHigh", "0"): True, ("GPUMemoryHigh", "1"): False}
