"""The alert and recording rules: valid for promtool, and every alert proven by promtool unit tests."""

import subprocess

import pytest
import yaml

from .conftest import FILES, RULE_FILES

KPI_ROWS = 16


def _alerts() -> list[dict]:
    return [r for f in RULE_FILES for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"] if "alert" in r]


def test_rule_files_pass_promtool_check(promtool):
    run = subprocess.run([promtool, "check", "rules", *map(str, RULE_FILES)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("test_file", ["aegis-alerts.test.yml", "aegis-throughput.test.yml"])
def test_promtool_unit_tests_pass(promtool, test_file):
    run = subprocess.run([promtool, "test", "rules", test_file], cwd=FILES / "tests", capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr


def test_every_alert_has_a_firing_and_a_silent_case():
    fired, silent = set(), set()
    for f in (FILES / "tests").glob("*.test.yml"):
        for group in yaml.safe_load(f.read_text())["tests"]:
            for t in group.get("alert_rule_test", []):
                (fired if t["exp_alerts"] else silent).add(t["alertname"])
    names = {a["alert"] for a in _alerts()}
    assert names - fired == set(), "alerts no test makes fire"
    assert names - silent == set(), "alerts no test proves silent"


def test_every_kpi_row_has_a_warning_and_a_critical():
    by_kpi: dict[str, set[str]] = {}
    for a in _alerts():
        by_kpi.setdefault(a["labels"]["kpi"], set()).add(a["labels"]["severity"])
    rows = {k: v for k, v in by_kpi.items() if k not in ("service_up", "scrape_target_up")}
    assert len(rows) == KPI_ROWS
    assert all(v == {"warning", "critical"} for v in rows.values()), rows


def test_labels_and_runbooks():
    for a in _alerts():
        labels, notes = a["labels"], a["annotations"]
        assert labels["severity"] in ("warning", "critical") and labels["priority"] in ("P0", "P1", "P2", "P3"), a
        assert labels["service"] and notes["summary"] and notes["runbook"].startswith("playbooks/"), a


def test_the_manuals_alert_names_are_kept():
    names = {a["alert"] for a in _alerts()}
    assert {"AegisAPIHighLatency", "AegisAPIHighErrorRate", "QdrantHighSearchLatency", "OllamaModelGenerationFailure",
            "AegisServiceDown"} <= names
