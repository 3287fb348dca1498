"""The monitoring role's self-healing receiver (monitoring_remediation_*): off by default, leaving the Alertmanager
configuration exactly as without it; when set, valid for amtool, the rulebook's alerts routed to the remediation
service and, with `continue: true`, still to the priority receivers (checked by amtool and by a real Alertmanager on
loopback delivering to both webhooks, the bearer token on the service's only); the role's preflight refuses what
Alertmanager would not take."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from .test_alertmanager import VARS, render

VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).parents[2]
URL = "http://127.0.0.1:5050/alerts"
TOKEN = "remediation-token"
ON = {"monitoring_remediation_url": URL, "monitoring_remediation_token": TOKEN}
HEALED = ["AegisServiceDown", "AegisAPIHighErrorRate", "OllamaModelGenerationFailure", "QdrantQuerySuccessRateCritical"]


def without_remediation(config: dict) -> dict:
    config = json.loads(json.dumps(config))
    config["route"]["routes"] = [r for r in config["route"]["routes"] if r["receiver"] != "remediation"]
    config["receivers"] = [r for r in config["receivers"] if r["name"] != "remediation"]
    return config


def test_off_by_default_and_the_configuration_is_the_same_as_without_it():
    off, on = render(), render(**ON)
    assert "remediation" not in off
    assert yaml.safe_load(off) == without_remediation(yaml.safe_load(on))
    assert yaml.safe_load(on) != yaml.safe_load(off)


def test_the_route_comes_first_continues_and_groups_per_instance():
    config = yaml.safe_load(render(**ON))
    first = config["route"]["routes"][0]
    assert first == {"receiver": "remediation", "matchers": [f'alertname=~"{"|".join(HEALED)}"'],
                     "group_by": ["alertname", "service", "instance"], "group_wait": "10s", "group_interval": "1m",
                     "repeat_interval": "15m", "continue": True}
    assert all("continue" not in route for route in config["route"]["routes"][1:])
    (receiver,) = [r for r in config["receivers"] if r["name"] == "remediation"]
    assert receiver["webhook_configs"] == [{"url": URL, "send_resolved": False,
                                            "http_config": {"authorization": {"credentials": TOKEN}}}]
    no_token = yaml.safe_load(render(monitoring_remediation_url=URL))
    (receiver,) = [r for r in no_token["receivers"] if r["name"] == "remediation"]
    assert receiver["webhook_configs"] == [{"url": URL, "send_resolved": False}]


@pytest.mark.parametrize("overrides", [ON, {"monitoring_remediation_url": URL},
                                       {**ON, "monitoring_alertmanager_pager_url": "",
                                        "monitoring_alertmanager_chat_webhook_url": "",
                                        "monitoring_alertmanager_smtp_smarthost": ""}],
                         ids=["with token", "without token", "no people's channel filled yet"])
def test_config_with_the_receiver_passes_amtool_check(amtool, tmp_path, overrides):
    path = tmp_path / "alertmanager.yml"
    path.write_text(render(**overrides))
    run = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("labels, receivers", [
    ({"alertname": "AegisServiceDown", "priority": "P1", "service": "aegis-api", "instance": "10.0.0.11:8910"},
     "remediation,P1"),
    ({"alertname": "AegisServiceDown", "priority": "P0", "service": "aegis-api"}, "remediation,P0"),
    ({"alertname": "OllamaModelGenerationFailure", "priority": "P1", "service": "ollama"}, "remediation,P1"),
    ({"alertname": "QdrantQuerySuccessRateCritical", "severity": "critical"}, "remediation,P1"),
    ({"alertname": "AegisAPIHighErrorRate", "priority": "P1"}, "remediation,P1"),
    ({"alertname": "AegisAPIHighLatency", "priority": "P1", "service": "aegis-api"}, "P1"),
    ({"alertname": "AegisServiceDownSoon", "priority": "P2"}, "P2"),
    ({"alertname": "Unlabelled"}, "P3"),
])
def test_the_rulebooks_alerts_reach_the_service_and_still_the_people(amtool, tmp_path, labels, receivers):
    path = tmp_path / "alertmanager.yml"
    path.write_text(render(**ON))
    run = subprocess.run([amtool, "config", "routes", "test", f"--config.file={path}",
                          f"--verify.receivers={receivers}", *(f"{k}={v}" for k, v in labels.items())],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


# -- a real Alertmanager delivers to both ------------------------------------------------------------------------

class Capture(BaseHTTPRequestHandler):
    received: list[tuple[str, str | None, dict]] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Capture.received.append((self.path, self.headers.get("Authorization"), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhooks():
    Capture.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_a_real_alertmanager_sends_the_alert_to_the_service_with_the_token_and_to_the_pager(tmp_path, webhooks):
    binary = Path("/usr/bin/prometheus-alertmanager")
    if not binary.exists():
        pytest.skip("prometheus-alertmanager is not installed (scripts/setup.sh --dev)")
    timing = {**VARS["monitoring_alertmanager_timing"], "P1": {"group_wait": "1s", "repeat_interval": "1h"}}
    config = tmp_path / "alertmanager.yml"
    config.write_text(render(monitoring_remediation_url=f"{webhooks}/alerts", monitoring_remediation_token=TOKEN,
                             monitoring_remediation_group_wait="1s", monitoring_alertmanager_timing=timing,
                             monitoring_alertmanager_pager_url=f"{webhooks}/pager"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(binary), f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "Alertmanager did not become ready"
            time.sleep(0.1)
        alerts = [{"labels": {"alertname": "AegisServiceDown", "service": "aegis-api", "priority": "P1",
                              "severity": "critical", "instance": "10.0.0.11:8910"}},
                  {"labels": {"alertname": "AegisAPIHighLatency", "service": "aegis-api", "priority": "P1",
                              "severity": "critical"}}]
        httpx.post(url + "/api/v2/alerts", json=alerts, timeout=5).raise_for_status()
        deadline = time.monotonic() + 30
        while {path for path, _, _ in Capture.received} != {"/alerts", "/pager"} or len(Capture.received) < 3:
            assert time.monotonic() < deadline, f"deliveries: {Capture.received}"
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(10)
    service = [(auth, body) for path, auth, body in Capture.received if path == "/alerts"]
    pager = [(auth, body) for path, auth, body in Capture.received if path == "/pager"]
    assert [auth for auth, _ in service] == [f"Bearer {TOKEN}"]
    assert [a["labels"]["alertname"] for _, body in service for a in body["alerts"]] == ["AegisServiceDown"]
    assert service[0][1]["receiver"] == "remediation" and service[0][1]["alerts"][0]["status"] == "firing"
    assert all(auth is None for auth, _ in pager)
    assert sorted(a["labels"]["alertname"] for _, body in pager for a in body["alerts"]) == [
        "AegisAPIHighLatency", "AegisServiceDown"]


# -- the role's preflight --------------------------------------------------------------------------------------

PREFLIGHT = """\
- name: The monitoring role's preflight
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Preflight
      ansible.builtin.include_role:
        name: aegis.rag.monitoring
        tasks_from: preflight
"""


def preflight(tmp_path: Path, **variables) -> subprocess.CompletedProcess:
    play = tmp_path / "preflight.yml"
    play.write_text(PREFLIGHT)
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps(variables))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / ".ansible-local"), PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play),
                           "-e", f"@{extra}", "-e", f"ansible_python_interpreter={VENV_BIN / 'python'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_the_preflight_accepts_the_receiver_and_its_absence(tmp_path):
    for variables in ({}, ON):
        proc = preflight(tmp_path, **variables)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("overrides", [
    {"monitoring_remediation_url": "127.0.0.1:5050/alerts"},
    {"monitoring_remediation_alerts": []},
    {"monitoring_remediation_alerts": ["Aegis Service Down"]},
    {"monitoring_remediation_token": 'to"ken'},
    {"monitoring_remediation_repeat_interval": "15 minutes"},
], ids=["url without scheme", "no alert", "bad alert name", "bad token", "bad duration"])
def test_the_preflight_refuses_what_alertmanager_would_not_take(tmp_path, overrides):
    proc = preflight(tmp_path, **{**ON, **overrides})
    assert proc.returncode != 0
    assert "aegis.rag.monitoring's self-healing receiver needs" in " ".join(proc.stdout.split()), proc.stdout[-4000:]
