"""aegis.rag.monitoring on the fleet's monitoring host. molecule/default/monitoring.yml runs first, as an operator
would: every target up, the rules loaded, a rule promtool rejects and a receiver amtool rejects refused with nothing
changed, a valid extra rule reloaded and removed, the GPU collector following a stand-in nvidia-smi. Then testinfra
over nsenter: services, file modes, the scrape targets and rules Prometheus reports through its HTTP API.
node_exporter on every host: test_services.py."""

import json
import time

import pytest

from tests.fleet.conftest import FLEET_TEST, GROUPS, SCENARIO

pytestmark = FLEET_TEST
testinfra_hosts = [f"nsenter://{name}" for name, groups in GROUPS.items() if "monitoring" in groups]

PROMETHEUS = "http://127.0.0.1:9090"


@pytest.fixture(scope="module", autouse=True)
def monitoring_played(fleet):
    fleet.playbook(SCENARIO / "monitoring.yml")


def get_json(host, url):
    script = "import json,sys,urllib.request as u; print(u.urlopen(sys.argv[1], timeout=10).read().decode())"
    return json.loads(host.check_output(f"python3 -c '{script}' '{url}'"))


def wait_for(check, timeout_s=60, interval_s=2):
    """The value of check() once truthy; the last value after timeout_s (the assertion shows it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


def test_listening_addresses(host):
    listening = {str(s) for s in host.socket.get_listening_sockets() if s.startswith("tcp")}
    assert {"tcp://127.0.0.1:9093", "tcp://127.0.0.1:9115"} <= listening
    assert {s for s in listening if s.endswith(":9094")} == set()  # no Alertmanager cluster port
    assert any(s.endswith(":9090") and "127.0.0.1" not in s for s in listening)
    assert any(s.endswith(":9100") for s in listening)


@pytest.mark.parametrize("path", ["prometheus.yml", "alertmanager.yml", "blackbox.yml"])
def test_configurations_are_readable_by_root_and_prometheus_only(host, path):
    config = host.file(f"/etc/prometheus/{path}")
    assert (config.user, config.group, config.mode) == ("root", "prometheus", 0o640)


def test_configurations_and_rules_are_valid(host):
    assert host.run("promtool check config /etc/prometheus/prometheus.yml").rc == 0
    assert host.run("amtool check-config /etc/prometheus/alertmanager.yml").rc == 0
    rules = host.run("promtool check rules /etc/prometheus/rules/aegis-recording.yml /etc/prometheus/rules/aegis-alerts.yml")
    assert rules.rc == 0, rules.stdout + rules.stderr


def test_no_extra_rules_are_left_from_the_side_effect(host):
    assert not host.file("/etc/prometheus/rules/aegis-extra.yml").exists


def test_node_exporter_reads_debians_textfile_directory(host):
    assert "--collector.textfile.directory=/var/lib/prometheus/node-exporter" in host.file(
        "/etc/default/prometheus-node-exporter").content_string


def test_no_gpu_collector_without_nvidia_smi(host):
    assert not host.file("/etc/systemd/system/aegis-gpu-metrics.timer").exists


def test_every_target_is_up(host):
    def targets():
        active = get_json(host, f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"]
        return active if all(t["health"] == "up" for t in active) else None

    up = wait_for(targets)
    assert up, get_json(host, f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"]
    assert {t["labels"]["job"] for t in up} == {
        "prometheus", "alertmanager", "node", "aegis-api", "qdrant", "blackbox-ollama", "blackbox-lb"}


def test_node_targets_carry_each_hosts_groups(host):
    active = get_json(host, f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"]
    labels = sorted(t["labels"]["groups"] for t in active if t["labels"]["job"] == "node")
    assert labels == sorted("," + ",".join(sorted(groups)) + "," for groups in GROUPS.values())


def test_the_aegis_rule_groups_are_loaded(host):
    groups = get_json(host, f"{PROMETHEUS}/api/v1/rules")["data"]["groups"]
    files = {g["file"] for g in groups}
    assert files == {"/etc/prometheus/rules/aegis-recording.yml", "/etc/prometheus/rules/aegis-alerts.yml"}
    alerts = {r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting"}
    assert {"AegisServiceDown"} <= alerts
    assert all(r["health"] != "err" for g in groups for r in g["rules"])


def test_prometheus_sends_alerts_to_the_local_alertmanager(host):
    managers = wait_for(lambda: get_json(host, f"{PROMETHEUS}/api/v1/alertmanagers")["data"]["activeAlertmanagers"])
    assert [m["url"] for m in managers] == ["http://127.0.0.1:9093/api/v2/alerts"]
