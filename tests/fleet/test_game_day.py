"""A game day on the fleet in runbooks mode (playbooks/game_day.yml; its closed-loop mode, with three faults:
tests/fleet/test_self_healing.py): Ollama stopped under a client loop through the load balancer, detected by its
alert, repaired by the runbook the game day runs, and scored in a dated report with a timeline chart. The figures
are recorded as properties (`--junitxml`) and printed (`-rP` shows them)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from tests.fleet.conftest import FLEET_TEST, VARS, load_json_report

pytestmark = FLEET_TEST
FAULTS = ["ollama_stopped"]


def test_a_game_day_in_runbooks_mode_repairs_and_scores(fleet, tmp_path, record_property):
    reports = tmp_path / "reports"
    lb_url = f"http://{fleet.address('fleet-lb')}:{VARS['loadbalancer']['loadbalancer_port']}"
    runbook_vars = tmp_path / "runbook-vars.json"  # as an operator passes the runbooks' variables (runbooks.yml's)
    runbook_vars.write_text(json.dumps({
        "aegis_runbook_delegate_to": "{{ inventory_hostname }}", "aegis_runbook_api_url": "http://127.0.0.1:8910",
        "aegis_runbook_api_chat_url": lb_url, "aegis_runbook_ollama_url": "http://127.0.0.1:11434",
        "aegis_runbook_llm_model": VARS["all"]["fleet_model"], "aegis_runbook_llm_api_url": lb_url,
        "aegis_runbook_llm_api_key": VARS["all"]["fleet_api_key"], "aegis_runbook_qdrant_url": "http://127.0.0.1:6333"}))
    fleet.wait_ready()
    fleet.playbook("playbooks/game_day.yml", "-e", "aegis_environment=test-fleet", "-e", "aegis_game_day_mode=runbooks",
                   "-e", f"aegis_game_day_faults={','.join(FAULTS)}", "-e", f"aegis_game_day_runbook_vars_file={runbook_vars}",
                   "-e", f"aegis_report_dir={reports}", timeout_s=1800)
    fleet.wait_ready()

    report = load_json_report(reports, "game_day")
    (section,) = report["hosts"].values()
    score, faults = section["data"]["score"], {f["fault"]: f for f in section["data"]["faults"]}
    assert report["status"] == "ok" and score["score"] == "1/1" and score["failed_faults"] == [], section
    assert list(faults) == FAULTS
    for fault in faults.values():
        assert not fault["failed"] and fault["seconds_to_detect"] > 0 and fault["seconds_to_repair"] > 0, fault
    assert score["answered"] > 0
    chart = ET.parse(section["data"]["chart"]).getroot()
    assert chart.tag.endswith("svg") and "1/1" in "".join(chart.itertext())
    assert len([g for g in chart.iter() if g.get("class") == "fault"]) == 1
    for name, fault in faults.items():
        record_property(f"{name}_detect_s", fault["seconds_to_detect"])
        record_property(f"{name}_repair_s", fault["seconds_to_repair"])
    print("game day: " + "; ".join(f"{n} detect {f['seconds_to_detect']} s, repair {f['seconds_to_repair']} s, "
                                   f"failed {f['failed_requests']}/{f['answered']}" for n, f in faults.items()))
