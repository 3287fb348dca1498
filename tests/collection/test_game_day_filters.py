"""The game day's filters (aegis.rag plugins/filter/game_day.py): Alertmanager's alerts matched to a fault's alert, the
score (seconds, medians, a failed fault counted and left out of the medians it has no figure for) and the timeline
chart (valid SVG, one row per fault, the date and score in its title, names escaped)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.aegis.rag.plugins.filter.game_day import (FilterModule, game_day_firing, game_day_score,
                                                                     game_day_svg)

T0 = 1796551478.0  # 2026-12-06T10:04:38Z
SVG = "{http://www.w3.org/2000/svg}"


def fault(name: str, outcome: str, start: float, detect: float | None = None, repair: float | None = None,
          undone: float | None = None, **extra) -> dict:
    return {"fault": name, "host": "fleet-api-1", "alert": "AegisServiceDown", "outcome": outcome,
            "injected_at": start, "detected_at": None if detect is None else start + detect,
            "repaired_at": None if repair is None else start + repair,
            "undone_at": None if undone is None else start + undone, **extra}


GAME = [
    fault("api_unit_stopped", "repaired", T0, detect=14.0, repair=50.0, answered=300, failed_requests=2,
          failure_times=[T0 + 1, T0 + 2]),
    fault("ollama_stopped", "repaired", T0 + 100, detect=20.0, repair=40.0, answered=200, degraded=150),
    fault("qdrant_stopped", "not repaired", T0 + 200, detect=18.0, undone=318.0, answered=10, failed_requests=90,
          failure_times=[T0 + 200 + i for i in range(90)], note="not repaired within 300 s"),
    fault("redis_stopped", "undetected", T0 + 600, undone=30.0, answered=80, alert=None),
    fault("api_unit_killed", "self-healed", T0 + 700, repair=12.0, answered=50),
]


def test_the_filters_are_registered():
    assert set(FilterModule().filters()) == {"game_day_firing", "game_day_score", "game_day_svg"}


def test_alerts_match_by_name_and_every_wanted_label():
    alerts = [{"labels": {"alertname": "AegisServiceDown", "service": "qdrant", "instance": "10.0.0.3:6333"}},
              {"labels": {"alertname": "AegisServiceDown", "service": "aegis-api", "priority": "P0"}},
              {"labels": {"alertname": "OllamaModelGenerationFailure", "service": "ollama"}}]
    api = {"alertname": "AegisServiceDown", "labels": {"service": "aegis-api"}}
    assert game_day_firing(alerts, api) == [alerts[1]]
    assert game_day_firing(alerts, {"alertname": "AegisServiceDown"}) == alerts[:2]
    assert game_day_firing(alerts, [api, {"alertname": "OllamaModelGenerationFailure"}]) == alerts[1:]
    assert game_day_firing(alerts, None) == [] and game_day_firing(alerts, []) == []
    assert game_day_firing([], api) == []
    with pytest.raises(AnsibleFilterError, match="alertname"):
        game_day_firing(alerts, {"labels": {"service": "qdrant"}})
    with pytest.raises(AnsibleFilterError, match="must be a list"):
        game_day_firing({"data": []}, api)


def test_score_counts_repairs_and_takes_medians_without_the_failed_figures():
    scored = game_day_score(GAME)
    score = scored["score"]
    assert score["total"] == 5 and score["repaired"] == 3 and score["score"] == "3/5"
    # detect: 14, 20, 18 (the undetected and the self-healed faults have none)
    assert score["median_detect_s"] == 18.0
    # repair: 36 and 20 (the unrepaired fault has no repair time, the self-healed one no repair phase)
    assert score["median_repair_s"] == 28.0
    assert score["failed_requests"] == 92 and score["answered"] == 640 and score["degraded"] == 150
    assert score["failed_faults"] == ["qdrant_stopped", "redis_stopped"]
    by_name = {f["fault"]: f for f in scored["faults"]}
    stopped = by_name["api_unit_stopped"]
    assert (stopped["seconds_to_detect"], stopped["seconds_to_repair"], stopped["failed"]) == (14.0, 36.0, False)
    assert stopped["injected"] == "2026-12-06T10:04:38Z" and stopped["detected"] == "2026-12-06T10:04:52Z"
    assert stopped["summary"] == ("api_unit_stopped on fleet-api-1: repaired (detected in 14 s, repaired in 36 s, "
                                  "2 failed and 300 answered requests)")
    unrepaired = by_name["qdrant_stopped"]
    assert unrepaired["failed"] and unrepaired["seconds_to_detect"] == 18.0 and unrepaired["seconds_to_repair"] is None
    assert unrepaired["summary"].endswith("; not repaired within 300 s")
    healed = by_name["api_unit_killed"]
    assert not healed["failed"] and healed["seconds_to_heal"] == 12.0 and healed["seconds_to_repair"] is None
    assert by_name["redis_stopped"]["seconds_to_detect"] is None and by_name["redis_stopped"]["failed"]


def test_score_table_has_one_row_per_fault_in_its_columns():
    table = game_day_score(GAME)["table"]
    assert len(table["rows"]) == len(GAME) and all(len(row) == len(table["columns"]) for row in table["rows"])
    row = dict(zip(table["columns"], table["rows"][2]))
    assert row["fault"] == "qdrant_stopped" and row["outcome"] == "not repaired"
    assert row["repaired at"].startswith("undone ") and row["s to repair"] == "-" and row["failed requests"] == 90
    healed = dict(zip(table["columns"], table["rows"][4]))
    assert healed["s to detect"] == "-" and healed["s to repair"] == "healed in 12" and healed["outcome"] == "self-healed"


def test_score_table_has_the_score_and_a_dash_for_a_missing_median():
    assert game_day_score(GAME)["score_table"]["rows"] == [["3/5", 18.0, 28.0, 92, 640]]
    empty = game_day_score([{"fault": "api_unit_stopped", "outcome": "not run"}])["score_table"]
    assert empty["columns"][:3] == ["faults repaired", "median s to detect", "median s to repair"]
    assert empty["rows"] == [["0/1", "-", "-", 0, 0]]


def test_score_of_a_game_day_that_did_not_start():
    scored = game_day_score([{"fault": "api_unit_stopped", "host": "api-1", "outcome": "not run",
                              "note": "the fleet was not healthy"}])
    assert scored["score"] == {"total": 1, "repaired": 0, "score": "0/1", "median_detect_s": None,
                               "median_repair_s": None, "failed_requests": 0, "answered": 0, "degraded": 0,
                               "failed_faults": ["api_unit_stopped"]}
    assert game_day_score([])["score"]["score"] == "0/0"


@pytest.mark.parametrize("bad, message", [
    ([{"fault": "x", "outcome": "fine"}], "outcome 'fine'"),
    ([{"outcome": "repaired"}], "with a name"),
    ([{"fault": "x", "outcome": "repaired", "injected_at": "yesterday"}], "not a time"),
    ("api_unit_stopped", "list of faults"),
])
def test_score_refuses_what_is_not_a_game_day(bad, message):
    with pytest.raises(AnsibleFilterError, match=message):
        game_day_score(bad)


def rows_of(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "fault"]


def test_svg_is_valid_with_one_row_per_fault_and_the_score_in_its_title():
    svg = game_day_svg(GAME)
    root = ET.fromstring(svg)  # valid XML
    assert root.tag == f"{SVG}svg"
    title = root.find(f"{SVG}title").text
    assert title == "Game day 2026-12-06: 3/5 faults repaired"
    assert [g.get("data-fault") for g in rows_of(svg)] == [f["fault"] for f in GAME]
    assert [g.get("data-outcome") for g in rows_of(svg)] == [f["outcome"] for f in GAME]
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert title in texts and "median time to detect 18 s" in " ".join(texts)
    assert "0 s" in texts and "seconds after the fault was injected" in texts
    # a mark per failed request, drawn in the row of its fault
    marks = {g.get("data-fault"): [ln for ln in g.iter(f"{SVG}line") if ln.get("class") == "failed-request"]
             for g in rows_of(svg)}
    assert len(marks["api_unit_stopped"]) == 2 and len(marks["qdrant_stopped"]) == 90 and not marks["redis_stopped"]
    # the detect and repair bars of a repaired fault: detect from 0, repair from the alert
    bars = [r for r in rows_of(svg)[0].iter(f"{SVG}rect")]
    assert [b.find(f"{SVG}title").text for b in bars] == ["detect 14 s (AegisServiceDown)", "repair 36 s"]
    assert float(bars[0].get("x")) == 230.0 and float(bars[1].get("x")) > float(bars[0].get("x"))


def test_svg_accepts_the_scored_game_and_an_explicit_date():
    svg = game_day_svg(game_day_score(GAME), date="2026-12-07")
    assert ET.fromstring(svg).find(f"{SVG}title").text == "Game day 2026-12-07: 3/5 faults repaired"


def test_svg_escapes_names_and_notes():
    game = [fault('db<"x">&y', "undetected", T0, undone=5.0, host="h<1>", alert="A&B"),
            {"fault": "</svg><script>", "host": "x", "outcome": "not run", "note": "fleet <down> & 'out'"}]
    svg = game_day_svg(game)
    root = ET.fromstring(svg)
    assert [g.get("data-fault") for g in rows_of(svg)] == ['db<"x">&y', "</svg><script>"]
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert 'db<"x">&y' in texts and "h<1>: undetected" in texts and "fleet <down> & 'out'" in texts
    assert "<script>" not in svg


def test_svg_of_a_game_day_without_a_fault_run():
    svg = game_day_svg([{"fault": "api_unit_stopped", "outcome": "not run", "note": "the fleet was not healthy"}])
    root = ET.fromstring(svg)
    assert root.find(f"{SVG}title").text == "Game day: 0/1 faults repaired"
    assert len(rows_of(svg)) == 1 and "the fleet was not healthy" in [t.text for t in root.iter(f"{SVG}text")]
