"""runbook_llm on the fleet's Ollama host, run as an operator runs it (ansible-playbook with the fleet's inventory, its
variables from a file as molecule/default/runbooks.yml sets them: the Ollama calls from the Ollama host itself, the
/chat check through the load balancer with the fleet's API key).

Each test breaks one thing on the Ollama stand-in (tests/doubles/ollama.py behind molecule/standins/ollama.py), runs
the runbook, asserts the healed fleet and the report, and restores what it broke even when it fails:
- generations failing (a /_faults rule answers /api/generate and /api/chat with the error of a dead llama runner;
  the API answers degraded): the smoke generation's failure is the finding, the ollama unit restarted (the stand-in's
  fault rules live in its process, so the restart clears them, as it clears a wedged runner), the model preloaded,
  /chat through the load balancer answers generated again; a second run changes nothing;
- generations slower than the manual's 3 s target (/_control/settings token_delay_ms paces every token: the 8-token
  smoke generation takes 4 s, measured by Ollama itself without the model load): the host is "degraded" with the
  figure, nothing repaired or restarted, changed=0 (so a second run has nothing to change either). This run leaves
  out the /chat check: at that pace the API's answer of some 65 tokens would take over half a minute per run;
- the model deleted (/api/delete; the API answers degraded): pulled again (the same digest, from the stand-in's
  offline registry) and preloaded, not restarted, /chat through the load balancer answers generated again, the
  Ollama host's lack of a GPU (no nvidia-smi) reported, not failed; a second run changes nothing.
In none of them is the API key in the report."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fleet.conftest import FLEET_TEST, VARS, hosts_of, http, load_json_report, recap, wait_until

pytestmark = FLEET_TEST

RUNBOOK = "playbooks/runbook_llm.yml"
MODEL = VARS["all"]["fleet_model"]
KEY = VARS["all"]["fleet_api_key"]
LB, OLLAMA = hosts_of("loadbalancer")[0], hosts_of("ollama")[0]
LB_PORT = VARS["loadbalancer"]["loadbalancer_port"]
OLLAMA_URL = "http://127.0.0.1:11434"  # as seen on the Ollama host
# The runbook's keep_alive: its default (the ollama role's ollama_keep_alive is not a variable of the runbook's play)
PRELOAD = f"preload {MODEL} (keep_alive 5m)"
RUNNER_DIED = "llama runner process has terminated: exit status 2"
GENERATIONS_FAIL = {"path": "^/api/(generate|chat)$", "error_rate": 1.0, "status": 500, "body": {"error": RUNNER_DIED}}
# The smoke generation's answer is 8 tokens ("Based on the context: reply single word ready."): 8 x 0.5 s = 4 s
TOKEN_DELAY_MS = 500


def run_runbook(fleet, tmp_path: Path, name: str, **variables) -> tuple[str, dict, dict, str]:
    """The runbook with molecule/default/runbooks.yml's variables (and `variables`); its output, JSON report, the
    Ollama host's section and the Markdown report."""
    reports = tmp_path / name
    vars_file = tmp_path / f"{name}.json"
    vars_file.write_text(json.dumps({
        "aegis_runbook_delegate_to": "{{ inventory_hostname }}", "aegis_runbook_ollama_url": OLLAMA_URL,
        "aegis_runbook_llm_model": MODEL, "aegis_runbook_llm_api_url": f"http://{fleet.address(LB)}:{LB_PORT}",
        "aegis_runbook_llm_api_key": KEY, "aegis_report_dir": str(reports), **variables}))
    output = fleet.playbook(RUNBOOK, f"--extra-vars=@{vars_file}")
    report = load_json_report(reports, "runbook_llm")
    markdown = sorted(reports.glob("runbook_llm-*.md"))[-1].read_text()
    return output, report, report["hosts"][OLLAMA], markdown


def ollama_call(fleet, method: str, path: str, body: dict | None = None) -> tuple[int, str]:
    """A call of the Ollama stand-in's API (or its /_faults, /_control) from the Ollama host."""
    return http(fleet.host(OLLAMA), OLLAMA_URL + path, "Content-Type=application/json",
                json.dumps(body) if body is not None else "", method)


def installed(fleet) -> dict[str, str]:
    """The installed models and their digests."""
    status, text = http(fleet.host(OLLAMA), f"{OLLAMA_URL}/api/tags")
    assert status == 200, text
    return {model["name"]: model["digest"] for model in json.loads(text)["models"]}


def loaded(fleet) -> list[str]:
    status, text = http(fleet.host(OLLAMA), f"{OLLAMA_URL}/api/ps")
    assert status == 200, text
    return [model["name"] for model in json.loads(text)["models"]]


def keep_loaded(fleet) -> None:
    """The model loaded for 5 minutes, as a preload does: the diagnosis finds it loaded, whatever ran before."""
    status, text = ollama_call(fleet, "POST", "/api/generate", {"model": MODEL, "keep_alive": "5m"})
    assert status == 200, text


def ask(fleet) -> dict:
    """/chat through the load balancer, as a client asks."""
    status, text = http(fleet.host(LB), f"http://127.0.0.1:{LB_PORT}/chat",
                        f"Content-Type=application/json,X-API-Key={KEY}", json.dumps({"question": "What is Aegis?"}))
    assert status == 200, text[:500]
    return json.loads(text)


def main_pid(fleet) -> int:
    return int(fleet.host(OLLAMA).check_output("systemctl show --property=MainPID --value ollama"))


def assert_generated(chat: dict) -> None:
    """The /chat check of the runbook (or a client's answer) generated by the fleet's model, not degraded."""
    assert (chat.get("status", 200), chat["mode"], chat["model"], chat["degraded"]) == (200, "generated", MODEL,
                                                                                        False), chat


def assert_no_secret(output: str, report: dict, markdown: str) -> None:
    assert KEY not in output and KEY not in json.dumps(report) and KEY not in markdown, "the API key is in the report"


def assert_second_run_changes_nothing(fleet, tmp_path: Path) -> None:
    output, report, host, _ = run_runbook(fleet, tmp_path, "again")
    assert (host["status"], host["actions"], host["findings"]) == ("ok", [], []), host
    assert host["summary"].startswith(f"{MODEL}: healthy; smoke answered in "), host["summary"]
    assert_generated(host["data"]["chat"])
    assert all(counts["changed"] == 0 for counts in recap(output).values()), recap(output)


def restore(fleet) -> None:
    """The Ollama stand-in as the tests found it: no fault rule, no token delay (both gone when the unit restarted, or
    cleared here), the fleet's model installed, /chat through the load balancer generated, every API host ready."""
    ollama = fleet.host(OLLAMA)
    if ollama_call(fleet, "DELETE", "/_faults")[0] != 200:  # not answering (a restart stopped midway): start it
        ollama.run("systemctl restart ollama")
        wait_until(lambda: http(ollama, f"{OLLAMA_URL}/api/version")[0] == 200, 60, "Ollama answering")
    assert ollama_call(fleet, "POST", "/_control/settings", {"token_delay_ms": 0})[0] == 200
    if MODEL not in installed(fleet):
        status, text = ollama_call(fleet, "POST", "/api/pull", {"model": MODEL, "stream": False})
        assert status == 200, text
    fleet.wait_ready()
    assert_generated(ask(fleet))


def test_failing_generations_restart_ollama_and_chat_generates_again(fleet, tmp_path):
    try:
        keep_loaded(fleet)
        status, text = ollama_call(fleet, "POST", "/_faults", GENERATIONS_FAIL)
        assert status == 200, text
        assert ask(fleet)["degraded"] is True  # the API falls back to extractive answers
        pid = main_pid(fleet)

        output, report, host, markdown = run_runbook(fleet, tmp_path, "heal")
        assert host["status"] == "changed", host
        assert host["findings"] == [f"smoke generation failed: HTTP 500: {RUNNER_DIED}"], host["findings"]
        assert host["actions"] == ["restart the ollama unit", PRELOAD], host["actions"]
        diagnosis, after = host["data"]["diagnosis"], host["data"]["after"]
        assert (diagnosis["smoke_ran"], diagnosis["smoke_ok"], diagnosis["model_loaded"]) == (True, False, True)
        assert (after["smoke_ok"], after["model_loaded"], after["smoke_error"]) == (True, True, ""), after
        assert_generated(host["data"]["chat"])
        assert host["summary"].startswith(f"{MODEL}: restart the ollama unit, {PRELOAD}; smoke answered in "), host
        assert host["summary"].endswith("; /chat generated"), host["summary"]
        smoke, chat = host["tables"][0]["rows"][3], host["tables"][0]["rows"][-1]
        assert smoke[:2] == ["smoke generation", f"HTTP 500: {RUNNER_DIED}"] and smoke[2].endswith(" ms"), smoke
        assert chat == ["/chat", "", "HTTP 200, mode generated, degraded False"], chat
        assert recap(output)[OLLAMA]["changed"] >= 1, recap(output)
        # restarted (a new process, without the fault rule), the model loaded, clients answered generated again
        assert main_pid(fleet) not in (0, pid)
        assert json.loads(http(fleet.host(OLLAMA), f"{OLLAMA_URL}/_faults")[1]) == {"rules": []}
        assert MODEL in loaded(fleet)
        assert_generated(ask(fleet))
        assert_no_secret(output, report, markdown)

        assert_second_run_changes_nothing(fleet, tmp_path)
    finally:
        restore(fleet)


def test_slow_generations_are_degraded_with_the_figure_and_nothing_is_repaired(fleet, tmp_path):
    try:
        keep_loaded(fleet)
        status, text = ollama_call(fleet, "POST", "/_control/settings", {"token_delay_ms": TOKEN_DELAY_MS})
        assert status == 200, text
        pid = main_pid(fleet)

        output, report, host, markdown = run_runbook(fleet, tmp_path, "slow", aegis_runbook_llm_api_url="")
        assert report["counts"] == {"degraded": 1}, report["counts"]
        assert host["status"] == "degraded" and host["actions"] == [], host
        after = host["data"]["after"]
        taken = (after["smoke_ms"] - after["smoke_load_ms"]) / 1000
        assert taken > 3, after
        finding = f"degraded: the smoke generation took {taken:.3g} s without the model load, over the 3.0 s target"
        assert host["findings"] == [finding], host["findings"]
        assert host["summary"].endswith("; " + finding.removeprefix("degraded: ")), host["summary"]
        assert host["data"]["diagnosis"]["smoke_ok"] is True and after["smoke_ok"] is True  # slow, not failing
        assert host["data"]["chat"] == {}  # no /chat check in this run
        # nothing repaired for a slowness: no restart, no re-pull, no preload (it was loaded), no change
        assert main_pid(fleet) == pid
        assert all(counts["changed"] == 0 for counts in recap(output).values()), recap(output)
        assert "runbook_llm failed" not in output  # a degradation is reported, the run does not fail
        assert_no_secret(output, report, markdown)
    finally:
        restore(fleet)


def test_a_deleted_model_is_pulled_again_preloaded_and_chat_generates_again(fleet, tmp_path):
    digest = installed(fleet).get(MODEL)
    assert digest, f"{MODEL} not on Ollama before the test"
    try:
        pid = main_pid(fleet)
        status, text = ollama_call(fleet, "DELETE", "/api/delete", {"model": MODEL})
        assert status == 200, text
        assert ask(fleet)["degraded"] is True  # the API falls back to extractive answers

        output, report, host, markdown = run_runbook(fleet, tmp_path, "heal")
        assert host["status"] == "changed", host
        assert host["findings"] == [f"{MODEL} is not installed"], host["findings"]
        assert host["actions"] == [f"pull {MODEL} (digest {digest[:12]})", PRELOAD], host["actions"]
        diagnosis, after = host["data"]["diagnosis"], host["data"]["after"]
        assert (diagnosis["answering"], diagnosis["installed"], diagnosis["smoke_ran"]) == (True, False, False)
        assert (after["installed"], after["digest"], after["smoke_ok"], after["model_loaded"]) == (
            True, digest, True, True), after
        assert_generated(host["data"]["chat"])
        assert host["summary"].startswith(f"{MODEL}: pull {MODEL} (digest {digest[:12]}), {PRELOAD}; smoke "), host
        assert host["summary"].endswith("; /chat generated"), host["summary"]
        assert host["tables"][0]["rows"][1] == [f"{MODEL} installed (digest)", "no", digest[:12]]
        assert host["tables"][1]["rows"][0][1].startswith("no GPU"), host["tables"][1]  # no nvidia-smi: not failed
        assert recap(output)[OLLAMA]["changed"] >= 1, recap(output)
        assert installed(fleet).get(MODEL) == digest and MODEL in loaded(fleet)
        assert main_pid(fleet) == pid  # Ollama answered: not restarted
        assert_generated(ask(fleet))
        assert_no_secret(output, report, markdown)

        assert_second_run_changes_nothing(fleet, tmp_path)
    finally:
        restore(fleet)
