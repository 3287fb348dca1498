"""playbooks/model_update.yml against Ollama doubles (and, for the API's side, a real Aegis API on loopback).

Proven here: the new model is pulled and smoke-tested on every Ollama host; a second run changes nothing;
check mode changes nothing and says what it would pull and remove; a model whose pull fails or whose smoke
test fails stops the update before any API host is switched (the report says so); the old model is removed
only when asked and only after success; an API host already configured with the new model and answering
with it is left alone (no drain, no restart); one configured with it whose /chat does not answer with it
(Ollama fails the model's /api/chat, not its /api/generate smoke test) is switched in check mode only.

Untested here (no systemd, no HAProxy, no aegis_api role on these hosts): the switch itself (drain, the role
with the new aegis_api_llm_model, restart, /ready, enable) and the automatic switch back. The Molecule fleet
tests them (see the report of issue 10: the break-and-heal steps)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

OLD = "deepseek-r1:7b"
NEW = "llama3.2:1b"
API_KEY = "model-update-test-key"


def installed(ollama) -> set[str]:
    return set(ollama.state()["installed"])


def run_update(run_playbook, ollamas: dict, **kwargs):
    kwargs.setdefault("new_model", NEW)
    kwargs.setdefault("aegis_api_llm_model", OLD)  # the inventory's model: old_model's default
    return run_playbook("model_update", ollama_hosts=ollamas, **kwargs)


@pytest.fixture
def two_ollamas(start_double):
    """Two Ollama doubles with the old model (and the embedder) installed, the new one in their registry."""
    return {"ollama-a": start_double("ollama"), "ollama-b": start_double("ollama")}


def test_new_model_is_pulled_and_smoke_tested_everywhere_and_a_second_run_changes_nothing(run_playbook,
                                                                                          two_ollamas):
    for double in two_ollamas.values():
        assert NEW not in installed(double) and OLD in installed(double)
    out = run_update(run_playbook, two_ollamas)
    assert out.report["status"] == "changed", out.describe()
    for name, double in two_ollamas.items():
        host = out.host(name)
        assert NEW in installed(double) and OLD in installed(double)  # the old model is kept unless asked
        assert host["status"] == "changed", host
        assert host["actions"][0].startswith(f"pull {NEW} (digest ")
        assert host["data"]["after"]["smoke_ok"] is True and host["data"]["ready"] is True
        assert "no host in the group aegis_api: the API was not switched" in host["findings"]
        assert host["tables"][0]["rows"][2] == [f"{OLD} installed", "yes", "kept"]
        assert host["data"]["remove_old"] is False
    assert f"Model update: {OLD} -> {NEW}" in out.markdown

    again = run_update(run_playbook, two_ollamas)
    assert again.report["status"] == "ok", again.describe()
    assert all(again.host(name)["actions"] == [] for name in two_ollamas)
    assert again.host("ollama-a")["summary"].startswith(f"{NEW}: installed, nothing to do; smoke answered in ")
    assert "changed=0" in again.stdout and "changed=1" not in again.stdout


def test_check_mode_changes_nothing_and_says_what_it_would_do(run_playbook, two_ollamas):
    before = {name: installed(double) for name, double in two_ollamas.items()}
    out = run_update(run_playbook, two_ollamas, check=True, aegis_model_update_remove_old=True)
    assert {name: installed(double) for name, double in two_ollamas.items()} == before
    assert out.report["check_mode"] is True and out.report["status"] == "would change"
    host = out.host("ollama-a")
    assert host["status"] == "would change"
    assert host["actions"][:2] == [f"would pull {NEW}", f"would smoke-test {NEW} after the pull"]
    assert host["actions"][2].startswith(f"would delete {OLD} (digest ")  # the update can go through
    assert host["tables"][0]["rows"][0] == [f"{NEW} installed (digest)", "no", "would pull"]


def test_old_model_is_removed_when_asked_after_success(run_playbook, two_ollamas):
    out = run_update(run_playbook, two_ollamas, aegis_model_update_remove_old=True)
    for name, double in two_ollamas.items():
        assert installed(double) >= {NEW} and OLD not in installed(double)
        host = out.host(name)
        assert host["status"] == "changed" and len(host["actions"]) == 2, host
        assert host["actions"][0].startswith(f"pull {NEW} (digest ")  # first the new model proved itself,
        assert host["actions"][1].startswith(f"delete {OLD} (digest ")  # then the old one went
        assert host["tables"][0]["rows"][2] == [f"{OLD} installed", "yes", "deleted"]

    again = run_update(run_playbook, two_ollamas, aegis_model_update_remove_old=True)
    assert again.report["status"] == "ok" and "changed=0" in again.stdout


@pytest.mark.parametrize("broken", ["pull", "smoke"])
def test_a_model_that_fails_on_ollama_stops_before_any_switch(run_playbook, two_ollamas, broken):
    bad = two_ollamas["ollama-b"]
    if broken == "pull":
        bad.set_registry(NEW, fail="max retries exceeded: unexpected EOF")
    else:
        bad.set_registry(NEW, fail_generate="error loading model: tensor data is not within the file bounds")
    # an API host in the inventory: it must not be touched (were it, the run would need systemd and sudo here)
    out = run_update(run_playbook, two_ollamas, expect_failure=True, aegis_model_update_remove_old=True,
                     api_hosts={"api-a": "http://127.0.0.1:9"}, aegis_api_llm="ollama")
    assert out.report["status"] == "failed"
    host = out.host("ollama-b")
    assert host["status"] == "failed"
    if broken == "pull":
        assert host["summary"].startswith(f"{NEW}: stopped at pull (Pull {NEW}): ")
        assert "max retries exceeded: unexpected EOF" in host["summary"]
    else:
        assert host["summary"].startswith(f"{NEW}: stopped at smoke test (Stop when the new model is not "
                                          f"installed or fails its smoke test): {NEW} fails its smoke test on ollama-b:")
        assert "tensor data is not within the file bounds" in host["summary"]
    assert host["summary"].endswith("; no API host was switched")
    # the sound host pulled the model but keeps the old one: the update did not succeed
    good = out.host("ollama-a")
    assert good["status"] == "changed" and OLD in installed(two_ollamas["ollama-a"])
    assert f"{OLD} kept although asked to remove it: the update did not succeed" in good["findings"]
    api = out.host("api-a")
    assert api["status"] == "ok" and api["actions"] == [] and api["data"]["phases"] == []
    assert api["summary"] == f"not switched: {NEW} did not pass on Ollama (ollama-b); still on {OLD}"
    assert "model_update failed on ollama-b" in out.stdout


@pytest.fixture
def api_on_new_model(tmp_path, monkeypatch, two_ollamas):
    """A real Aegis API on loopback generating with the new model on ollama-a, and the environment file the
    aegis_api role would have written for it."""
    from tests.collection.aegis_app import AegisServer

    ollama = two_ollamas["ollama-a"]
    ollama.install(NEW)
    monkeypatch.setenv("AEGIS_EMBEDDER", "ollama")
    server = AegisServer(tmp_path / "aegis-data", llm="ollama", ollama_url=ollama.url, llm_model=NEW,
                         api_keys=[API_KEY]).start()
    server.add_document(headers={"Authorization": f"Bearer {API_KEY}"})
    env_file = tmp_path / "aegis-api.env"
    env_file.write_text(f'AEGIS_LLM="ollama"\nAEGIS_LLM_MODEL="{NEW}"\n')
    yield server, env_file
    server.stop()


def api_vars(server, env_file) -> dict:
    return {"api_hosts": {"api-a": server.url}, "aegis_api_llm": "ollama", "ansible_become": False,
            "aegis_model_update_api_env_file": str(env_file), "aegis_model_update_api_key": API_KEY}


def test_api_host_on_the_new_model_is_left_alone_and_the_old_model_then_goes(run_playbook, two_ollamas,
                                                                             api_on_new_model):
    out = run_update(run_playbook, two_ollamas, aegis_model_update_remove_old=True, **api_vars(*api_on_new_model))
    api = out.host("api-a")
    assert api["status"] == "ok" and api["actions"] == [], api
    [phase] = api["data"]["phases"]
    assert phase["switched"] is False and phase["configured_before"] == NEW
    assert phase["chat_before"]["model"] == NEW and phase["chat_before"]["ok"] is True
    assert api["summary"] == f"answers with {NEW}"
    # loud: the inventory still names the old model, so the next site.yml would switch the host back
    assert (f"THE INVENTORY STILL NAMES {OLD}: set aegis_api_llm_model: {NEW} for this host, or the next site.yml "
            "or deploy_api.yml switches it back") in api["findings"]
    assert API_KEY not in out.stdout and API_KEY not in out.markdown
    # every API host answered with the new model: the old one goes, as asked
    for name, double in two_ollamas.items():
        assert OLD not in installed(double) and NEW in installed(double)
        assert out.host(name)["actions"][-1].startswith(f"delete {OLD} (digest ")


def test_check_mode_would_switch_an_api_host_whose_chat_fails_with_the_new_model(run_playbook, two_ollamas,
                                                                                 api_on_new_model):
    # the break of the fleet's test: the model passes its smoke test (/api/generate) but fails through the API
    two_ollamas["ollama-a"].faults.add(path="^/api/chat$", model=NEW, error_rate=1.0, status=500,
                                       body={"error": "llama runner process has terminated: signal: killed"})
    out = run_update(run_playbook, two_ollamas, check=True, aegis_model_update_remove_old=True,
                     **api_vars(*api_on_new_model))
    assert out.host("ollama-a")["data"]["after"]["smoke_ok"] is True
    api = out.host("api-a")
    assert api["status"] == "would change", api
    assert api["actions"] == [f"would switch: drain, set aegis_api_llm_model {NEW} -> {NEW}, restart, verify /chat, "
                              "enable"]
    [phase] = api["data"]["phases"]
    assert phase["chat_before"]["degraded"] is True and phase["chat_before"]["mode"] == "extractive"
    assert api["tables"][0]["rows"][0][3] == "HTTP 200 extractive extractive degraded"
    assert all(OLD in installed(double) for double in two_ollamas.values())  # check mode: nothing removed
