"""playbooks/runbook_llm.yml against the Ollama double: check mode changes nothing and says what it would do
for a missing model; a broken model is deleted and pulled again; generations failing (fault injection) and Ollama
down end in a failure with a clear report. Degradations against the manual's targets, each making the host
"degraded" (not ok) and named in the report, nothing repaired for them: a smoke generation slower than 3 s (the
double's tokens paced; here in check mode), a slow model load, a GPU's memory over 85 % (a fake nvidia-smi), and
the API's recent generations (P95 over 3 s, failures over 1 %) from two reads of a /metrics page or from a real
Prometheus (backfilled with the monitoring role's recording rules).

Untested here (no systemd on the doubles' hosts): the restart of the ollama unit; every run sets
aegis_runbook_llm_manage_service=false, and the report then says the restart was skipped. The fleet
(tests/fleet/test_runbook_llm.py) covers the restart, a missing model pulled and preloaded with /chat generating
again and a second run changing nothing, and the real run of a slow smoke generation."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.module_python import MODULE_PYTHON
from tests.runbooks.metrics_doubles import backfilled_prometheus

pytestmark = pytest.mark.slow

MODEL = "deepseek-r1:7b"
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


# -- degradations ------------------------------------------------------------------------------------------------
GENERATION = "aegis_generation_duration_seconds"
SLOW_BOUNDS = ("0.05", "0.1", "0.25", "0.5", "1.0", "2.0", "3.0", "5.0", "10.0", "20.0", "30.0", "60.0", "+Inf")


def generations(buckets: dict[str, int], failed: int) -> str:
    """An Aegis API /metrics page of the generation histogram (cumulative counts of some buckets; each bucket not
    given holds what the one below it holds) and the generation counters, as prometheus_client writes them."""
    counts, last = {}, 0
    for le in SLOW_BOUNDS:
        last = buckets.get(le, last)
        counts[le] = last
    n = counts["+Inf"]
    lines = [f"# TYPE {GENERATION} histogram"]
    lines += [f'{GENERATION}_bucket{{backend="ollama",le="{le}"}} {float(c)}' for le, c in counts.items()]
    lines += [f'{GENERATION}_count{{backend="ollama"}} {float(n)}', f'{GENERATION}_sum{{backend="ollama"}} {n * 1.5}',
              "# TYPE aegis_generations_total counter", f'aegis_generations_total{{backend="ollama"}} {float(n)}',
              "# TYPE aegis_generation_failures_total counter",
              f'aegis_generation_failures_total{{backend="ollama",reason="timeout"}} {float(failed)}']
    return "\n".join(lines) + "\n"





def keep_loaded(ollama, keep_alive: str | int = "5m") -> None:
    """Load the model for `keep_alive` (0 unloads it), as a preload does."""
    httpx.post(ollama.url + "/api/generate", json={"model": MODEL, "keep_alive": keep_alive},
               timeout=10).raise_for_status()


def test_check_mode_judges_a_slow_smoke_generation_degraded_too(run_playbook, ollama):
    """Check mode judges its diagnosis as a run does: degraded, nothing it would do. The run itself (the figure in
    the finding, changed=0, the run not failing): the fleet's
    test_slow_generations_are_degraded_with_the_figure_and_nothing_is_repaired."""
    keep_loaded(ollama)  # installed and loaded: nothing to repair
    ollama.configure(token_delay_ms=450)  # Ollama answers, each token slowly: the smoke generation takes > 3 s
    dry = run_llm(run_playbook, ollama, check=True)
    host = dry.host("ollama-a")
    assert host["status"] == "degraded" and host["actions"] == [], dry.describe()
    assert dry.report["counts"] == {"degraded": 1}
    assert [f for f in host["findings"] if f.startswith("degraded: the smoke generation took ")], host["findings"]


def test_slow_load_full_gpu_and_the_api_s_recent_generations(run_playbook, ollama, api_metrics, tmp_path):
    """The model loads in 1.5 s (target lowered to 1 s), a GPU's memory is 92 % used, and between the two reads of
    the API's /metrics 40 generations: P95 4.6 s, 2 failed (5 %); the API's past (fast, none failed) not counted."""
    ollama.install(MODEL, load_seconds=1.5)
    keep_loaded(ollama, 0)
    smi = tmp_path / "gpu-bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text("#!/bin/sh\ncase \"$*\" in\n"
                   "  *--query-gpu=*) echo '0, NVIDIA L4, GPU-5d2c9c3e, 23034, 21200, 1834, 97, 70, 550.54.15' ;;\n"
                   "  *) echo '| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |' ;;\nesac\n")
    smi.chmod(0o755)
    python = tmp_path / "python"  # the hosts' Python, with the fake nvidia-smi on its PATH
    python.write_text(f'#!/bin/sh\nPATH="{smi.parent}:$PATH" exec {MODULE_PYTHON} "$@"\n')
    python.chmod(0o755)
    past = {"1.0": 5000}
    metrics = api_metrics(generations(past, failed=0),
                          generations({"1.0": 5020, "2.0": 5030, "5.0": 5040}, failed=2))

    out = run_llm(run_playbook, ollama, aegis_runbook_llm_load_max=1, aegis_runbook_llm_api_metrics_url=metrics,
                  aegis_runbook_latency_window=1, ansible_python_interpreter=str(python))
    host = out.host("ollama-a")
    assert host["status"] == "degraded", out.describe()
    assert host["actions"] == [f"preload {MODEL} (keep_alive 5m)"]  # it was not loaded: preloaded, still degraded
    degraded = [f for f in host["findings"] if f.startswith("degraded: ")]
    load_s = host["data"]["diagnosis"]["smoke_load_ms"] / 1000
    assert degraded == [
        f"degraded: loading {MODEL} took {load_s:.3g} s, over the 1.0 s target",
        "degraded: GPU 0 (NVIDIA L4) memory 92% used, over the 85.0% target",
        # rank 38 of 40: in (3, 5], which holds 10: 3 + 2 * 8/10
        "degraded: generation P95 4.6 s over the 3.0 s target (the API, /metrics, 40 generations in 1 s)",
        "degraded: 5% of generations failed, over the 1% target (the API, /metrics, 40 generations in 1 s)",
    ], host["findings"]
    gpus = host["tables"][1]
    assert gpus["columns"] == ["index", "name", "memory free / total MiB", "memory used %", "utilisation %"]
    assert gpus["rows"] == [[0, "NVIDIA L4", "1834 / 23034", "92", 97]]
    assert host["tables"][2]["rows"] == [["4.6 s", "5%", "the API, /metrics, 40 generations in 1 s"]]


def test_the_api_s_recent_generations_from_prometheus(run_playbook, ollama, tmp_path):
    if not shutil.which("prometheus") and not Path("/usr/bin/prometheus").exists():
        pytest.skip("prometheus is not installed")
    now = int(time.time())
    (tmp_path / "prom").mkdir()
    prom = backfilled_prometheus(tmp_path / "prom", {
        "aegis:generation_duration_seconds:p95": [(now - 120, 2.0), (now - 30, 4.2)],
        "aegis:generation_success:ratio_rate5m": [(now - 120, 1.0), (now - 30, 0.995)]})
    try:
        out = run_llm(run_playbook, ollama, aegis_runbook_prometheus_url=prom.url)
    finally:
        prom.stop()
    host = out.host("ollama-a")
    assert host["status"] == "degraded", out.describe()
    assert [f for f in host["findings"] if f.startswith("degraded: ")] == [
        "degraded: generation P95 4.2 s over the 3.0 s target (the API, Prometheus, last 5m)"]
    assert host["tables"][2]["rows"] == [["4.2 s", "0.5%", "the API, Prometheus, last 5m"]]
    assert host["data"]["recent_generations"]["source"] == "prometheus"
