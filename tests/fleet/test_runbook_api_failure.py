"""runbook_api_failure on the fleet's real hosts, run as an operator runs it (ansible-playbook with the fleet's
inventory, its variables from a file: the calls from each API host itself, /chat through the load balancer).

Each test breaks one thing, runs the runbook, asserts the healed fleet and the report, runs it again (no change),
and restores what it broke even when it fails:
- an API host left in maintenance on HAProxy while healthy: put back, and said so;
- an invalid setting in an API host's environment file (the unit crash-loops): the journal's cause quoted, the
  environment re-applied from aegis.rag.aegis_api (the API key still in it, the release unchanged), the host ready
  and back in the pool;
- a broken release made current on one API host: rolled back to the fleet's release, `previous` not on the broken
  one, every API host on one release and in the pool;
- Qdrant stopped on the data host: named as a dependency outage, no API host restarted, drained or rolled back.
In none of them is a secret in the report, nor the API key in the output."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from tests.fleet.conftest import FLEET_TEST, LB_TOOL, VARS, hosts_of, http, load_json_report, recap

pytestmark = FLEET_TEST

RUNBOOK = "playbooks/runbook_api_failure.yml"
LB = hosts_of("loadbalancer")[0]
API = hosts_of("aegis_api")
DATA = hosts_of("qdrant")[0]
API_KEY = VARS["all"]["fleet_api_key"]
SECRETS = [API_KEY, VARS["all"]["fleet_qdrant_api_key"], VARS["all"]["fleet_redis_password"]]
ENV_FILE = "/etc/aegis/aegis-api.env"
RELEASES = "/opt/aegis/releases"
READY = "http://127.0.0.1:8910/ready"


def run_runbook(fleet, tmp_path: Path, name: str, expect_failure: bool = False, **variables) -> tuple[str, dict, str]:
    """The runbook with molecule/default/runbooks.yml's variables (and `variables`); its output, JSON report and
    Markdown report. A failing run (expect_failure) must fail."""
    reports = tmp_path / name
    lb_url = f"http://{fleet.address(LB)}:{VARS['loadbalancer']['loadbalancer_port']}"
    vars_file = tmp_path / f"{name}.json"
    vars_file.write_text(json.dumps({"aegis_runbook_delegate_to": "{{ inventory_hostname }}",
                                     "aegis_runbook_api_url": "http://127.0.0.1:8910",
                                     "aegis_runbook_api_chat_url": lb_url, "aegis_report_dir": str(reports),
                                     **variables}))
    output = fleet.playbook(RUNBOOK, f"--extra-vars=@{vars_file}", expect_failure=expect_failure)
    report = load_json_report(reports, "runbook_api_failure")
    return output, report, sorted(reports.glob("runbook_api_failure-*.md"))[-1].read_text()


def assert_no_secret(output: str, report: dict, markdown: str) -> None:
    text = json.dumps(report)
    for secret in SECRETS:
        assert secret not in text and secret not in markdown, "a secret is in the report"
    assert API_KEY not in output, "the API key is in the output"


def assert_no_change(output: str, report: dict) -> None:
    for name in API:
        host = report["hosts"][name]
        assert host["actions"] == [], (name, host)
    assert all(counts["changed"] == 0 for counts in recap(output).values()), recap(output)


def assert_second_run_changes_nothing(fleet, tmp_path: Path) -> None:
    output, report, _ = run_runbook(fleet, tmp_path, "again")
    assert report["status"] == "ok", report
    assert_no_change(output, report)


def assert_in_pool(fleet, server: str) -> None:
    """HAProxy has the API host ready and UP."""
    assert {k: fleet.lb_server(server)[k] for k in ("admin", "status")} == {"admin": "ready", "status": "UP"}


def put_back(fleet, server: str) -> None:
    lb = fleet.host(LB)
    lb.run(f"{LB_TOOL} set aegis_api {server} ready")
    lb.run(f"{LB_TOOL} --timeout 120 wait aegis_api {server} up")


def unit(host) -> dict:
    shown = host.check_output("systemctl show aegis-api --property=MainPID,NRestarts,ActiveEnterTimestamp,ActiveState")
    return dict(line.split("=", 1) for line in shown.splitlines())


def link(host, name: str) -> str:
    """Where /opt/aegis/<name> points ('' when missing)."""
    return host.run(f"readlink /opt/aegis/{name}").stdout.strip()


def wait_for_journal(host, since: int, text: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in host.run(f"journalctl --unit aegis-api --since @{since} --no-pager --output cat").stdout:
        assert time.monotonic() < deadline, f"no {text!r} in the aegis-api journal after {timeout_s:g} s"
        time.sleep(1)


def write_file(host, path: str, text: str, mode: str) -> None:
    encoded = base64.b64encode(text.encode()).decode()
    host.check_output(f"echo {encoded} | base64 -d > {path} && chmod {mode} {path}")


def now(host) -> int:
    return int(host.check_output("date +%s"))


def test_a_healthy_host_left_in_maintenance_is_put_back(fleet, tmp_path):
    server = API[-1]
    try:
        fleet.host(LB).check_output(f"{LB_TOOL} set aegis_api {server} maint")
        assert fleet.lb_server(server)["admin"] == "maint"

        output, report, markdown = run_runbook(fleet, tmp_path, "heal")
        host = report["hosts"][server]
        assert host["status"] == "changed", host
        assert host["actions"] == [f"put back on the load balancers (it was maint on {LB})"], host
        assert f"{LB} holds it out of the pool (maint) though it is ready: put back" in host["findings"], host
        [before] = host["data"]["load_balancers"]["diagnosis"]
        [after] = host["data"]["load_balancers"]["after"]
        assert (before["admin"], after["admin"], after["status"]) == ("maint", "ready", "UP"), host["data"]
        assert_in_pool(fleet, server)
        assert all(report["hosts"][name]["status"] == "ok" for name in API if name != server), report["hosts"]
        assert recap(output)[server]["changed"] >= 1
        assert f"put back on the load balancers (it was maint on {LB})" in markdown
        assert_no_secret(output, report, markdown)

        assert_second_run_changes_nothing(fleet, tmp_path)
    finally:
        put_back(fleet, server)
        fleet.wait_ready()


def test_an_invalid_setting_is_quoted_and_the_role_s_environment_re_applied(fleet, tmp_path):
    name = API[0]
    api = fleet.host(name)
    release = link(api, "current")
    try:
        # a busy access log: more lines than the runbook reads (aegis_runbook_api_journal_lines) before the crash
        api.check_output("python3 -c 'import urllib.request as u\nfor _ in range(80): u.urlopen(\"%s\").read()'"
                         % "http://127.0.0.1:8910/health")
        since = now(api)
        api.check_output(f"echo 'AEGIS_TOP_K=\"notanumber\"' >> {ENV_FILE}")
        api.check_output("systemctl restart aegis-api")
        wait_for_journal(api, since, "aegis-rag: invalid settings")  # it crash-loops

        output, report, markdown = run_runbook(fleet, tmp_path, "heal", aegis_runbook_api_journal_lines=60)
        host = report["hosts"][name]
        assert host["status"] == "changed" and host["data"]["after"]["state"] == "ready", host
        assert host["data"]["diagnosis"]["state"] == "down", host["data"]["diagnosis"]
        cause = host["data"]["journal_cause"]
        assert cause.startswith("aegis-rag: invalid settings: top_k (AEGIS_TOP_K): ") and "'notanumber'" in cause
        assert f"journal, newest cause (invalid settings): {cause}" in host["findings"], host["findings"]
        assert f"{ENV_FILE} differs from what aegis.rag.aegis_api writes (only on the host: AEGIS_TOP_K)" \
            in host["findings"], host["findings"]
        assert host["actions"] == [
            f"drain from the load balancers ({LB})",
            f"re-apply the aegis_api role's {ENV_FILE} (only on the host: AEGIS_TOP_K), restart and wait for /ready",
            "put back on the load balancers once ready"], host["actions"]
        assert host["data"]["rolled_back"] is False and host["data"]["config"]["unexpected"] == ["AEGIS_TOP_K"]
        assert link(api, "current") == release
        env = api.file(ENV_FILE)
        assert "AEGIS_TOP_K" not in env.content_string and env.mode == 0o600 and env.user == "root"
        assert f'AEGIS_API_KEYS="{API_KEY}"' in env.content_string  # the role's file: the API key kept
        assert http(api, READY)[0] == 200 and unit(api)["ActiveState"] == "active"
        assert_in_pool(fleet, name)
        assert_no_secret(output, report, markdown)

        assert_second_run_changes_nothing(fleet, tmp_path)
    finally:
        if "AEGIS_TOP_K" in api.file(ENV_FILE).content_string:
            api.run(f"sed -i '/^AEGIS_TOP_K=/d' {ENV_FILE}")
            api.run("systemctl restart aegis-api")
        put_back(fleet, name)
        fleet.wait_ready()


def test_a_broken_release_is_rolled_back_to_the_fleet_s_release(fleet, tmp_path):
    name = API[0]
    api = fleet.host(name)
    current, previous = link(api, "current"), link(api, "previous")
    broken = f"{RELEASES}/0.1.0-broken"
    assert current.startswith(RELEASES), current
    try:
        # A release as the role installs it (its marker), whose entry point cannot import the application
        api.check_output(f"install -d -m 0755 {broken}/venv/bin && cp -p {current}/.aegis-release {broken}/")
        write_file(api, f"{broken}/venv/bin/aegis-rag", "#!/bin/sh\nexec /usr/bin/python3 -c 'import aegis_rag.cli'\n",
                   "0755")
        # switched to it as a deploy does: `previous` to the release left, `current` to the new one, a restart
        since = now(api)
        api.check_output(f"ln -sfn {current} /opt/aegis/previous && ln -sfn {broken} /opt/aegis/current")
        api.check_output("systemctl restart aegis-api")
        wait_for_journal(api, since, "ModuleNotFoundError")

        # 30 s for /ready after the restart, not 120: it crash-loops whatever the wait
        output, report, markdown = run_runbook(fleet, tmp_path, "heal", aegis_runbook_api_restart_wait=30)
        host = report["hosts"][name]
        assert host["status"] == "changed" and host["data"]["after"]["state"] == "ready", host
        assert host["data"]["journal_cause"] == "ModuleNotFoundError: No module named 'aegis_rag'", host["data"]
        assert host["data"]["rolled_back"] is True and host["data"]["not_rolled_back"] == "", host["data"]
        good = Path(current).name
        assert f"roll back from 0.1.0-broken to {good} (the release is at fault: ModuleNotFoundError: No module " \
               f"named 'aegis_rag') and wait for /ready" in host["actions"], host["actions"]
        assert host["actions"][-1] == "put back on the load balancers once ready", host["actions"]
        for other in API:  # every API host on one release, the broken one nowhere
            assert link(fleet.host(other), "current") == current, other
        assert link(api, "previous") == current  # not the broken release: a later rollback must not go back to it
        assert host["data"]["release"]["after"] == {"current": current, "previous": current}, host["data"]["release"]
        peer = report["hosts"][API[-1]]
        assert peer["status"] == "ok" and set(peer["data"]["releases"].values()) == {good}, peer
        assert http(api, READY)[0] == 200
        for server in API:
            assert_in_pool(fleet, server)
        assert_no_secret(output, report, markdown)

        assert_second_run_changes_nothing(fleet, tmp_path)
    finally:
        switched = link(api, "current") != current
        api.run(f"ln -sfn {current} /opt/aegis/current")
        api.run(f"ln -sfn {previous} /opt/aegis/previous" if previous else "rm -f /opt/aegis/previous")
        api.run(f"rm -rf {broken}")
        if switched or http(api, READY)[0] != 200:
            api.run("systemctl restart aegis-api")
        put_back(fleet, name)
        fleet.wait_ready()


def test_qdrant_down_is_named_and_no_api_host_is_restarted_or_rolled_back(fleet, tmp_path):
    data = fleet.host(DATA)
    units = {name: unit(fleet.host(name)) for name in API}
    releases = {name: (link(fleet.host(name), "current"), link(fleet.host(name), "previous")) for name in API}
    try:
        data.check_output("systemctl stop qdrant")
        deadline = time.monotonic() + 60
        while any(http(fleet.host(name), READY)[0] != 503 for name in API):
            assert time.monotonic() < deadline, "the API hosts still ready 60 s after Qdrant stopped"
            time.sleep(2)

        for attempt in ("outage", "again"):
            output, report, markdown = run_runbook(fleet, tmp_path, attempt, expect_failure=True)
            for name in API:
                host = report["hosts"][name]
                assert host["status"] == "failed" and host["actions"] == [], (name, host)
                assert host["data"]["diagnosis"]["state"] == "not ready", host["data"]["diagnosis"]
                assert host["data"]["dependency_outage"] == ["vector_store"], host["data"]
                assert "required dependency vector_store fails" in host["findings"], host["findings"]
                assert any(f.startswith("vector_store fails on every API host") for f in host["findings"]), host
                [row] = [r for r in host["tables"][0]["rows"] if r[0] == "dependency vector_store"]
                assert row[1].startswith("failed: "), row
                assert "see runbook_vector_db" in host["findings"], host["findings"]
                assert "not repaired: vector_store fails on every API host" in host["summary"], host["summary"]
                assert host["data"]["rolled_back"] is False and host["data"]["drained"] is False
                api = fleet.host(name)
                assert unit(api) == units[name], f"{name}'s aegis-api was restarted"
                assert (link(api, "current"), link(api, "previous")) == releases[name]
                assert fleet.lb_server(name)["admin"] == "ready"  # HAProxy's checks take it out, not a drain
            assert "runbook_api_failure failed on" in output
            assert all(counts["changed"] == 0 for counts in recap(output).values()), recap(output)
            assert_no_secret(output, report, markdown)
    finally:
        data.run("systemctl start qdrant")
        deadline = time.monotonic() + 120
        while http(data, "http://127.0.0.1:6333/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(2)
        # a restart leaves the collection grey (the Qdrant stand-in as the server): resume its optimizers
        resume = ("import json, urllib.request as u\n"
                  "u.urlopen(u.Request('http://127.0.0.1:6333/collections/aegis_docs_v2', method='PATCH',"
                  f" data=b'{{\"optimizers_config\": {{}}}}', headers={{'api-key': {SECRETS[1]!r},"
                  " 'Content-Type': 'application/json'}), timeout=30)\n")
        data.run(f"echo {base64.b64encode(resume.encode()).decode()} | base64 -d | python3")
        fleet.wait_ready(timeout_s=180)
