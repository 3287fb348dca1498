"""The maintenance cadences (maintenance_daily, _weekly, _monthly) on the fleet's real hosts, run as an operator runs
them (ansible-playbook with the fleet's inventory, the variables from a file: the state file and the reports in the
test's folder, the Qdrant calls from the data host itself, the fleet's Prometheus on the load balancer), and their
reports checked against the fleet:
- daily: a line written to aegis-api's journal on an API host is reported as a new error pattern, read as root (the
  services' journal), and a second run reports no new pattern; the SLA figures are numbers or `unknown`;
- weekly: the trends, the capacity and the traffic from the fleet's Prometheus, no blank figure;
- monthly (check mode, the review): the package lists refreshed first (an API host's lists removed: downloaded
  again, so the count is today's) and the pending updates counted as the host's own apt counts them; the clean-up
  of /var/log on by default: an old rotated log planted there would be deleted and is not, the live log never
  named; nothing installed.
Each test leaves the fleet as it found it (the planted files removed, even when it fails)."""

from __future__ import annotations

import json
import random
import string
import time
from pathlib import Path

from tests.fleet.conftest import FLEET_TEST, hosts_of, load_json_report

pytestmark = FLEET_TEST

LB = hosts_of("loadbalancer")[0]
API = hosts_of("aegis_api")
DATA = hosts_of("qdrant")[0]
PLAYBOOKS = Path("playbooks")


def run_maintenance(fleet, tmp_path: Path, cadence: str, run: str, *args: str, **variables) -> tuple[str, dict, str]:
    """playbooks/maintenance_<cadence>.yml with its variables from a file; its output, JSON and Markdown reports."""
    reports = tmp_path / run
    vars_file = tmp_path / f"{run}.json"
    vars_file.write_text(json.dumps({
        "aegis_report_dir": str(reports),
        "aegis_maintenance_state_dir": str(tmp_path / "state"),
        "aegis_maintenance_prometheus_url": f"http://{fleet.address(LB)}:9090",
        "aegis_runbook_delegate_to": "{{ inventory_hostname }}",
        "aegis_runbook_qdrant_url": "http://127.0.0.1:6333",
        **variables}))
    output = fleet.playbook(PLAYBOOKS / f"maintenance_{cadence}.yml", f"--extra-vars=@{vars_file}", *args)
    report = load_json_report(reports, f"maintenance_{cadence}")
    markdown = sorted(reports.glob(f"maintenance_{cadence}-*.md"))[-1].read_text()
    return output, report, markdown


def assert_no_blank(markdown: str) -> None:
    assert "| null" not in markdown and "None" not in markdown and "% ()" not in markdown, markdown


def table(host: dict, title: str) -> list[dict]:
    """The rows of a report table whose title starts with `title`, as {column: value}."""
    found = [t for t in host["tables"] if t["title"].startswith(title)]
    assert found, f"no table {title!r} in {[t['title'] for t in host['tables']]}"
    return [dict(zip(found[0]["columns"], row)) for row in found[0]["rows"]]


def new_patterns(host: dict) -> list[str]:
    return [f for f in host["findings"] if f.startswith("new error pattern: ")]


def test_daily_reports_a_new_journal_error_once(fleet, tmp_path):
    api = fleet.host(API[0])
    _, first, _ = run_maintenance(fleet, tmp_path, "daily", "daily1")
    assert first["hosts"][API[0]]["data"]["log_source"] == "journal of aegis-api", first["hosts"][API[0]]

    # letters only: the patterns replace digits and hex, the marker stays as it is
    marker = "".join(random.choices(string.ascii_lowercase, k=12))
    # aegis-api's journal: `journalctl --unit=aegis-api` selects a line by its unit (OBJECT_SYSTEMD_UNIT, written by
    # root), not by its tag, so logger writes the journal fields itself
    api.check_output(f"printf '%s\\n' 'MESSAGE=ERROR maintenance probe {marker} failed' 'SYSLOG_IDENTIFIER=aegis-api' "
                     f"'OBJECT_SYSTEMD_UNIT=aegis-api.service' 'PRIORITY=3' | logger --journald")
    assert marker in api.check_output("journalctl --unit=aegis-api --no-pager --since=-5min -o cat")

    _, second, markdown = run_maintenance(fleet, tmp_path, "daily", "daily2")
    host = second["hosts"][API[0]]
    found = [f for f in new_patterns(host) if marker in f]
    assert found and found[0].startswith("new error pattern: 1x: "), host
    [row] = [r for r in table(host, "Error patterns") if marker in r["pattern"]]
    assert row["pattern"] == f"aegis-api: ERROR maintenance probe {marker} failed", row
    assert (row["count"], row["new"]) == (1, True), row
    assert host["data"]["lines"] >= 1 and host["data"]["error_lines"] >= 1
    assert host["data"]["last_run"] is not None  # read from the first run on
    sla = {r["figure"]: r["value"] for r in table(second["hosts"]["localhost"], "SLA")}
    assert all(isinstance(v, (int, float)) or v == "unknown" for v in sla.values()), sla
    assert_no_blank(markdown)

    _, third, _ = run_maintenance(fleet, tmp_path, "daily", "daily3")
    host = third["hosts"][API[0]]
    assert new_patterns(host) == [], host
    assert not any(marker in r["pattern"] for r in table(host, "Error patterns")), host["tables"]


def test_weekly_reports_the_fleets_trends(fleet, tmp_path):
    output, report, markdown = run_maintenance(fleet, tmp_path, "weekly", "weekly", "--check")
    fleet_section = report["hosts"]["localhost"]
    assert table(fleet_section, "Performance trend")
    disks = table(fleet_section, "Capacity: disks")
    assert disks and all(row["size GB"] != "unknown" for row in disks), disks  # the node exporter's figures
    assert_no_blank(markdown)
    assert "changed=0" in output


def test_monthly_refreshes_the_lists_counts_updates_and_would_clean_var_log(fleet, tmp_path):
    api = fleet.host(API[-1])
    # the lists removed and the last refresh's stamp with them (as an image's clean-up leaves them; apt's
    # cache_valid_time reads the stamp): only a refresh brings them back
    api.check_output("find /var/lib/apt/lists -maxdepth 1 -type f ! -name lock -delete"
                     " && rm -f /var/lib/apt/periodic/update-success-stamp && touch -d '2 days ago' /var/lib/apt/lists")
    time.sleep(2)
    removed_at = int(api.check_output("date +%s"))
    installed = api.check_output("dpkg-query -W -f='${Package} ${Version}\\n'")
    stem = f"/var/log/aegis-maintenance-fleet-{''.join(random.choices(string.ascii_lowercase, k=8))}"
    planted = [f"{stem}.log.1.gz", f"{stem}.log"]
    for path in planted:
        api.check_output(f"echo old > {path} && touch -d '60 days ago' {path}")
    try:
        output, report, markdown = run_maintenance(fleet, tmp_path, "monthly", "monthly", "--check")
        host = report["hosts"][API[-1]]
        updates = host["data"]["updates"]
        assert updates["checked"] is True and updates["lists"]["refreshed"] is True, (updates, host["findings"])
        assert int(api.check_output("stat -c %Y /var/lib/apt/lists")) >= removed_at
        assert api.check_output("find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*'"), "no package list"
        simulated = api.check_output("apt-get --simulate --quiet upgrade").splitlines()
        pending = [line for line in simulated if line.startswith("Inst ")]
        assert updates["pending"] == len(pending), (updates, pending)
        assert updates["security"] == len([line for line in pending if "security" in line.lower()])
        assert host["summary"].startswith(f"{len(pending)} upgrades pending (")
        rows = {r["what"]: r["value"] for r in table(host, "Updates")}
        assert rows["package lists"] == "refreshed by this run" and rows["pending updates"] == len(pending), rows

        cleanup = host["data"]["log_cleanup"]
        assert cleanup["dirs"] == ["/var/log"] and cleanup["deleted"] == []
        assert planted[0] in cleanup["would_delete"] and planted[1] not in cleanup["would_delete"], cleanup
        assert f"would delete the old log {planted[0]}" in host["actions"]
        assert all(api.file(path).exists for path in planted)
        assert api.check_output("dpkg-query -W -f='${Package} ${Version}\\n'") == installed  # nothing installed
        assert_no_blank(markdown)
    finally:
        for path in planted:
            api.run(f"rm -f {path}")
