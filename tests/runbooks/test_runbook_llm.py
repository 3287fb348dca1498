"""playbooks/runbook_llm.yml against the Ollama double: a missing model is pulled and preloaded and the
Aegis API then answers generated; a second run changes nothing; check mode changes nothing and says what
it would do; generations failing (fault injection) and Ollama down end in a failure with a clear report.

Untested here (no systemd on the doubles' hosts): the restart of the ollama unit; every run sets
aegis_runbook_llm_manage_service=false, and the report then says the restart was skipped."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.slow

MODEL = "deepseek-r1:7b"
API_KEY = "runbook-llm-test-key"
NO_RESTART = "restart skipped: aegis_runbook_llm_manage_service is false"


def run_llm(run_playbook, ollama, **kwargs):
    return run_playbook("runbook_llm", ollama_hosts={"ollama-a": ollama}, aegis_runbook_llm_model=MODEL,
                        aegis_runbook_llm_manage_service=False, **kwargs)


def installed(ollama) -> set[str]:
    return set(ollama.state()["installed"])


def loaded(ollama) -> list[str]:
    return [m["name"] for m in httpx.get(ollama.url + "/api/ps", timeout=5).json()["models"]]


def remove_model(ollama, name: str = MODEL) -> None:
    ollama.dirty = True  # the session double gets its models back after the test
    httpx.request("DELETE", ollama.url + "/api/delete", json={"model": name}, timeout=5).raise_for_status()


def ask(api) -> dict:
    r = httpx.post(api.url + "/chat", json={"question": "When are snapshots uploaded?", "history": []},
                   headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    r.raise_for_status()
    return r.json()


@pytest.fixture
def aegis_api_on_ollama(tmp_path, monkeypatch, ollama):
    """A real Aegis API on loopback that embeds and generates with the Ollama double, one document in."""
    from tests.collection.aegis_app import AegisServer

    monkeypatch.setenv("AEGIS_EMBEDDER", "ollama")
    server = AegisServer(tmp_path / "aegis-data", llm="ollama", ollama_url=ollama.url, llm_model=MODEL,
                         api_keys=[API_KEY]).start()
    server.add_document(headers={"Authorization": f"Bearer {API_KEY}"})
    yield server
    server.stop()


def test_missing_model_is_pulled_preloaded_and_chat_generates(run_playbook, ollama, aegis_api_on_ollama):
    remove_model(ollama)
    assert ask(aegis_api_on_ollama)["degraded"] is True  # the API falls back to extractive answers

    out = run_llm(run_playbook, ollama, aegis_runbook_llm_api_url=aegis_api_on_ollama.url,
                  aegis_runbook_llm_api_key=API_KEY)
    host = out.host("ollama-a")
    assert MODEL in installed(ollama) and MODEL in loaded(ollama)
    assert host["status"] == "changed", host
    assert host["actions"][0].startswith(f"pull {MODEL} (digest ")
    assert host["actions"][1] == f"preload {MODEL} (keep_alive 5m)"
    assert f"{MODEL} is not installed" in host["findings"]
    assert host["data"]["chat"]["degraded"] is False and host["data"]["chat"]["mode"] == "generated"
    assert host["data"]["after"]["smoke_ok"] is True and host["data"]["diagnosis"]["smoke_ran"] is False
    assert host["tables"][1]["rows"][0][1].startswith("no GPU")  # no nvidia-smi here: reported, not failed
    assert "/chat generated" in host["summary"]
    assert API_KEY not in out.stdout and API_KEY not in out.markdown
    assert ask(aegis_api_on_ollama)["degraded"] is False

    again = run_llm(run_playbook, ollama, aegis_runbook_llm_api_url=aegis_api_on_ollama.url,
                    aegis_runbook_llm_api_key=API_KEY)
    assert again.host("ollama-a")["status"] == "ok" and again.host("ollama-a")["actions"] == []
    assert again.host("ollama-a")["findings"] == []
    assert "changed=0" in again.stdout


def test_check_mode_changes_nothing_and_says_what_it_would_do(run_playbook, ollama):
    remove_model(ollama)
    before = installed(ollama)
    out = run_llm(run_playbook, ollama, check=True)
    assert installed(ollama) == before and loaded(ollama) == []
    host = out.host("ollama-a")
    assert host["status"] == "would change"
    assert host["actions"] == [f"would pull {MODEL}", f"would preload {MODEL} (keep_alive 5m)"]
    assert "| deepseek-r1:7b installed (digest) | no |" in out.markdown
    assert out.report["check_mode"] is True


def test_broken_model_is_deleted_and_pulled_again(run_playbook, ollama):
    ollama.install(MODEL, fail_generate="error loading model: tensor data is not within the file bounds")
    ollama.set_registry(MODEL, fail_generate=None)  # the registry's copy is sound
    out = run_llm(run_playbook, ollama, aegis_runbook_llm_keep_alive="-1")
    host = out.host("ollama-a")
    assert host["status"] == "changed", host
    assert ("smoke generation failed: HTTP 500: error loading model: tensor data is not within the file bounds"
            in host["findings"])
    assert NO_RESTART in host["findings"]  # the restart comes first; here it cannot run
    assert host["actions"][0].startswith(f"delete and re-pull {MODEL} (digest ")
    assert host["actions"][1] == f"preload {MODEL} (keep_alive -1)"
    assert host["data"]["after"]["smoke_ok"] is True
    ps = httpx.get(ollama.url + "/api/ps", timeout=5).json()["models"]
    assert [m["expires_at"][:4] for m in ps if m["name"] == MODEL] == ["9999"]  # the verify kept the preload's keep_alive
    assert ollama.state()["installed"][MODEL]["spec"]["fail_generate"] is None


def test_generation_errors_fail_with_a_report_of_where_it_stopped(run_playbook, ollama):
    ollama.faults.add(path="^/api/generate$", error_rate=1.0, status=500,
                      body={"error": "llama runner process has terminated: exit status 2"})
    out = run_llm(run_playbook, ollama, expect_failure=True)
    host = out.host("ollama-a")
    assert host["status"] == "failed"
    assert "smoke generation failed: HTTP 500: llama runner process has terminated: exit status 2" in host["findings"]
    assert NO_RESTART in host["findings"]
    assert host["actions"][0].startswith(f"delete and re-pull {MODEL}")  # the restart could not run: re-pull next
    assert host["summary"].startswith("stopped at preload:")
    assert "stopped at preload" in out.markdown
    assert host["tables"][0]["rows"][3] == ["smoke generation",
                                            "HTTP 500: llama runner process has terminated: exit status 2"]
    assert "runbook_llm failed on ollama-a" in out.stdout


def test_ollama_down_fails_clearly(run_playbook, start_double):
    down = start_double("ollama")
    down.stop()
    out = run_llm(run_playbook, down, expect_failure=True)
    host = out.host("ollama-a")
    assert host["status"] == "failed" and host["actions"] == []
    assert host["summary"].startswith(f"stopped at restart: Ollama does not answer at {down.url}")
    assert NO_RESTART in host["summary"]
