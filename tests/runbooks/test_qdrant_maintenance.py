"""playbooks/qdrant_maintenance.yml: optimizer settings applied with a diff, green afterwards, no change
on the second run, nothing changed in check mode, and the report's statistics."""

from __future__ import annotations

import pytest

from tests.collection.qdrant_helpers import Rest

pytestmark = pytest.mark.slow

MANUAL = {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000, "default_segment_number": 0}


def optimizers(rest, name):
    config = rest.info(name)["config"]["optimizer_config"]
    return {k: config[k] for k in MANUAL}


def test_maintenance_applies_then_changes_nothing(run_playbook, start_double):
    service = start_double("qdrant")
    rest = Rest(service)
    rest.create("docs", optimizers_config={"deleted_threshold": 0.5, "vacuum_min_vector_number": 1000,
                                           "default_segment_number": 2})
    rest.upsert("docs", range(1, 11))
    before = optimizers(rest, "docs")
    assert before != MANUAL

    dry = run_playbook("qdrant_maintenance", hosts={"qdrant-a": service}, check=True)
    assert optimizers(rest, "docs") == before
    assert dry.host()["status"] == "would change"
    assert dry.host()["tables"][1]["rows"] == [["docs", "deleted_threshold", 0.5, 0.2],
                                               ["docs", "default_segment_number", 2, 0]]
    assert "--- before" in dry.stdout and "+++ after" in dry.stdout  # --diff shows the fields

    applied = run_playbook("qdrant_maintenance", hosts={"qdrant-a": service})
    assert optimizers(rest, "docs") == MANUAL and rest.info("docs")["status"] == "green"
    host = applied.host()
    assert host["status"] == "changed" and host["findings"] == []
    assert host["actions"] == ['set the optimizers of docs: {"deleted_threshold": 0.2, "default_segment_number": 0}']
    stats = dict(zip(host["tables"][0]["columns"], host["tables"][0]["rows"][0]))
    assert stats["status"] == "green" and stats["points_count"] == "10"
    assert host["data"]["after"]["docs"]["optimizer_config"]["deleted_threshold"] == 0.2

    again = run_playbook("qdrant_maintenance", hosts={"qdrant-a": service})
    assert again.host()["status"] == "ok" and again.host()["actions"] == []
    assert again.host()["tables"][1]["rows"] == []
    assert "changed=0" in again.stdout


def test_maintenance_resumes_a_grey_collection(run_playbook, start_double, tmp_path):
    data = tmp_path / "grey-data"
    service = start_double("qdrant", data_dir=data)
    rest = Rest(service)
    rest.create("docs", optimizers_config=MANUAL)
    rest.upsert("docs", range(1, 6))
    service.stop()
    service.start()  # the double comes back with every collection grey
    assert rest.info("docs")["status"] == "grey"
    dry = run_playbook("qdrant_maintenance", hosts={"qdrant-a": service}, check=True)
    assert (dry.host()["status"], dry.host()["findings"]) == ("would change", [])  # grey, but it would resume it
    assert dry.host()["actions"] == ["would resume the grey collection docs"]
    assert rest.info("docs")["status"] == "grey"
    out = run_playbook("qdrant_maintenance", hosts={"qdrant-a": service})
    assert out.host()["actions"] == ["resume the grey collection docs"]
    assert out.host()["tables"][0]["rows"][0][1] == "grey -> green"
    assert rest.info("docs")["status"] == "green"


def test_a_collection_that_fails_is_named_with_its_own_message(run_playbook, start_double):
    service = start_double("qdrant")
    Rest(service).create("docs", optimizers_config=MANUAL)
    out = run_playbook("qdrant_maintenance", hosts={"qdrant-a": service}, expect_failure=True,
                       aegis_qdrant_maintenance_collections=["docs", "missing"])
    host = out.host()
    assert host["status"] == "failed", out.describe()
    assert host["summary"].startswith("missing: collection missing does not exist"), host["summary"]
    assert "One or more items failed" not in host["summary"]
    assert host["findings"] == [f"Apply the optimizer settings and wait for green: {host['summary']}"]
