"""The filter aegis.rag.rule_intervals (the monitoring role's monitoring_alert_for and monitoring_rate_window): the
shipped rule files with a test fleet's durations stay valid, keep their comments and other ranges, and a repaired
fault's generation alert resolves within the short window while the shipped 5-minute one still fires."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.aegis.rag.plugins.filter.rule_intervals import FilterModule, rule_intervals

from .conftest import RULE_FILES

ALERTS = next(f for f in RULE_FILES if f.name == "aegis-alerts.yml")
RECORDING = next(f for f in RULE_FILES if f.name == "aegis-recording.yml")


def rules(text: str) -> list[dict]:
    return [r for g in yaml.safe_load(text)["groups"] for r in g["rules"]]


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_a_test_fleet_s_durations_replace_every_for_and_five_minute_range(promtool, tmp_path, path):
    shipped = path.read_text()
    short = rule_intervals(shipped, "10s", "1m")
    # an alert without for: (fires at once) stays so
    assert [r.get("for") for r in rules(short) if "alert" in r] == \
        [r.get("for") and "10s" for r in rules(shipped) if "alert" in r]
    assert "[5m]" not in short and short.count("[1m]") == shipped.count("[5m]") + shipped.count("[1m]")
    for other in ("[10m]", "[1h]"):
        assert short.count(other) == shipped.count(other)
    assert [line for line in short.splitlines() if line.lstrip().startswith("#")] == \
        [line for line in shipped.splitlines() if line.lstrip().startswith("#")]
    (tmp_path / path.name).write_text(short)
    run = subprocess.run([promtool, "check", "rules", str(tmp_path / path.name)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_empty_values_keep_the_file_as_it_is():
    shipped = ALERTS.read_text()
    assert rule_intervals(shipped) == shipped and rule_intervals(shipped, "", None) == shipped
    assert FilterModule().filters()["rule_intervals"] is rule_intervals


@pytest.mark.parametrize("kwargs", [{"alert_for": "10 s"}, {"rate_window": "5"}, {"rate_window": "1m]"}])
def test_a_duration_prometheus_would_not_read_is_refused(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(AnsibleFilterError, match=f"rule_intervals: {name} must be a Prometheus duration"):
        rule_intervals(ALERTS.read_text(), **kwargs)


def test_text_is_required():
    with pytest.raises(AnsibleFilterError, match="expects the rule file's text, got dict"):
        rule_intervals({"groups": []})


# Generations every 5 s; all of them fail for the first 2 minutes (a deleted model), then none. Four minutes in, two
# minutes after the repair: the 1-minute window has let the failures go, the shipped 5-minute one has not.
UNIT_TEST = """
rule_files: [{recording}, {alerts}]
evaluation_interval: 5s
tests:
  - interval: 5s
    input_series:
      - series: 'aegis_generations_total{{job="aegis-api"}}'
        values: '0+1x60'
      - series: 'aegis_generation_failures_total{{job="aegis-api"}}'
        values: '0+1x24 24x36'
    promql_expr_test:
      - expr: &firing count(ALERTS{{alertname="OllamaModelGenerationFailure", alertstate="firing"}}) or vector(0)
        eval_time: 1m
        exp_samples: [{{labels: '{{}}', value: 1}}]
      - expr: *firing
        eval_time: 4m
        exp_samples: [{{labels: '{{}}', value: {at_4m}}}]
"""


@pytest.mark.parametrize("window, fires_at_4m", [("1m", False), ("", True)], ids=["1m", "shipped-5m"])
def test_a_repaired_fault_s_alert_resolves_after_the_window(promtool, tmp_path, window, fires_at_4m):
    for path in (ALERTS, RECORDING):
        (tmp_path / path.name).write_text(rule_intervals(path.read_text(), "10s", window))
    (tmp_path / "t.yml").write_text(UNIT_TEST.format(recording=RECORDING.name, alerts=ALERTS.name,
                                                     at_4m=int(fires_at_4m)))
    run = subprocess.run([promtool, "test", "rules", "t.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr
