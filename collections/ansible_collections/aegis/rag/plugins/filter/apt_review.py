# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filters of the monthly maintenance's review of pending updates (playbook aegis.rag.maintenance_monthly);
their documentation is in apt_upgrades.yml and apt_lists.yml:

- apt_upgrades(lines): the upgrades the Inst lines of `apt-get --simulate upgrade` list, security ones marked.
- apt_lists(refresh, cache_valid_time, now): whether the refresh task (ansible.builtin.apt, update_cache) refreshed
  the package lists, when they were last updated, or the error that kept them old.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time

from ansible.errors import AnsibleFilterError

# "Inst openssl [3.0.15-1~deb12u1] (3.0.17-1~deb12u2 Debian-Security:12/stable-security [amd64])"; a package that
# is not installed yet has no [installed] part
INST = re.compile(r"^Inst (\S+) (?:\[(\S+)\] )?\((\S+) (.*)\)")
ERROR_LENGTH = 300


def apt_upgrades(lines):
    if not isinstance(lines, list):
        raise AnsibleFilterError("apt_upgrades expects apt-get's lines (a list), got %s" % type(lines).__name__)
    upgrades = []
    for line in lines:
        match = INST.match(str(line))
        if match:
            package, installed, candidate, origin = match.groups()
            upgrades.append({"package": package, "installed": installed, "candidate": candidate,
                             "origin": origin, "security": "security" in origin.lower()})
    return upgrades


def _shorten(text, length=ERROR_LENGTH, leeway=5, end="..."):
    """As Jinja's truncate: whole words, only when longer than length + leeway."""
    if len(text) <= length + leeway:
        return text
    return text[:length - len(end)].rsplit(" ", 1)[0] + end


def apt_lists(refresh, cache_valid_time, now):
    """The state of the package lists after the refresh task (ansible.builtin.apt with update_cache and
    cache_valid_time, failed_when: false): refreshed, when (updated_at), or the error that kept them old."""
    if not isinstance(refresh, dict):
        raise AnsibleFilterError("apt_lists expects the refresh task's registered result (a dict), got %s"
                                 % type(refresh).__name__)
    try:
        valid, now = int(cache_valid_time), float(now)
    except (TypeError, ValueError) as err:
        raise AnsibleFilterError("apt_lists: cache_valid_time and now must be numbers, got %r and %r"
                                 % (cache_valid_time, now)) from err
    at = refresh.get("cache_update_time")
    ok = "cache_update_time" in refresh  # a refresh that worked returns it; a failed or skipped one does not
    refreshed = ok and bool(refresh.get("cache_updated") or (at is not None and int(now) - int(at) > valid))
    return {
        "refreshed": refreshed,
        "updated_at": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(int(at))) if at else None,
        "cache_valid_time": valid,
        "error": None if ok else _shorten(str(refresh.get("msg") or "the refresh returned nothing").strip()),
    }


class FilterModule(object):
    def filters(self):
        return {"apt_upgrades": apt_upgrades, "apt_lists": apt_lists}
