"""The Grafana dashboards: one per KPI table of the manual, a panel per KPI with the target and critical
thresholds drawn (the alerts' own numbers), every query valid PromQL. test_metric_names.py proves their names."""

import json
import re
import subprocess

import pytest
import yaml

from .conftest import DASHBOARDS, FILES, RULE_FILES
from .test_metric_names import panel_exprs

COMPARISON = re.compile(r"(?P<lhs>.+?) [<>] (?P<value>[0-9.]+)")
KPI_ROWS = {"aegis-application.json": 6, "aegis-vector-database.json": 5, "aegis-language-model.json": 5}


def panels() -> list[dict]:
    return [p for path in DASHBOARDS for p in json.loads(path.read_text())["panels"]]


def alert_thresholds() -> dict[str, set[float]]:
    """`<expr> > 2` style alerts: the thresholds each left-hand expression is compared with."""
    out: dict[str, set[float]] = {}
    for f in RULE_FILES:
        for group in yaml.safe_load(f.read_text())["groups"]:
            for rule in group["rules"]:
                match = COMPARISON.fullmatch(rule["expr"].strip()) if "alert" in rule else None
                if match:
                    out.setdefault(match["lhs"], set()).add(float(match["value"]))
    return out


def promtool_check(promtool, tmp_path, exprs: list[str]) -> subprocess.CompletedProcess:
    rules = [{"record": f"dashboard:panel_{n}:check", "expr": e} for n, e in enumerate(exprs)]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-panels", "rules": rules}]}))
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)


def test_one_dashboard_per_kpi_table_with_a_panel_per_row():
    assert {p.name: len(json.loads(p.read_text())["panels"]) for p in DASHBOARDS} == KPI_ROWS
    assert len({p["title"] for p in panels()}) == sum(KPI_ROWS.values())


def test_every_panel_draws_its_target_and_critical_thresholds():
    for panel in panels():
        defaults = panel["fieldConfig"]["defaults"]
        colors = [s["color"] for s in defaults["thresholds"]["steps"]]
        assert {"green", "orange", "red"} <= set(colors), panel["title"]
        assert defaults["custom"]["thresholdsStyle"]["mode"] == "line+area", panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def test_panel_thresholds_are_the_alerts_thresholds():
    alerts = alert_thresholds()
    matched = 0
    for panel in panels():
        expr = panel["targets"][0]["expr"]
        if expr in alerts:
            matched += 1
            steps = {s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]} - {None}
            assert steps == alerts[expr], panel["title"]
    assert matched == len(panels()) - 2  # all but load time and GPU utilisation, whose alerts read other forms


def test_every_panel_query_parses(promtool, tmp_path):
    exprs = panel_exprs()
    assert len(exprs) == len(panels())
    run = promtool_check(promtool, tmp_path, exprs)
    assert run.returncode == 0, run.stdout + run.stderr


def test_promtool_rejects_a_broken_panel_query(promtool, tmp_path):
    run = promtool_check(promtool, tmp_path, ["sum by (le) (rate(http_requests_total[5m])"])
    assert run.returncode != 0


@pytest.mark.parametrize("provisioning", ["datasource.yml", "dashboards.yml"])
def test_provisioning_matches_the_dashboards(provisioning):
    conf = yaml.safe_load((FILES / "grafana" / provisioning).read_text())
    uids = {t["datasource"]["uid"] for p in panels() for t in p["targets"]}
    if provisioning == "datasource.yml":
        assert uids == {ds["uid"] for ds in conf["datasources"]}
    else:
        assert [p["type"] for p in conf["providers"]] == ["file"] and conf["providers"][0]["options"]["path"]
