"""playbooks/maintenance_daily.yml, maintenance_weekly.yml and maintenance_monthly.yml against the Qdrant
double, moto S3 and a real Prometheus (Debian's, its TSDB backfilled with `promtool tsdb create-blocks-from
openmetrics`, so the figures in the reports can be compared with the series the test wrote).

Covered: a healthy daily run (ok, changed=0, the SLA figures equal the series); a missing and an old backup
(the daily run FAILS, its report names the collection); an error pattern injected into the log source (a file
standing in for the journal) reported as new once, then as recurring; the services' journal read as root (a stub
journalctl reachable only through become, as root alone sees the services' journal) and SLA figures Prometheus
cannot give shown as `unknown`; the weekly trends (today so far included), alert history, traffic by hour and a
disk that fills, projected, one filesystem per device; the monthly run in check mode changing nothing, the update
application off by default, TLS expiry, the access audit, the restore drill and the log clean-up; the package
lists refreshed before the pending updates are counted (check mode too: an apt sandbox, APT_CONFIG, with a local
repository publishing a security and a normal update of installed packages; a source that cannot be fetched:
the refresh's failure a warning, never `refreshed`) and the clean-up of /var/log on by
default (check mode: a planted old rotated log would be deleted, nothing is).
Become: this machine may have no sudo; `ansible_become_exe` is a stub that runs the command as the same user with
its stub commands first on PATH (so a stub command answering proves the task went through become).
Not covered here (the fleet, tests/fleet/test_maintenance.py): systemd's journal and apt against Debian's mirrors
on real hosts, the application of updates, sudoers as root, the aegis_api releases directory."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.collection.qdrant_helpers import Rest

pytestmark = pytest.mark.slow

API = 'job="aegis-api",handler="/chat",method="POST"'
# limits the test machine always meets: the findings then depend on what the test injects only
MACHINE_LIMITS = {"aegis_maintenance_disk_max_percent": 100, "aegis_maintenance_memory_max_percent": 100,
                  "aegis_maintenance_load_max_per_cpu": 1000}
# most runs skip the host's facts (slow to gather on a busy machine); the healthy daily run reads them
NO_FACTS = {"aegis_maintenance_host_facts": False}





@dataclass
class Become:
    vars: dict  # the become settings to pass to a run
    bin: Path  # stub commands found on PATH only through become
    log: Path  # one line per become call: the stub sudo's arguments

    def command(self, name: str, script: str) -> Path:
        path = self.bin / name
        path.write_text("#!/bin/sh\n" + script)
        path.chmod(0o755)
        return path


@pytest.fixture
def become(tmp_path, monkeypatch) -> Become:
    """A stub sudo: no password and no change of user (the tests run as one user, root or not), the stub commands
    of its bin/ first on PATH. Used even by root (Ansible skips a become to the same user unless told)."""
    monkeypatch.setenv("ANSIBLE_BECOME_ALLOW_SAME_USER", "1")
    root = tmp_path / "become"
    (root / "bin").mkdir(parents=True)
    log = root / "calls.log"
    sudo = root / "sudo"
    sudo.write_text(f"""#!/bin/sh
printf '%s\\n' "$*" >> '{log}'
while [ $# -gt 0 ]; do
  case "$1" in
    -u|-p|-g|-C|-D|-U) shift 2 ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
  esac
done
PATH='{root / "bin"}':$PATH
export PATH
exec "$@"
""")
    sudo.chmod(0o755)
    return Become({"ansible_become_exe": str(sudo), "ansible_become_method": "sudo"}, root / "bin", log)


@pytest.fixture
def run(run_playbook, become):
    """run_playbook with the stub sudo: the maintenance playbooks become root by default."""
    def call(name: str, **kwargs):
        return run_playbook(name, **{**become.vars, **kwargs})
    return call


class AptSandbox:
    """apt's state for the playbooks' apt tasks (ansible.builtin.apt and apt-get read APT_CONFIG): sources,
    package lists and caches in a folder, the machine's dpkg status. Nothing of the machine's apt is touched."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("lists/partial", "cache/archives/partial", "sources.list.d", "parts"):
            (root / sub).mkdir(parents=True)
        (root / "sources.list").write_text("")
        (root / "apt.conf").write_text("".join(f'{key} "{value}";\n' for key, value in {
            "Dir::Etc::sourcelist": root / "sources.list", "Dir::Etc::sourceparts": root / "sources.list.d",
            "Dir::Etc::parts": root / "parts", "Dir::State::Lists": root / "lists", "Dir::Cache": root / "cache",
            **({"APT::Sandbox::User": "root"} if os.geteuid() == 0 else {})}.items()))

    @property
    def lists(self) -> list[str]:
        return sorted(p.name for p in (self.root / "lists").iterdir() if p.name.endswith("Packages"))

    def publish(self, name: str, origin: str, suite: str, packages: list[str]) -> dict[str, str]:
        """A local repository offering a newer version of each installed package; {package: that version}."""
        repo = self.root / "repos" / name
        repo.mkdir(parents=True)
        stanzas, offered = [], {}
        for package in packages:
            version, arch = subprocess.run(["dpkg-query", "-W", "-f=${Version} ${Architecture}", package],
                                           check=True, capture_output=True, text=True).stdout.split()
            offered[package] = f"{version}+aegis1"
            stanzas.append(f"Package: {package}\nVersion: {offered[package]}\nArchitecture: {arch}\n"
                           f"Maintainer: Aegis tests <tests@aegis.invalid>\nFilename: ./{package}.deb\nSize: 1000\n"
                           f"SHA256: {'0' * 64}\nDescription: stand-in update\n")
        (repo / "Packages").write_text("\n".join(stanzas))
        digest = hashlib.sha256((repo / "Packages").read_bytes()).hexdigest()
        (repo / "Release").write_text(
            f"Origin: {origin}\nLabel: {origin}\nSuite: {suite}\nCodename: aegis\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\n"
            f"SHA256:\n {digest} {(repo / 'Packages').stat().st_size} Packages\n")
        with (self.root / "sources.list").open("a") as sources:
            sources.write(f"deb [trusted=yes] file:{repo} ./\n")
        return offered


@pytest.fixture
def apt_sandbox(tmp_path, monkeypatch) -> AptSandbox:
    if not (shutil.which("apt-get") and shutil.which("dpkg-query") and Path("/var/lib/dpkg/status").exists()):
        pytest.skip("no apt on this machine")
    if subprocess.run(["/usr/bin/python3", "-c", "import apt"], capture_output=True, check=False).returncode:
        pytest.skip("no python3-apt for ansible.builtin.apt")
    sandbox = AptSandbox(tmp_path / "apt")
    monkeypatch.setenv("APT_CONFIG", str(sandbox.root / "apt.conf"))
    return sandbox


def installed_version(package: str) -> str:
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], check=True, capture_output=True,
                          text=True).stdout


def table(host: dict, title: str) -> list[dict]:
    found = [t for t in host["tables"] if t["title"].startswith(title)]
    assert found, f"no table {title!r} in {[t['title'] for t in host['tables']]}"
    return [dict(zip(found[0]["columns"], row)) for row in found[0]["rows"]]


@pytest.fixture
def backed_up(run_playbook, start_double, s3_bucket):
    service = start_double("qdrant")
    rest = Rest(service)
    rest.create("docs")
    rest.upsert("docs", range(1, 21), blob="m" * 60)
    run_playbook("backup", hosts={"qdrant-a": service}, aegis_backup_s3_bucket=s3_bucket)
    return service, rest


def sla_series(now: int) -> dict:
    """20 h of API traffic every 5 minutes: per step 100 /chat answers, 90 within 0.1 s, 7 more within 0.5 s, 3 slower,
    2 of them 5xx; the monitoring role's aegis:api_available 1 except 3 of 240 samples.
    Counters start at 0, so increase() extrapolates every series by the same factor and the ratios are exact."""
    start = now - 20 * 3600
    steps = range(240)
    out: dict[str, list] = {}
    for le, per_step in (("0.1", 90), ("0.5", 97), ("1.0", 100), ("+Inf", 100)):
        out[f'http_request_duration_seconds_bucket{{{API},le="{le}"}}'] = [(start + i * 300, i * per_step)
                                                                            for i in steps]
    out[f'http_requests_total{{{API},status="2xx"}}'] = [(start + i * 300, i * 98) for i in steps]
    out[f'http_requests_total{{{API},status="5xx"}}'] = [(start + i * 300, i * 2) for i in steps]
    out["aegis:api_available"] = [(start + i * 300, 0 if i in (10, 11, 12) else 1) for i in steps]
    return out


def test_daily_healthy_reports_ok_and_the_sla_of_the_series(run, backed_up, s3_bucket, tmp_path, prometheus_with):
    service, _ = backed_up
    prom = prometheus_with(sla_series(int(time.time())))
    log = tmp_path / "api.log"
    log.write_text("INFO started\nINFO answered /chat in 12 ms\n")
    out = run("maintenance_daily", hosts={"qdrant-a": service}, aegis_backup_s3_bucket=s3_bucket,
                       aegis_maintenance_log_file=str(log), aegis_maintenance_state_dir=str(tmp_path / "state"),
                       aegis_maintenance_prometheus_url=prom, **MACHINE_LIMITS)
    assert "changed=0" in out.stdout and out.report["status"] == "ok", out.describe()
    host = out.host()
    assert host["status"] == "ok" and host["findings"] == [] and host["actions"] == []
    assert [r["result"] for r in table(host, "Newest backup")] == ["verified"]
    assert table(host, "Error patterns") == []
    assert {r["resource"] for r in table(host, "Resources")} >= {"memory", "load", "disk /"}
    fleet = out.host("localhost")
    sla = fleet["data"]["sla"]
    # P95: rank 95 of 100 falls in the (0.1, 0.5] bucket (ranks 91-97): histogram_quantile interpolates
    assert sla["p95"] == pytest.approx(0.1 + 0.4 * (95 - 90) / 7, rel=1e-9)
    assert sla["error_rate"] == pytest.approx(0.02, rel=1e-9)
    assert sla["availability"] == pytest.approx(237 / 240, rel=1e-9)
    # below the manual's targets: error rate 2 % (> 1 %) and availability 98.75 % (< 99.9 %): warnings
    assert fleet["status"] == "ok"
    assert [f.split(" of the last")[0] for f in fleet["findings"]] == ["warning: SLA error rate",
                                                                       "warning: SLA availability"]
    assert "| P95 latency (s) |" in out.markdown


def test_daily_missing_or_old_backup_fails(run, start_double, s3, s3_bucket, tmp_path):
    service = start_double("qdrant")
    Rest(service).create("docs")
    common = dict(hosts={"qdrant-a": service}, aegis_backup_s3_bucket=s3_bucket, expect_failure=True,
                  aegis_maintenance_log_file="/dev/null", aegis_maintenance_state_dir=str(tmp_path / "state"),
                  **NO_FACTS)
    missing = run("maintenance_daily", **common)
    host = missing.host()
    assert host["status"] == "failed" and missing.report["status"] == "failed"
    assert host["findings"] == [f"backup: docs: missing: no backup under s3://{s3_bucket}/qdrant/qdrant-a/docs/"]
    assert "daily maintenance failed" in missing.stdout

    s3.client().put_object(Bucket=s3_bucket, Key="qdrant/qdrant-a/docs/20200101/docs-1-2020-01-01-02-00-00.snapshot",
                           Body=b"x" * 4096, Metadata={"sha256": "0" * 64, "points-count": "0"})
    old = run("maintenance_daily", **common)
    [finding] = old.host()["findings"]
    assert finding.startswith("backup: docs: missing: the newest backup is from 2020") and "older than 1d" in finding


def test_daily_new_error_pattern_reported_once(run, start_double, tmp_path):
    service = start_double("qdrant")
    log = tmp_path / "api.log"
    log.write_text("2026-11-25T10:00:01 INFO answered\n")
    state = str(tmp_path / "state")
    common = dict(hosts={"qdrant-a": service}, aegis_maintenance_log_file=str(log),
                  aegis_maintenance_state_dir=state, **NO_FACTS)
    with log.open("a") as f:
        f.write("2026-11-25T10:05:01 ERROR vector store unavailable: timed out after 10.0 s (request 4f1a9c2e77)\n")
        f.write("2026-11-25T10:06:09 ERROR vector store unavailable: timed out after 12.5 s (request 99ab01cd34)\n")
    second = run("maintenance_daily", **common)
    [finding] = second.host()["findings"]
    assert finding.startswith("new error pattern: 2x: 2026-11-25T10:05:01 ERROR vector store unavailable"), finding
    [row] = table(second.host(), "Error patterns")
    assert row["count"] == 2 and row["new"] is True
    assert second.host()["status"] == "ok" and "changed=0" in second.stdout

    third = run("maintenance_daily", **common)
    assert third.host()["findings"] == []
    [row] = table(third.host(), "Error patterns")
    assert row["new"] is False and row["count"] == 2


JOURNAL = """2026-11-25T10:00:01+0000 qdrant-a qdrant[812]: INFO storage loaded
2026-11-25T10:00:02+0000 qdrant-a qdrant[812]: INFO listening on 6333
2026-11-25T10:05:09+0000 qdrant-a qdrant[812]: ERROR segment 17 failed to load: checksum mismatch
"""


def test_daily_reads_the_services_journal_as_root_and_says_unknown(run, become, start_double, tmp_path,
                                                                   prometheus_with):
    """Only root sees the services' journal: the stub journalctl answers only through become (the real one, run
    without it, has none of these lines). A Prometheus without the API's series: every SLA figure `unknown`."""
    if not Path("/usr/bin/journalctl").exists():
        pytest.skip("no /usr/bin/journalctl on this machine")
    calls = tmp_path / "journalctl.args"
    # newest first when asked (--reverse), as the real one
    become.command("journalctl", f"printf '%s\\n' \"$*\" >> '{calls}'\n"
                   f"case \" $* \" in *' --reverse '*) tac ;; *) cat ;; esac <<'EOF'\n{JOURNAL}EOF\n")
    prom = prometheus_with({"up{job=\"node\"}": [(int(time.time()) - 60, 1)]})
    service = start_double("qdrant")
    out = run("maintenance_daily", hosts={"qdrant-a": service}, aegis_maintenance_state_dir=str(tmp_path / "state"),
              aegis_maintenance_prometheus_url=prom, **NO_FACTS)
    host = out.host()
    assert host["status"] == "ok", out.describe()
    assert host["data"]["log_source"] == "journal of qdrant"
    [row] = table(host, "Error patterns")  # none without become: the real journalctl has no such line
    assert row["pattern"] == "qdrant: ERROR segment <n> failed to load: checksum mismatch" and row["new"] is True
    assert (host["data"]["lines"], host["data"]["error_lines"]) == (3, 1)
    assert host["summary"].startswith("3 log lines read, 1 error lines, 1 new error patterns")
    [args] = calls.read_text().splitlines()
    assert "--unit=qdrant" in args.split() and " --since @" in args and "--reverse" in args.split()
    fleet = out.host("localhost")
    assert fleet["data"]["sla"] == {"p95": None, "error_rate": None, "availability": None, "requests": None}
    assert {r["figure"]: r["value"] for r in table(fleet, "SLA")} == {
        "P95 latency (s)": "unknown", "error rate": "unknown", "availability": "unknown", "requests": "unknown"}
    assert "unknown s, error rate unknown" in fleet["summary"]
    assert "null" not in out.markdown and "None" not in out.markdown


def weekly_series(now: int) -> dict:
    """7 days every 5 minutes (and 2 h ahead, so an instant query always finds a fresh sample): /chat traffic
    of 1 request per 5 minutes at night, 10 from 08:00 to 18:00 UTC and 15 in the 12:00 hour, 5 % of it slow
    (all 2xx); a data disk of 100 GB losing 2 GB of free space a day; one alert that fired twice."""
    start = (now - 7 * 86400) // 3600 * 3600
    stamps = range(start, now + 7200, 300)
    out: dict[str, list] = {}

    def per_step(ts: int) -> int:
        hour = (ts - 300) % 86400 // 3600
        return 15 if hour == 12 else (10 if 8 <= hour < 18 else 1)

    total, counts = 0, []
    for ts in stamps:
        counts.append((ts, total))
        total += per_step(ts + 300)
    out[f'http_requests_total{{{API},status="2xx"}}'] = counts
    for le, share in (("0.1", 0.9), ("0.5", 0.97), ("1.0", 1.0), ("+Inf", 1.0)):
        out[f'http_request_duration_seconds_bucket{{{API},le="{le}"}}'] = [(ts, n * share) for ts, n in counts]
    disk = 'job="node",instance="qdrant-a:9100",mountpoint="/var/lib/qdrant",fstype="ext4",device="/dev/sdb"'
    # the same filesystem mounted twice (a bind mount): one filesystem in the report, the shortest mount point
    bind = disk.replace('mountpoint="/var/lib/qdrant"', 'mountpoint="/var/lib/qdrant/snapshots"')
    for labels in (disk, bind):
        out[f"node_filesystem_size_bytes{{{labels}}}"] = [(ts, 100e9) for ts in stamps]
        out[f"node_filesystem_avail_bytes{{{labels}}}"] = [(ts, 60e9 - 2e9 * (ts - start) / 86400) for ts in stamps]
    fired = [start + 2 * 86400 + i * 60 for i in range(10)] + [start + 5 * 86400 + i * 60 for i in range(4)]
    alert = 'alertname="AegisHighErrorRate",severity="critical"'
    out[f'ALERTS{{{alert},alertstate="firing"}}'] = [(ts, 1) for ts in fired]
    out[f"ALERTS_FOR_STATE{{{alert}}}"] = [(ts, fired[0] if ts < fired[10] else fired[10]) for ts in fired]
    return out


def test_weekly_trends_capacity_projection_and_traffic(run, start_double, prometheus_with):
    service = start_double("qdrant")
    rest = Rest(service)
    rest.create("docs")
    rest.upsert("docs", range(1, 31))
    now = int(time.time())
    series = weekly_series(now)
    prom = prometheus_with(series)
    out = run("maintenance_weekly", hosts={"qdrant-a": service}, check=True,
                       aegis_maintenance_prometheus_url=prom, **NO_FACTS)
    assert out.report["status"] == "ok" and "changed=0" in out.stdout, out.describe()
    [collection] = table(out.host(), "Collections")
    assert collection["collection"] == "docs" and collection["points"] == 30
    fleet = out.host("localhost")
    [alert] = table(fleet, "Alert history")
    assert alert["alert"] == "AegisHighErrorRate" and alert["firing evaluations"] == 14
    # capacity: 2 GB a day less free space, so the disk fills in (free now) / 2 GB days
    [disk] = fleet["data"]["disks"].values()
    assert disk["growth_per_day"] == pytest.approx(2e9, rel=1e-6)
    free_now = 60e9 - 2e9 * (time.time() - (now - 7 * 86400) // 3600 * 3600) / 86400
    assert disk["days_to_full"] == pytest.approx(free_now / 2e9, abs=0.1)
    [finding] = fleet["findings"]
    assert finding.startswith("warning: disk qdrant-a:9100 /var/lib/qdrant fills in ")
    chart = table(fleet, "Capacity: disk used per day")
    assert len(chart) >= 7 and chart[-1]["chart"].count("█") > chart[0]["chart"].count("█")
    # traffic: 12 requests an hour at night, 120 by day, 180 in the 12:00 hour
    hourly = fleet["data"]["hourly"]
    assert hourly["3"] == pytest.approx(12) and hourly["9"] == pytest.approx(120)
    assert hourly["12"] == pytest.approx(180) and "peak hour 12:00 UTC" in fleet["summary"]
    trend = table(fleet, "Performance trend")
    assert trend and all(row["P95 latency (s)"] == pytest.approx(0.1 + 0.4 * 5 / 7, abs=1e-4) for row in trend)
    assert all(row["error rate"] == 0 for row in trend)  # no 5xx series at all: 0, not "no data"
    # today so far is a day of the trend, marked so (the requests up to now, more than none)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert trend[-1]["day"] == f"{today} (so far)" and trend[-1]["requests"] > 0, trend[-1]
    assert fleet["data"]["daily"][today]["partial"] is True
    assert chart[-1]["day"] == today  # the disk chart's last sample: now
    assert "█" in out.markdown
    assert "null" not in out.markdown and "None" not in out.markdown


def certificate(path: Path, days: int) -> None:
    """A self-signed certificate valid for `days` more days."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.aegis.test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_monthly_check_mode_changes_nothing_then_the_run_cleans_up(run, backed_up, s3_bucket, tmp_path, apt_sandbox):
    import os
    import socket

    service, rest = backed_up
    rest.create("notes", optimizers_config={"deleted_threshold": 0.5})
    logs = tmp_path / "logs"
    logs.mkdir()
    old, recent, live = logs / "aegis.log.1", logs / "aegis.log.2.gz", logs / "aegis.log"
    for path in (old, recent, live):
        path.write_text("x\n")
    os.utime(old, (time.time() - 60 * 86400,) * 2)
    os.utime(live, (time.time() - 60 * 86400,) * 2)  # old, but the live log: never deleted
    sudoers = tmp_path / "sudoers.d"
    sudoers.mkdir()
    (sudoers / "aegis").write_text("# deploy user\nDefaults env_reset\ndeploy ALL=(root) NOPASSWD: /usr/bin/systemctl\n")
    cert = tmp_path / "api.pem"
    certificate(cert, days=10)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    common = dict(hosts={"qdrant-a": service}, aegis_backup_s3_bucket=s3_bucket,
                  aegis_maintenance_log_dirs=[str(logs)], aegis_maintenance_sudoers_paths=[str(sudoers)],
                  aegis_maintenance_tls_cert_files=[str(cert)], aegis_maintenance_expected_ports=[22],
                  aegis_maintenance_ports_include_loopback=True, aegis_restore_drill_collections=["docs"],
                  # ansible.builtin.apt judges freshness by the machine's /var/lib/apt/lists, not the sandbox's: an
                  # `apt-get update` on the machine within the hour (a fresh machine's setup) would skip the refresh
                  aegis_maintenance_apt_cache_valid_time=0)
    snapshots = rest.snapshots("docs")
    try:
        dry = run("maintenance_monthly", check=True, **common)
        host = dry.host()
        assert old.exists() and recent.exists() and live.exists()
        assert rest.info("docs_restore_drill") is None and rest.snapshots("docs") == snapshots
        assert rest.info("notes")["config"]["optimizer_config"]["deleted_threshold"] == 0.5
        assert host["status"] == "would change" and host["actions"] == [f"would delete the old log {old}"], \
            dry.describe()
        assert host["data"]["applied"] is False  # updates are never applied unless asked
        assert not any("applied" in a for a in host["actions"])
        findings = host["findings"]
        assert f"warning: the certificate {cert} expires within 30 days (or has expired)" in findings
        assert f"warning: unexpected listening TCP port {port}" in findings
        assert "optimisation: qdrant_maintenance would change the optimizers of notes" in findings
        assert host["data"]["sudoers"] == ["deploy ALL=(root) NOPASSWD: /usr/bin/systemctl"]
        [cert_row] = table(host, "TLS certificate files")
        assert cert_row["subject CN"] == "api.aegis.test" and 9 < cert_row["days left"] <= 10
        assert [r["result"] for r in table(host, "Restore drill")] == ["would restore"]
        # the package lists (the sandbox's: no source) refreshed, nothing pending: 0, not unknown
        assert host["data"]["updates"]["pending"] == 0 and host["data"]["updates"]["lists"]["refreshed"] is True
        assert [r["file"] for r in table(host, "Clean-up")] == [str(old)]
        assert "null" not in dry.markdown and "None" not in dry.markdown

        real = run("maintenance_monthly", expect_failure=False, **common)
        host = real.host()
        assert not old.exists() and recent.exists() and live.exists()
        assert host["actions"][-1] == f"delete the old log {old}" and host["status"] == "changed", real.describe()
        assert host["data"]["log_cleanup"]["deleted"] == [str(old)] and host["data"]["log_cleanup"]["bytes"] == 2
        [cleaned] = table(host, "Clean-up: old rotated logs deleted")
        assert cleaned["file"] == str(old) and cleaned["bytes"] == 2 and cleaned["age (days)"] == pytest.approx(60, abs=1)
        drills = {d["collection"]: d for d in host["data"]["drills"]}
        assert drills["docs"]["restored_points"] == drills["docs"]["live_points"] == 20
        assert rest.info("docs_restore_drill") is None
        assert rest.info("notes")["config"]["optimizer_config"]["deleted_threshold"] == 0.5  # reviewed, not applied
    finally:
        listener.close()


def test_monthly_refreshes_the_package_lists_and_cleans_var_log_by_default(run, become, start_double, apt_sandbox):
    """Package lists never refreshed (the sandbox's are empty) and two updates published: the check-mode review
    refreshes them first (through become), then counts 2 pending, 1 from a security origin, and installs nothing.
    The clean-up runs by default, under /var/log: an old rotated log planted there would be deleted (check mode:
    it is not), the live log beside it never."""
    service = start_double("qdrant")
    security = apt_sandbox.publish("security", "Aegis-Security", "stable-security", ["base-files"])
    normal = apt_sandbox.publish("updates", "Aegis", "stable-updates", ["bash"])
    before = {package: installed_version(package) for package in ("base-files", "bash")}
    planted = []
    if os.access("/var/log", os.W_OK):
        stem = f"/var/log/aegis-maintenance-test-{uuid.uuid4().hex[:8]}"
        planted = [Path(f"{stem}.log.1"), Path(f"{stem}.log")]
        for path in planted:
            path.write_text("old\n")
            os.utime(path, (time.time() - 60 * 86400,) * 2)
    try:
        dry = run("maintenance_monthly", hosts={"qdrant-a": service}, check=True,
                  aegis_maintenance_apt_cache_valid_time=0)
        host = dry.host()
        assert apt_sandbox.lists, "the package lists were not refreshed"
        updates = host["data"]["updates"]
        assert (updates["pending"], updates["security"], updates["lists"]["refreshed"]) == (2, 1, True), dry.describe()
        offered = {u["package"]: (u["candidate"], u["security"]) for u in host["data"]["upgrades"]}
        assert offered == {"base-files": (security["base-files"], True), "bash": (normal["bash"], False)}
        assert host["summary"].startswith("2 upgrades pending (1 security),")
        rows = {r["what"]: r["value"] for r in table(host, "Updates")}
        assert rows["package lists"] == "refreshed by this run" and rows["pending security updates"] == 1
        assert "1 security updates pending (set aegis_maintenance_apply_updates=true to apply them)" in host["findings"]
        assert {package: installed_version(package) for package in before} == before  # nothing installed
        assert become.log.read_text(), "nothing went through become"
        cleanup = host["data"]["log_cleanup"]
        assert cleanup["dirs"] == ["/var/log"] and cleanup["max_age"] == "30d" and cleanup["deleted"] == []
        if planted:
            assert str(planted[0]) in cleanup["would_delete"] and str(planted[1]) not in cleanup["would_delete"]
            assert f"would delete the old log {planted[0]}" in host["actions"] and host["status"] == "would change"
            assert all(path.exists() for path in planted)
    finally:
        for path in planted:
            path.unlink(missing_ok=True)


def test_monthly_says_when_the_package_lists_could_not_be_refreshed(run, start_double, apt_sandbox):
    """A source that cannot be fetched: the refresh fails, the review goes on and says so (a warning, the
    pending updates counted from the old lists), never `refreshed`."""
    service = start_double("qdrant")
    missing = apt_sandbox.root / "repos" / "missing"
    with (apt_sandbox.root / "sources.list").open("a") as sources:
        sources.write(f"deb [trusted=yes] file:{missing} ./\n")
    out = run("maintenance_monthly", hosts={"qdrant-a": service}, check=True, aegis_maintenance_apt_cache_valid_time=0,
              aegis_maintenance_apt_attempts=1, aegis_maintenance_log_dirs=[])  # not 30 s of apt's backoff
    host = out.host()
    lists = host["data"]["updates"]["lists"]
    assert lists["refreshed"] is False and lists["error"], out.describe()
    assert any(f.startswith("warning: the package lists could not be refreshed: ") for f in host["findings"])
    assert ", package lists not refreshed" in host["summary"]
    rows = {r["what"]: r["value"] for r in table(host, "Updates")}
    assert rows["package lists"].startswith("NOT refreshed: ")
    assert host["data"]["updates"]["checked"] is True and isinstance(host["data"]["updates"]["pending"], int)
    assert host["data"]["log_cleanup"]["dirs"] == [] and "Clean-up" not in [t["title"][:8] for t in host["tables"]]
    assert "null" not in out.markdown and "None" not in out.markdown
