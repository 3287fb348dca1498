"""ollama_model: idempotence decisions, pull stream handling, the timed test, argument errors."""

from __future__ import annotations

import json

import pytest
from ansible_collections.aegis.rag.plugins.module_utils.ollama import find_model, normalize_name
from ansible_collections.aegis.rag.plugins.modules import ollama_model as om

# -- pure decisions


@pytest.mark.parametrize("state,installed,expected", [
    ("present", False, ("pull", True)), ("present", True, (None, False)),
    ("absent", True, ("delete", True)), ("absent", False, (None, False)),
    ("latest", False, ("pull", True)), ("latest", True, ("pull", False)),
])
def test_desired_action(state, installed, expected):
    assert om.desired_action(state, installed) == expected


def test_names_without_tag_mean_latest():
    assert normalize_name("llama3") == "llama3:latest"
    assert normalize_name("registry.local:5000/team/llama3") == "registry.local:5000/team/llama3:latest"
    assert normalize_name("deepseek-r1:7b") == "deepseek-r1:7b"
    assert normalize_name("registry.ollama.ai/library/Llama3") == "llama3:latest"
    models = [{"name": "llama3:latest", "model": "llama3:latest"}, {"name": "deepseek-r1:7b"}]
    assert find_model(models, "llama3")["name"] == "llama3:latest"
    assert find_model(models, "deepseek-r1") is None


def test_progress_merges_repeated_statuses():
    p = om.Progress()
    p.add({"status": "pulling manifest"})
    for done in range(0, 1001, 100):
        p.add({"status": "pulling 96c415656d37", "digest": "sha256:96c4", "total": 1000, "completed": done})
    p.add({"status": "verifying sha256 digest"})
    p.add({"status": "success"})
    assert p.lines == 14 and p.succeeded
    assert p.as_list() == [{"status": "pulling manifest"},
                           {"status": "pulling 96c415656d37", "digest": "sha256:96c4", "total": 1000,
                            "completed": 1000},
                           {"status": "verifying sha256 digest"}, {"status": "success"}]


def test_progress_is_capped():
    p = om.Progress()
    for i in range(om.PROGRESS_LIMIT + 5):
        p.add({"status": f"layer {i}"})
    assert len(p.as_list()) == om.PROGRESS_LIMIT + 1 and "5 more" in p.as_list()[-1]["status"]


class StreamClient:
    def __init__(self, events):
        self.events = events

    def stream_json_lines(self, *args, **kwargs):
        yield from self.events


def test_pull_fails_on_error_line_after_http_200():
    client = StreamClient([{"status": "pulling manifest"}, {"error": "max retries exceeded: EOF"}])
    with pytest.raises(om.PullFailed) as exc:
        om.pull(client, "m", False, 10)
    assert exc.value.msg == "max retries exceeded: EOF"
    assert exc.value.progress.as_list() == [{"status": "pulling manifest"}]


def test_pull_without_success_fails():
    with pytest.raises(om.PullFailed, match="without a success"):
        om.pull(StreamClient([{"status": "pulling manifest"}]), "m", False, 10)


def test_test_report_figures():
    body = {"response": "<think>hmm</think>\n Ready.", "load_duration": 1_200_000_000,
            "total_duration": 2_000_000_000, "eval_count": 40, "eval_duration": 800_000_000}
    report = om.test_report(body, r"(?i)ready", 2100.04)
    assert report == {"response": "Ready.", "latency_ms": 2100.0, "load_duration_ms": 1200.0,
                      "total_duration_ms": 2000.0, "eval_count": 40, "tokens_per_second": 50.0, "passed": True}


def test_test_report_failures_keep_details():
    with pytest.raises(om.TestFailed, match="does not match") as exc:
        om.test_report({"response": "Hello there", "eval_count": 2, "eval_duration": 0}, "^ready$", 10)
    assert exc.value.report["response"] == "Hello there" and exc.value.report["tokens_per_second"] is None
    with pytest.raises(om.TestFailed, match="empty answer"):
        om.test_report({"response": "<think>only thinking</think>"}, None, 10)


# -- main() against a scripted in-process Ollama

class FakeOllama:
    """Installed models and a registry of pullable digests; answers the five endpoints the module uses."""

    def __init__(self, server):
        self.installed: dict[str, str] = {}
        self.registry: dict[str, str] = {"tiny:latest": "a" * 64}
        self.pull_error: str | None = None
        self.generate_reply: dict = {"response": "pong", "eval_count": 4, "eval_duration": 100_000_000,
                                     "load_duration": 5_000_000, "total_duration": 150_000_000}
        server.handler = self.handle
        self.server = server

    def calls(self, path):
        return [s for s in self.server.seen if s.path == path]

    def handle(self, req):
        body = json.loads(req.body or b"{}")
        name = normalize_name(body.get("model", "")) if body.get("model") else ""
        if req.path == "/api/tags":
            return 200, {}, {"models": [{"name": n, "model": n, "digest": d, "size": 1234}
                                        for n, d in self.installed.items()]}
        if req.path == "/api/pull":
            if name not in self.registry:
                return 200, {}, b'{"status":"pulling manifest"}\n{"error":"pull model manifest: file does not exist"}\n'
            lines = [{"status": "pulling manifest"},
                     {"status": "pulling aaaa", "digest": "sha256:aaaa", "total": 10, "completed": 5},
                     {"status": "pulling aaaa", "digest": "sha256:aaaa", "total": 10, "completed": 10}]
            if self.pull_error:
                lines.append({"error": self.pull_error})
            else:
                self.installed[name] = self.registry[name]
                lines.append({"status": "success"})
            return 200, {"Content-Type": "application/x-ndjson"}, "".join(json.dumps(x) + "\n" for x in lines).encode()
        if req.path == "/api/delete":
            if self.installed.pop(name, None) is None:
                return 404, {}, {"error": f"model '{body['model']}' not found"}
            return 200, {}, b""
        if req.path == "/api/generate":
            return 200, {}, self.generate_reply
        return 404, {}, {"error": "not found"}


@pytest.fixture
def ollama(http_server):
    return FakeOllama(http_server)


def args(ollama, **kw):
    return {"ollama_url": ollama.server.url, "name": "tiny", **kw}


def test_present_pulls_once_then_is_idempotent(call_module, ollama):
    first = call_module(om.main, args(ollama))
    assert first["changed"] and first["present"] and first["digest"] == "a" * 64 and first["size"] == 1234
    assert first["progress"][-1] == {"status": "success"} and len(first["progress"]) == 3
    second = call_module(om.main, args(ollama))
    assert not second["changed"] and second["progress"] == []
    assert len(ollama.calls("/api/pull")) == 1


def test_check_mode_predicts_without_pulling_and_diff_shows_it(call_module, ollama):
    result = call_module(om.main, args(ollama), check=True, diff=True)
    assert result["changed"] and result["msg"] == "would pull tiny"
    assert result["diff"] == {"before": {"name": "tiny", "present": False, "digest": None},
                              "after": {"name": "tiny", "present": True, "digest": None}}
    assert ollama.calls("/api/pull") == [] and ollama.installed == {}


def test_latest_changes_only_when_the_digest_changes(call_module, ollama):
    ollama.installed["tiny:latest"] = "a" * 64
    same = call_module(om.main, args(ollama, state="latest"), diff=True)
    assert not same["changed"] and len(ollama.calls("/api/pull")) == 1
    ollama.registry["tiny:latest"] = "b" * 64
    newer = call_module(om.main, args(ollama, state="latest"), diff=True)
    assert newer["changed"] and newer["previous_digest"] == "a" * 64 and newer["digest"] == "b" * 64
    assert newer["diff"]["before"]["digest"] == "a" * 64 and newer["diff"]["after"]["digest"] == "b" * 64


def test_latest_in_check_mode_does_not_pull(call_module, ollama):
    ollama.installed["tiny:latest"] = "a" * 64
    result = call_module(om.main, args(ollama, state="latest"), check=True)
    assert not result["changed"] and "check mode cannot tell" in result["msg"]
    assert ollama.calls("/api/pull") == []


def test_absent_deletes_once(call_module, ollama):
    ollama.installed["tiny:latest"] = "a" * 64
    assert call_module(om.main, args(ollama, state="absent"), check=True)["changed"]
    assert ollama.installed  # check mode kept it
    first = call_module(om.main, args(ollama, state="absent"))
    assert first["changed"] and not first["present"] and ollama.installed == {}
    assert not call_module(om.main, args(ollama, state="absent"))["changed"]


def test_error_line_after_200_fails_with_progress(call_module, ollama):
    ollama.pull_error = "digest mismatch, file must be downloaded again"
    result = call_module(om.main, args(ollama))
    assert result["failed"] and "pull of tiny failed: digest mismatch" in result["msg"]
    assert result["progress"][-1]["completed"] == 10


def test_unknown_model_fails_cleanly(call_module, ollama):
    result = call_module(om.main, args(ollama, name="nosuch:1b"))
    assert result["failed"] and "file does not exist" in result["msg"]


def test_model_test_passes_and_reports_speed(call_module, ollama):
    result = call_module(om.main, args(ollama, test={"prompt": "ping", "expect": "^pong$"}))
    assert result["test"]["passed"] and result["test"]["tokens_per_second"] == 40.0
    sent = json.loads(ollama.calls("/api/generate")[0].body)
    assert sent == {"model": "tiny", "prompt": "ping", "stream": False, "think": False}


def test_model_test_failure_reports_details_and_the_change(call_module, ollama):
    result = call_module(om.main, args(ollama, test={"prompt": "ping", "expect": "^ready$"}))
    assert result["failed"] and result["changed"] and "does not match" in result["msg"]
    assert result["test"]["response"] == "pong" and result["test"]["passed"] is False


def test_model_test_is_skipped_in_check_mode(call_module, ollama):
    ollama.installed["tiny:latest"] = "a" * 64
    result = call_module(om.main, args(ollama, test={"prompt": "ping"}), check=True)
    assert result["test"] == {"skipped": True, "passed": None} and ollama.calls("/api/generate") == []


@pytest.mark.parametrize("extra,fragment", [
    ({"state": "absent", "test": {"prompt": "x"}}, "test cannot be used with state=absent"),
    ({"test": {"expect": "(unclosed"}}, "not a valid regular expression"),
    ({"state": "gone"}, "value of state must be one of"),
    ({"name": "  "}, "name must not be empty"),
])
def test_bad_parameters_fail_clearly(call_module, ollama, extra, fragment):
    result = call_module(om.main, args(ollama, **extra))
    assert result["failed"] and fragment in result["msg"]
    assert ollama.server.seen == []


def test_server_down_fails_cleanly(call_module, closed_port_url, monkeypatch):
    from ansible_collections.aegis.rag.plugins.module_utils import http_client as http_mod
    monkeypatch.setattr(http_mod.HttpClient, "_sleep_before_retry", lambda self, attempt: None)
    result = call_module(om.main, {"ollama_url": closed_port_url, "name": "tiny"})
    assert result["failed"] and result["msg"].startswith(f"cannot list the models of {closed_port_url}")
    assert "refused" in result["msg"].lower() and result["status"] is None
