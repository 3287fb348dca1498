"""Harness of the runbook tests: the collection's playbooks run through the real `ansible-playbook`
against the Qdrant double and moto S3 on loopback.

Every inventory host is in the `qdrant` group with a local connection and `aegis_runbook_qdrant_url`
pointing at a Qdrant double, so the plays run exactly as on a fleet (API calls delegated to the
controller). Each run writes its report into a fresh directory; `Run.report` is the JSON report and
`Run.markdown` the Markdown one."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.collection.conftest import COLLECTIONS, VENV_BIN, ansible_env
from tests.module_python import MODULE_PYTHON
from tests.runbooks.metrics_doubles import MetricsPages, backfilled_prometheus

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    report: dict
    markdown: str

    def describe(self) -> str:
        return f"rc={self.rc}\nstdout:\n{self.stdout[-8000:]}\nstderr:\n{self.stderr[-3000:]}"

    def host(self, name: str = "qdrant-a") -> dict:
        return self.report["hosts"][name]


@pytest.fixture
def run_playbook(tmp_path, qdrant, s3):
    """run_playbook(name, hosts={inventory name: qdrant service}, check=False, expect_failure=False,
    ollama_hosts={inventory name: ollama service}, api_hosts={inventory name: Aegis API URL}, **extra_vars) -> Run,
    for playbooks/<name>.yml (the thin wrapper, so the import is tested too). With only ollama_hosts and/or
    api_hosts, the inventory has no qdrant group. api_hosts are in the `aegis_api` group with
    aegis_runbook_api_url set to their URL.
    The S3 connection and the Qdrant api key are passed as the playbooks' variables."""
    return playbook_runner(tmp_path, qdrant, s3)


def playbook_runner(tmp_path: Path, qdrant, s3):
    """The `run` of run_playbook, its runs under tmp_path (also for a fixture of a wider scope than a test's)."""
    counter = {"n": 0}

    def run(name: str, hosts: dict | None = None, check: bool = False, diff: bool = True,
            expect_failure: bool = False, ollama_hosts: dict | None = None, api_hosts: dict | None = None,
            **extra_vars) -> Run:
        counter["n"] += 1
        workdir = tmp_path / f"run{counter['n']}"
        reports = workdir / "reports"
        workdir.mkdir()
        local = {"ansible_connection": "local", "ansible_python_interpreter": MODULE_PYTHON}
        groups = {}
        if hosts is not None or (ollama_hosts is None and api_hosts is None):
            groups["qdrant"] = {"hosts": {
                host: {**local, "aegis_runbook_qdrant_url": service.url,
                       "aegis_runbook_qdrant_api_key": service.api_key or ""}
                for host, service in (hosts or {"qdrant-a": qdrant}).items()}}
        if ollama_hosts:  # {inventory name: ollama service}, in the `ollama` group
            groups["ollama"] = {"hosts": {host: {**local, "aegis_runbook_ollama_url": service.url}
                                          for host, service in ollama_hosts.items()}}
        if api_hosts:  # {inventory name: Aegis API URL}, in the `aegis_api` group
            groups["aegis_api"] = {"hosts": {host: {**local, "aegis_runbook_api_url": url}
                                             for host, url in api_hosts.items()}}
        inventory = {"all": {"children": groups}}
        (workdir / "hosts.yml").write_text(yaml.safe_dump(inventory))
        variables = {"aegis_report_dir": str(reports), "aegis_backup_s3_endpoint_url": s3.endpoint_url,
                     "aegis_backup_s3_region": s3.region, "aegis_backup_s3_access_key": s3.access_key,
                     "aegis_backup_s3_secret_key": s3.secret_key,
                     "aegis_runbook_latency_window": 1,  # seconds between two reads of /metrics (10 by default)
                     **extra_vars}
        (workdir / "vars.json").write_text(json.dumps(variables))
        cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(workdir / "hosts.yml"), "-e", f"@{workdir / 'vars.json'}",
               str(PLAYBOOKS / f"{name}.yml")]
        cmd += ["--check"] if check else []
        cmd += ["--diff"] if diff else []
        return run_ansible(cmd, workdir, reports, name, expect_failure, one_report=True)

    return run


def run_ansible(cmd: list[str], workdir: Path, reports: Path, report: str, expect_failure: bool,
                one_report: bool = False) -> Run:
    """Run an ansible-playbook command line from workdir; the Run with the newest `<report>-*` JSON and Markdown
    reports in `reports`. It must fail when expect_failure, else succeed; with one_report, exactly one report of
    each kind must be there."""
    env = ansible_env(workdir, ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
                      ANSIBLE_PIPELINING="1")
    proc = subprocess.run(cmd, check=False, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    json_reports = sorted(reports.glob(f"{report}-*.json"))
    md_reports = sorted(reports.glob(f"{report}-*.md"))
    out = Run(proc.returncode, proc.stdout, proc.stderr,
              json.loads(json_reports[-1].read_text()) if json_reports else {},
              md_reports[-1].read_text() if md_reports else "")
    if one_report:
        assert len(json_reports) == len(md_reports) == 1, f"expected one report of each kind\n{out.describe()}"
    if expect_failure:
        assert out.rc != 0, f"expected the play to fail\n{out.describe()}"
    else:
        assert out.rc == 0, f"play failed\n{out.describe()}"
    return out


@pytest.fixture
def prometheus_with(tmp_path):
    """prometheus_with(series) -> URL of a real Prometheus whose TSDB holds `series`, stopped at the end."""
    started = []

    def start(series):
        if not shutil.which("prometheus") and not Path("/usr/bin/prometheus").exists():
            pytest.skip("prometheus is not installed")
        workdir = tmp_path / f"prom{len(started)}"
        workdir.mkdir()
        started.append(backfilled_prometheus(workdir, series))
        return started[-1].url

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def api_metrics():
    """api_metrics(*texts) -> URL of a /metrics page answering the texts in turn (MetricsPages)."""
    pages = MetricsPages()
    yield pages
    for server in pages.servers:
        server.shutdown()
        server.server_close()
