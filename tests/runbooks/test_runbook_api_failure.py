"""playbooks/runbook_api_failure.yml against a real Aegis API on loopback (the `aegis_api` host, local
connection, aegis_runbook_api_url): a healthy API changes nothing (and /chat answers with sources); a dependency
down on every API host is named and not "repaired" by a restart; an API that does not answer and has no unit to
restart fails with a report of where it stopped; check mode says what it would do.

Untested here (no systemd, no HAProxy, no /opt/aegis releases on the test host): the unit's state and journal,
the drain and enable on the load balancers, the restart and the rollback. The lead's Molecule fleet breaks and
heals those (see the runbook table in docs/operations/runbooks.md)."""

from __future__ import annotations

import socket

import pytest

pytestmark = pytest.mark.slow

API_KEY = "runbook-api-test-key"


@pytest.fixture
def api(tmp_path, local_embedder):
    """A real Aegis API in embedded mode (local embedder, extractive answers), one document in."""
    from tests.collection.aegis_app import AegisServer

    server = AegisServer(tmp_path / "aegis-data", embedder=local_embedder, api_keys=[API_KEY]).start()
    server.add_document(headers={"Authorization": f"Bearer {API_KEY}"})
    yield server
    server.stop()


@pytest.fixture
def api_on_qdrant(tmp_path, local_embedder, start_double):
    """A real Aegis API on its own Qdrant double (server mode), one document in; returns (server, qdrant)."""
    from tests.collection.aegis_app import AegisServer

    qdrant = start_double("qdrant")
    server = AegisServer(tmp_path / "aegis-data", embedder=local_embedder, api_keys=[API_KEY],
                         qdrant_url=qdrant.url, breaker_failure_threshold=1000).start()
    server.add_document(headers={"Authorization": f"Bearer {API_KEY}"})
    yield server, qdrant
    server.stop()


def run_api(run_playbook, url, **kwargs):
    return run_playbook("runbook_api_failure", api_hosts={"api-a": url}, aegis_runbook_api_key=API_KEY, **kwargs)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_healthy_api_changes_nothing_and_chat_answers_with_sources(run_playbook, api):
    out = run_api(run_playbook, api.url, aegis_runbook_api_chat_url=api.url)
    host = out.report["hosts"]["api-a"]
    assert out.report["status"] == "ok" and host["status"] == "ok", host
    assert host["actions"] == []
    assert host["data"]["diagnosis"]["state"] == "ready"
    deps = {d["name"]: d for d in host["data"]["diagnosis"]["dependencies"]}
    assert deps["vector_store"]["status"] == "ok" and deps["vector_store"]["required"] is True
    assert {"vector_store", "embedder", "llm", "cache"} <= set(deps)
    assert host["data"]["chat"]["status"] == 200 and host["data"]["chat"]["sources"] >= 1
    assert "/chat answered with" in host["summary"]
    assert host["tables"][0]["rows"][0] == ["/health", "ok", "ok"]
    assert host["tables"][1]["rows"][0] == ["unit aegis-api", "not read (no systemd)"]
    assert host["data"]["resources"]["memory_total_mb"], host["data"]["resources"]  # facts were read
    assert "changed=0" in out.stdout and "failed=0" in out.stdout
    assert API_KEY not in out.stdout and API_KEY not in out.markdown


def test_check_mode_on_a_healthy_api_says_nothing_to_do(run_playbook, api):
    out = run_api(run_playbook, api.url, check=True)
    host = out.report["hosts"]["api-a"]
    assert out.report["check_mode"] is True and host["status"] == "ok" and host["actions"] == []
    assert host["tables"][0]["columns"] == ["check", "at diagnosis"]


def test_dependency_down_is_named_and_no_restart_is_tried(run_playbook, api_on_qdrant):
    server, qdrant = api_on_qdrant
    qdrant.stop()
    out = run_api(run_playbook, server.url, expect_failure=True)
    host = out.report["hosts"]["api-a"]
    assert host["status"] == "failed" and host["actions"] == []
    assert host["data"]["diagnosis"]["state"] == "not ready"
    assert host["data"]["dependency_outage"] == ["vector_store"]
    assert "required dependency vector_store fails" in host["findings"]
    assert any(f.startswith("vector_store fails on every API host") for f in host["findings"]), host["findings"]
    assert "see runbook_vector_db" in host["findings"]
    assert "not repaired: vector_store fails on every API host" in host["summary"]
    assert "runbook_api_failure failed on api-a" in out.stdout
    [row] = [r for r in host["tables"][0]["rows"] if r[0] == "dependency vector_store"]
    assert row[1].startswith("failed: ")

    # the same, in check mode: nothing it would do either
    dry = run_api(run_playbook, server.url, check=True, expect_failure=True)
    assert dry.report["hosts"]["api-a"]["actions"] == []

    # Qdrant back: the API recovers by itself, the runbook finds it healthy
    qdrant.start()
    again = run_api(run_playbook, server.url, aegis_runbook_api_chat_url=server.url)
    assert again.report["hosts"]["api-a"]["status"] == "ok", again.report["hosts"]["api-a"]


def test_api_down_without_a_unit_fails_clearly(run_playbook):
    url = closed_port_url()
    out = run_api(run_playbook, url, expect_failure=True)
    host = out.report["hosts"]["api-a"]
    assert host["status"] == "failed" and host["actions"] == []
    assert host["data"]["diagnosis"]["state"] == "down"
    assert any(f.startswith(f"the API does not answer /health at {url}") for f in host["findings"]), host
    assert "stopped at restart" in host["summary"]
    assert "cannot be restarted: no systemd on api-a" in host["summary"]
    assert "stopped at restart" in out.markdown

    dry = run_api(run_playbook, url, check=True, expect_failure=True)
    assert "cannot be restarted" in dry.report["hosts"]["api-a"]["summary"]
