"""aegis.rag.ollama_model through ansible-playbook against the Ollama double (tests/doubles/ollama.py)."""

from __future__ import annotations

import httpx
import pytest

SYSTEM_PYTHON = "/usr/bin/python3"


def model_task(ollama, name: str, task_name: str = "model", **options) -> dict:
    return {"name": task_name, "aegis.rag.ollama_model": {"ollama_url": ollama.url, "name": name, **options}}


def installed(ollama) -> set[str]:
    return {m["name"] for m in httpx.get(ollama.url + "/api/tags", timeout=5).json()["models"]}


def test_present_pulls_once_and_is_idempotent(run_tasks, ollama):
    assert "smollm2:135m" not in installed(ollama)
    play = run_tasks([model_task(ollama, "smollm2:135m", "first"), model_task(ollama, "smollm2:135m", "second")],
                     python=SYSTEM_PYTHON)
    first, second = play.result("first"), play.result("second")
    assert first["changed"] and first["present"] and first["msg"] == "pulled smollm2:135m"
    assert len(first["digest"]) == 64 and first["size"] == 270_898_672
    statuses = [p["status"] for p in first["progress"]]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success" and len(statuses) < 15
    assert not second["changed"] and second["digest"] == first["digest"] and second["progress"] == []
    assert "smollm2:135m" in installed(ollama)


def test_check_mode_and_diff_change_nothing(run_tasks, ollama):
    play = run_tasks([model_task(ollama, "smollm2:135m")], check=True, diff=True, python=SYSTEM_PYTHON)
    result = play.result("model")
    assert result["changed"] and result["msg"] == "would pull smollm2:135m"
    assert result["diff"]["before"] == {"name": "smollm2:135m", "present": False, "digest": None}
    assert result["diff"]["after"] == {"name": "smollm2:135m", "present": True, "digest": None}
    assert "smollm2:135m" not in installed(ollama)


def test_absent_removes_once_check_mode_keeps_it(run_tasks, ollama):
    ollama.install("smollm2:135m")
    check = run_tasks([model_task(ollama, "smollm2:135m", state="absent")], check=True, diff=True,
                      python=SYSTEM_PYTHON).result("model")
    assert check["changed"] and check["diff"]["after"]["present"] is False
    assert "smollm2:135m" in installed(ollama)
    play = run_tasks([model_task(ollama, "smollm2:135m", "first", state="absent"),
                      model_task(ollama, "smollm2:135m", "second", state="absent")], python=SYSTEM_PYTHON)
    assert play.result("first")["changed"] and not play.result("second")["changed"]
    assert "smollm2:135m" not in installed(ollama)


def test_latest_changes_only_when_the_registry_digest_changes(run_tasks, ollama):
    same = run_tasks([model_task(ollama, "deepseek-r1:7b", state="latest")], diff=True,
                     python=SYSTEM_PYTHON).result("model")
    assert not same["changed"] and same["msg"] == "deepseek-r1:7b is up to date"
    ollama.set_registry("deepseek-r1:7b", revision=2, family="qwen2", size=4_683_075_271,
                        capabilities=["completion", "thinking"])
    newer = run_tasks([model_task(ollama, "deepseek-r1:7b", state="latest")], diff=True,
                      python=SYSTEM_PYTHON).result("model")
    assert newer["changed"] and newer["previous_digest"] == same["digest"] and newer["digest"] != same["digest"]
    assert newer["diff"]["before"]["digest"] == same["digest"] and newer["diff"]["after"]["digest"] == newer["digest"]
    again = run_tasks([model_task(ollama, "deepseek-r1:7b", state="latest")], python=SYSTEM_PYTHON).result("model")
    assert not again["changed"]


def test_pull_error_after_http_200_fails_with_progress(run_tasks, ollama):
    ollama.set_registry("broken:1b", fail="max retries exceeded: unexpected EOF")
    result = run_tasks([model_task(ollama, "broken:1b")], expect_failure=True, python=SYSTEM_PYTHON).result("model")
    assert result["msg"] == "pull of broken:1b failed: max retries exceeded: unexpected EOF"
    assert result["progress"] and result["progress"][0]["status"] == "pulling manifest"
    assert "broken:1b" not in installed(ollama)


def test_unknown_model_fails_cleanly(run_tasks, ollama):
    result = run_tasks([model_task(ollama, "nosuchmodel:13b")], expect_failure=True,
                       python=SYSTEM_PYTHON).result("model")
    assert "pull of nosuchmodel:13b failed" in result["msg"] and "file does not exist" in result["msg"]


def test_model_test_reports_timings(run_tasks, ollama):
    ollama.install("llama3.2:1b", load_seconds=0.3)
    result = run_tasks([model_task(ollama, "llama3.2:1b", test={
        "prompt": "Snapshots are uploaded to the backup bucket every night", "expect": "(?i)snapshots"})],
        python=SYSTEM_PYTHON).result("model")
    test = result["test"]
    assert test["passed"] and "snapshots uploaded" in test["response"]
    assert test["load_duration_ms"] >= 250 and test["latency_ms"] >= test["load_duration_ms"]
    assert test["eval_count"] > 0 and test["tokens_per_second"] > 0


def test_model_test_removes_leaked_think_block(run_tasks, ollama):
    ollama.install("oldserver:1b", leak_think=True)
    result = run_tasks([model_task(ollama, "oldserver:1b", test={"prompt": "nightly snapshots"})],
                       python=SYSTEM_PYTHON).result("model")
    assert result["test"]["passed"] and "<think>" not in result["test"]["response"]


def test_model_test_mismatch_fails_with_details(run_tasks, ollama):
    result = run_tasks([model_task(ollama, "deepseek-r1:7b", test={"prompt": "hello there", "expect": "^READY$"})],
                       expect_failure=True, python=SYSTEM_PYTHON).result("model")
    assert "test answer does not match '^READY$'" in result["msg"]
    assert result["test"]["passed"] is False and result["test"]["response"]


def test_model_test_timeout_fails_within_bound(run_tasks, ollama):
    ollama.faults.add(path="^/api/generate$", latency_ms=20000)
    play = run_tasks([model_task(ollama, "deepseek-r1:7b", test={"prompt": "hello", "timeout": 1})],
                     expect_failure=True, python=SYSTEM_PYTHON)
    result = play.result("model")
    assert "test generation failed" in result["msg"] and "timed out" in result["msg"]
    assert result["test"]["latency_ms"] < (1 + 5) * 1000


def test_ollama_down_fails_cleanly(run_tasks, ollama):
    ollama.stop()
    play = run_tasks([model_task(ollama, "deepseek-r1:7b", timeout=2)], expect_failure=True, python=SYSTEM_PYTHON)
    result = play.result("model")
    assert result["msg"].startswith(f"cannot list the models of {ollama.url}")
    assert "Connection refused" in result["msg"] and "Traceback" not in play.stdout


@pytest.mark.parametrize("options,fragment", [
    ({"state": "absent", "test": {"prompt": "x"}}, "test cannot be used with state=absent"),
    ({"test": {"expect": "(unclosed"}}, "test.expect is not a valid regular expression"),
    ({"state": "newest"}, "value of state must be one of: present, absent, latest"),
    ({"test": {"timeout": 0}}, "test.timeout must be greater than 0"),
])
def test_bad_parameters_fail_with_a_clear_message(run_tasks, ollama, options, fragment):
    result = run_tasks([model_task(ollama, "deepseek-r1:7b", **options)], expect_failure=True,
                       python=SYSTEM_PYTHON).result("model")
    assert fragment in result["msg"]


def test_missing_name_fails(run_tasks, ollama):
    result = run_tasks([{"name": "model", "aegis.rag.ollama_model": {"ollama_url": ollama.url}}],
                       expect_failure=True, python=SYSTEM_PYTHON).result("model")
    assert "missing required arguments: name" in result["msg"]
