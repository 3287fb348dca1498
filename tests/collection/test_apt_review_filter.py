"""The filters aegis.rag.apt_upgrades and aegis.rag.apt_lists: the monthly maintenance's pending updates from
`apt-get --simulate upgrade`, and the state of the package lists after its refresh task (the playbook on loopback
with a sandboxed apt is tests/runbooks/test_maintenance.py)."""

from __future__ import annotations

import subprocess

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.aegis.rag.plugins.filter.apt_review import FilterModule, apt_lists, apt_upgrades
from tests.collection.conftest import VENV_BIN, ansible_env

# as apt-get 2.6 (Debian 12) prints them
SIMULATED = """Reading package lists...
Building dependency tree...
Calculating upgrade...
The following packages will be upgraded:
  libssl3 openssl
2 upgraded, 1 newly installed, 0 to remove and 0 not upgraded.
Inst libssl3 [3.0.15-1~deb12u1] (3.0.17-1~deb12u2 Debian-Security:12/stable-security [amd64])
Inst openssl [3.0.15-1~deb12u1] (3.0.17-1~deb12u2 Debian:12.12/stable [amd64])
Inst linux-image-6.1.0-40-amd64 (6.1.153-1 Debian:12.12/stable [amd64])
Conf libssl3 (3.0.17-1~deb12u2 Debian-Security:12/stable-security [amd64])
Conf openssl (3.0.17-1~deb12u2 Debian:12.12/stable [amd64])""".splitlines()

NOW = 1_800_000_000


def test_inst_lines_become_upgrades_and_security_ones_are_marked():
    assert apt_upgrades(SIMULATED) == [
        {"package": "libssl3", "installed": "3.0.15-1~deb12u1", "candidate": "3.0.17-1~deb12u2",
         "origin": "Debian-Security:12/stable-security [amd64]", "security": True},
        {"package": "openssl", "installed": "3.0.15-1~deb12u1", "candidate": "3.0.17-1~deb12u2",
         "origin": "Debian:12.12/stable [amd64]", "security": False},
        {"package": "linux-image-6.1.0-40-amd64", "installed": None, "candidate": "6.1.153-1",
         "origin": "Debian:12.12/stable [amd64]", "security": False},
    ]


def test_nothing_pending_is_an_empty_list_and_other_input_is_refused():
    assert apt_upgrades(SIMULATED[:5]) == []
    assert apt_upgrades([]) == []
    with pytest.raises(AnsibleFilterError, match="expects apt-get's lines"):
        apt_upgrades("Inst openssl")


def test_this_machines_apt_get_prints_lines_the_filter_reads():
    """Against the real apt-get: every Inst line it prints for a simulated upgrade is read (none on an up-to-date
    machine, and then only the count is checked)."""
    out = subprocess.run(["apt-get", "--simulate", "--quiet", "-o", "Debug::NoLocking=1", "upgrade"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    inst = [line for line in out if line.startswith("Inst ")]
    upgrades = apt_upgrades(out)
    assert [u["package"] for u in upgrades] == [line.split()[1] for line in inst]
    assert all(u["candidate"] and u["origin"] for u in upgrades)


def test_a_refresh_that_updated_the_lists():
    lists = apt_lists({"changed": False, "cache_updated": True, "cache_update_time": NOW - 2}, 3600, NOW)
    assert lists == {"refreshed": True, "updated_at": "2027-01-15 07:59:58Z", "cache_valid_time": 3600, "error": None}


def test_lists_fresh_within_the_valid_time_are_not_refreshed_but_dated():
    lists = apt_lists({"cache_updated": False, "cache_update_time": NOW - 600}, "3600", NOW + 0.7)
    assert lists["refreshed"] is False and lists["error"] is None and lists["updated_at"] == "2027-01-15 07:50:00Z"


def test_a_failed_refresh_gives_its_message_shortened_on_a_word():
    lists = apt_lists({"failed": True, "msg": "Failed to update apt cache: " + "unreachable mirror " * 40}, 3600, NOW)
    assert lists["refreshed"] is False and lists["updated_at"] is None
    assert lists["error"].startswith("Failed to update apt cache: unreachable mirror")
    assert lists["error"].endswith("mirror...") and len(lists["error"]) <= 300
    short = apt_lists({"failed": True, "msg": "  no space left on device\n"}, 3600, NOW)
    assert short["error"] == "no space left on device"


def test_a_skipped_refresh_returned_nothing():
    skipped = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}
    assert apt_lists(skipped, 3600, NOW)["error"] == "the refresh returned nothing"
    assert apt_lists({}, 3600, NOW)["refreshed"] is False


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(AnsibleFilterError, match="expects the refresh task's registered result"):
        apt_lists([], 3600, NOW)
    with pytest.raises(AnsibleFilterError, match="cache_valid_time and now must be numbers"):
        apt_lists({}, "an hour", NOW)


def test_both_are_exported():
    assert FilterModule().filters() == {"apt_upgrades": apt_upgrades, "apt_lists": apt_lists}


@pytest.mark.parametrize("name", ["apt_upgrades", "apt_lists"])
def test_ansible_doc_renders_each(name, tmp_path):
    proc = subprocess.run([str(VENV_BIN / "ansible-doc"), "-t", "filter", f"aegis.rag.{name}"], check=False,
                          env=ansible_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "[WARNING]" not in proc.stderr and "[ERROR]" not in proc.stderr, proc.stderr
    for section in ("OPTIONS", "EXAMPLES", "RETURN VALUES", "apt-get" if name == "apt_upgrades" else "updated_at"):
        assert section in proc.stdout
