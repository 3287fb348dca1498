"""aegis.rag.schedules on the scheduler host(s) of the fleet (testinfra over nsenter), after
molecule/default/scheduler.yml installed the timers, ran each job's unit by hand, made one fail and repaired it.
Hosts: the platforms of molecule.yml in the group `scheduler`; none, none tested."""

from __future__ import annotations

import json

import pytest
import yaml
from ansible.release import __version__ as controller_ansible_core

from tests.fleet.conftest import FLEET_TEST, GROUPS, SCENARIO

pytestmark = FLEET_TEST
V = yaml.safe_load((SCENARIO / "vars" / "scheduler.yml").read_text())
UNITS = V["scheduler_units"]
testinfra_hosts = [f"nsenter://{name}" for name, groups in GROUPS.items() if "scheduler" in groups]


@pytest.fixture(scope="module", autouse=True)
def scheduler_played(fleet):
    fleet.playbook(SCENARIO / "scheduler.yml")


def show(host, unit: str, *properties: str) -> dict[str, str]:
    out = host.check_output(f"systemctl show --property={','.join(properties)} {unit}")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_timer_is_enabled_active_persistent_at_the_data_files_time(host, unit):
    timer = show(host, f"{unit}.timer", "UnitFileState", "ActiveState", "Persistent", "TimersCalendar", "Unit")
    assert (timer["UnitFileState"], timer["ActiveState"], timer["Persistent"]) == ("enabled", "active", "yes"), timer
    assert timer["TimersCalendar"].startswith(f"{{ OnCalendar={UNITS[unit]['calendar']} ;"), timer
    assert timer["Unit"] == f"{unit}.service"


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_job_unit_is_a_hardened_oneshot_of_the_job_user_with_the_failure_hook(host, unit):
    service = show(host, f"{unit}.service", "Type", "User", "Group", "NoNewPrivileges", "PrivateTmp", "ProtectSystem",
                   "ReadWritePaths", "TimeoutStartUSec", "OnFailure", "WorkingDirectory", "ExecStart",
                   "UnitFileState")
    assert service["Type"] == "oneshot"  # never two runs at once
    assert (service["User"], service["Group"]) == (V["schedules_user"], V["schedules_user"])
    assert (service["NoNewPrivileges"], service["PrivateTmp"], service["ProtectSystem"]) == ("yes", "yes", "full")
    assert sorted(service["ReadWritePaths"].split()) == sorted([V["schedules_log_dir"], V["schedules_report_dir"]])
    assert service["TimeoutStartUSec"] == f"{V['schedules_timeout'] // 60}min"
    assert service["OnFailure"] == f"aegis-schedule-failed@{unit}.service.service"
    assert service["WorkingDirectory"] == V["schedules_project_dir"]
    assert f"path={V['schedules_ansible_playbook']} ;" in service["ExecStart"]
    assert f"-i {V['schedules_inventory']} --vault-password-file {V['schedules_vault_password_file']}" \
        in service["ExecStart"]
    assert service["UnitFileState"] == "static"  # started by its timer only


def test_log_and_report_folders_belong_to_the_job_user(host):
    # reports 0755: aegis.rag.report makes its folder so on every run, the role does the same (no flip-flop)
    for path, mode in ((V["schedules_log_dir"], 0o750), (V["schedules_report_dir"], 0o755)):
        folder = host.file(path)
        assert folder.is_directory and (folder.user, folder.group) == (V["schedules_user"], V["schedules_user"]), path
        assert folder.mode == mode, (path, oct(folder.mode))


def test_vault_password_file_is_readable_by_the_job_user_only(host):
    vault = host.file(V["schedules_vault_password_file"])
    assert (vault.user, vault.mode) == (V["schedules_user"], 0o600)


def test_jobs_run_the_controllers_ansible_core_from_the_projects_virtualenv(host):
    version = host.check_output(f"{V['schedules_ansible_playbook']} --version").splitlines()[0]
    assert f"[core {controller_ansible_core}]" in version, version
    assert host.file(f"{V['schedules_project_dir']}/ansible.cfg").user == "root"


@pytest.mark.parametrize("unit", sorted(u for u in UNITS if UNITS[u]["report"]))
def test_the_last_run_wrote_a_good_dated_report_and_its_log(host, unit):
    name = UNITS[unit]["report"]
    reports = sorted(host.check_output(f"ls {V['schedules_report_dir']}").split())
    runs = [r for r in reports if r.startswith(f"{name}-") and r.endswith(".json")]
    assert len(runs) >= 2, reports  # the good run, the failed run and the repaired run
    assert f"{runs[-1][:-5]}.md" in reports
    last = json.loads(host.file(f"{V['schedules_report_dir']}/{runs[-1]}").content_string)
    assert last["status"] != "failed", last
    log = host.file(f"{V['schedules_log_dir']}/{unit}.log")
    assert log.user == V["schedules_user"] and "PLAY RECAP" in log.content_string


def test_no_job_is_left_failed_and_the_failure_hook_logged_the_failed_run(host):
    assert "aegis-" not in host.check_output("systemctl --failed --no-legend --plain --full")
    hook_log = host.check_output("journalctl --identifier=aegis-schedules --no-pager --output=cat")
    assert f"scheduled job {V['scheduler_failing_unit']}.service failed" in hook_log
