# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The guards of the remediation dispatcher (playbook aegis.rag.remediate), shared by the filter
aegis.rag.remediation_plan (which runbook, for which host) and the module aegis.rag.remediation_guard
(may it run now: off switch, suggest-only, attempts per alert and host, one runbook per tier).

State lives in one directory: state.json (attempts, written atomically under state.lock), decisions.jsonl
(one line per decision) and tier-<tier>.lock (O_EXCL, broken when older than its staleness limit)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import tempfile
import time
import uuid

from urllib.parse import urlsplit

RUN, SUGGEST, ESCALATE, DISABLED, BUSY, IGNORED = "run", "suggest", "escalate", "disabled", "busy", "ignored"
STATE_FILE, STATE_LOCK, DECISIONS_FILE = "state.json", "state.lock", "decisions.jsonl"
ADDRESS_VARS = ("ansible_host", "monitoring_target_address")
MAP_KEYS = ("alert", "runbook", "tier")


class RemediationError(Exception):
    pass


# -- plan: alert -> runbook, host ------------------------------------------------------------------

def match_runbook(runbooks, labels):
    """The first entry of `runbooks` whose alert and labels all equal the alert's, else None."""
    for index, entry in enumerate(runbooks):
        missing = [key for key in MAP_KEYS if not entry.get(key)]
        if missing:
            raise RemediationError("runbook map entry %d lacks %s: %r" % (index, ", ".join(missing), entry))
        wanted = dict(entry.get("labels") or {}, alertname=entry["alert"])
        if all(labels.get(name) == value for name, value in wanted.items()):
            return entry
    return None


def instance_address(instance):
    """(host, port) of an instance label: 'api-1:8910', '[::1]:6333', 'api-1' or a probed URL
    ('http://10.0.0.5:11434/api/version', the blackbox exporter's). The host is lower case, port None when absent."""
    text = instance.strip()
    parts = urlsplit(text if "://" in text else "//" + text)
    try:
        port = parts.port
    except ValueError:
        raise RemediationError("instance %r has an invalid port" % instance) from None
    if not parts.hostname:
        raise RemediationError("instance %r names no host" % instance)
    return parts.hostname.lower(), port


def resolve_instance(instance, candidates):
    """The inventory host an instance label means. `candidates`: dicts {name, addresses, port} (the hosts of the
    runbook's group). A host matches by its name or an address; hosts sharing an address are told apart by port."""
    address, port = instance_address(instance)
    matches = [c for c in candidates if address in {a.lower() for a in c["addresses"] if a}]
    if len(matches) > 1 and port is not None:
        matches = [c for c in matches if str(c.get("port")) == str(port)] or matches
    if len(matches) == 1:
        return matches[0]["name"]
    if not matches:
        raise RemediationError("instance %r matches no host (by inventory name, %s) among %s"
                               % (instance, " or ".join(ADDRESS_VARS), sorted(c["name"] for c in candidates)))
    raise RemediationError("instance %r matches several hosts: %s" % (instance, sorted(c["name"] for c in matches)))


def fingerprint_of(alert):
    """Alertmanager's fingerprint, or one made from the labels when the alert has none (a hand-written alert)."""
    given = alert.get("fingerprint")
    if given not in (None, ""):
        return str(given)
    labels = json.dumps(alert.get("labels") or {}, sort_keys=True)
    return "labels-" + hashlib.sha256(labels.encode("utf-8")).hexdigest()[:16]


def plan_remediation(alert, runbooks, group_hosts):
    """The plan of one alert: runbook, tier, the host (by its instance label) or the whole tier (no instance
    label), and `error` (None, or why it cannot be planned; the guard fails with it after its switch checks).
    `group_hosts(tier, entry)` returns the candidates of resolve_instance, or None when the group is unknown."""
    labels = alert.get("labels") or {}
    plan = {"alert": labels.get("alertname", ""), "status": alert.get("status", ""),
            "fingerprint": fingerprint_of(alert), "instance": labels.get("instance", ""), "labels": labels,
            "runbook": None, "tier": None, "host": None, "limit": None, "extra_vars": {}, "error": None}
    try:
        entry = match_runbook(runbooks, labels)
        if entry is None:
            raise RemediationError("no runbook for alert %r with labels %s; mapped: %s" % (
                plan["alert"], json.dumps(labels, sort_keys=True),
                ", ".join(sorted(set("%s%s" % (e["alert"], json.dumps(e.get("labels") or {}, sort_keys=True))
                                     for e in runbooks)))))
        plan.update(runbook=entry["runbook"], tier=entry["tier"], extra_vars=dict(entry.get("extra_vars") or {}))
        candidates = group_hosts(entry["tier"], entry)
        if candidates is None:
            raise RemediationError("the inventory has no group %r (the tier of %s)" % (entry["tier"], plan["alert"]))
        if plan["instance"]:
            plan["host"] = resolve_instance(plan["instance"], candidates)
        plan["limit"] = plan["host"] or entry["tier"]
    except RemediationError as exc:
        plan["error"] = "cannot remediate %s: %s" % (plan["alert"] or "an alert without alertname", exc)
    return plan


# -- decision ---------------------------------------------------------------------------------------

def decide(plan, enabled, disable_file, suggest_only, attempts, max_attempts):
    """(decision, reason) before the tier lock: ignored, disabled, suggest, escalate or run; RemediationError
    when the plan has an error (only once the switches say remediation would otherwise go on)."""
    if plan.get("status") != "firing":
        return IGNORED, "the alert is %s, not firing: nothing to repair" % (plan.get("status") or "without status")
    if not enabled:
        return DISABLED, "remediation is switched off (aegis_remediation_enabled is false)"
    if disable_file and os.path.exists(disable_file):
        return DISABLED, "remediation is switched off: %s exists" % disable_file
    if plan.get("error"):
        raise RemediationError(plan["error"])
    if plan["alert"] in suggest_only or "*" in suggest_only:
        return SUGGEST, "%s is suggest-only: the runbook is not run" % plan["alert"]
    if attempts >= max_attempts:
        return ESCALATE, "%d attempts for %s on %s within the window (at most %d): escalated, not run" % (
            attempts, plan["alert"], plan["limit"], max_attempts)
    return RUN, "attempt %d of %d for %s on %s" % (attempts + 1, max_attempts, plan["alert"], plan["limit"])


def runbook_command(plan, ansible_playbook, inventories, report_dir, timeout):
    """argv of the runbook run: bounded by timeout(1), same inventories, limited to the plan's host or tier."""
    extra_vars = dict(plan.get("extra_vars") or {}, aegis_report_dir=report_dir)
    argv = ["timeout", "--kill-after=60", str(int(timeout)), ansible_playbook]
    for source in inventories:
        argv += ["--inventory", source]
    return argv + [plan["runbook"], "--limit", plan["limit"], "--extra-vars", json.dumps(extra_vars, sort_keys=True)]


def runbook_environment(environ):
    """Environment of the runbook run: plain text output for the outcome record, and none of ansible-runner's
    event callback (run_playbook under ansible-rulebook puts it in ANSIBLE_CALLBACK_PLUGINS; a nested run would
    print encoded events and write them into the dispatcher's own job artifacts)."""
    paths = [p for p in environ.get("ANSIBLE_CALLBACK_PLUGINS", "").split(os.pathsep)
             if p and not os.path.exists(os.path.join(p, "awx_display.py"))]
    return {"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default", "ANSIBLE_CALLBACK_PLUGINS": os.pathsep.join(paths),
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}


# -- files ------------------------------------------------------------------------------------------

def write_json_atomic(path, data):
    """Replace `path` with `data` as JSON: a temporary file in the same directory, fsync, rename."""
    directory = os.path.dirname(path) or "."
    fd, temp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise


def make_dirs(path):
    try:
        os.makedirs(path)
    except OSError as exc:
        if exc.errno != errno.EEXIST or not os.path.isdir(path):
            raise RemediationError("cannot create directory %s: %s" % (path, exc)) from exc


def load_state(path):
    if not os.path.exists(path):
        return {"version": 1, "alerts": {}}
    try:
        with open(path) as handle:
            data = json.load(handle)
    except ValueError as exc:
        # never start counting from zero silently: that would lift the attempt limit
        raise RemediationError("state file %s is not JSON (%s): check it, or move it away to forget every "
                               "attempt" % (path, exc)) from exc
    if not isinstance(data, dict) or not isinstance(data.get("alerts"), dict):
        raise RemediationError("state file %s is not a remediation state (no 'alerts' object)" % path)
    return data


@contextlib.contextmanager
def state_transaction(state_dir):
    """The state, read and written back atomically under an exclusive flock of state.lock."""
    make_dirs(state_dir)
    with open(os.path.join(state_dir, STATE_LOCK), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        path = os.path.join(state_dir, STATE_FILE)
        data = load_state(path)
        yield data
        write_json_atomic(path, data)


def attempt_key(plan):
    return "%s@%s" % (plan["fingerprint"], plan["limit"])


def recent_attempts(data, key, now, window):
    return [t for t in data["alerts"].get(key, {}).get("attempts", []) if now - t < window]


def prune(data, now, window):
    """Forget attempts older than the window, and alerts left with none."""
    for key in list(data["alerts"]):
        entry = data["alerts"][key]
        entry["attempts"] = [t for t in entry.get("attempts", []) if now - t < window]
        if not entry["attempts"]:
            del data["alerts"][key]


def record_attempt(data, plan, now):
    entry = data["alerts"].setdefault(attempt_key(plan), {"attempts": []})
    entry.update(alert=plan["alert"], limit=plan["limit"], runbook=plan["runbook"])
    entry["attempts"].append(now)


def record_outcome(data, plan, outcome):
    entry = data["alerts"].get(attempt_key(plan))
    if entry is not None:
        entry["last"] = outcome


def acquire_tier_lock(state_dir, tier, owner, stale_after, now):
    """(token, holder): a token when this run now holds the tier's lock (an O_EXCL file), else None and the
    holder's record. A lock older than stale_after seconds (its dispatcher was killed) is broken. Call it inside
    state_transaction: the state's flock makes checking and breaking a lock one step."""
    make_dirs(state_dir)
    path = tier_lock_path(state_dir, tier)
    holder = live_tier_lock(state_dir, tier, stale_after, now)
    if holder is not None:
        return None, holder
    if os.path.exists(path):
        os.remove(path)
    token = uuid.uuid4().hex
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w") as handle:
        json.dump(dict(owner, token=token, created_at=now), handle, sort_keys=True)
    return token, None


def live_tier_lock(state_dir, tier, stale_after, now):
    """The holder's record of the tier's lock when it is held and younger than stale_after seconds, else None."""
    path = tier_lock_path(state_dir, tier)
    holder = read_json_quietly(path)
    try:
        created = holder.get("created_at")
        age = now - (created if isinstance(created, (int, float)) else os.path.getmtime(path))
    except OSError:  # no lock
        return None
    return holder if age < stale_after else None


def release_tier_lock(state_dir, tier, token):
    """Remove the tier's lock if this run holds it (its token); a lock broken and taken by another run stays."""
    path = tier_lock_path(state_dir, tier)
    if token and read_json_quietly(path).get("token") == token:
        os.remove(path)
        return True
    return False


def tier_lock_path(state_dir, tier):
    return os.path.join(state_dir, "tier-%s.lock" % safe_name(tier))


def read_json_quietly(path):
    try:
        with open(path) as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def safe_name(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("._") or "none"


def write_record(report_dir, kind, plan, body, now):
    """<report_dir>/remediation-<kind>-<UTC stamp>-<alert>-<host or tier>.json, never overwriting another."""
    make_dirs(report_dir)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    base = "remediation-%s-%s-%s-%s" % (kind, stamp, safe_name(plan["alert"]), safe_name(plan["limit"]))
    for suffix in [""] + ["-%d" % n for n in range(1, 100)]:
        path = os.path.join(report_dir, base + suffix + ".json")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                continue
            raise
        with os.fdopen(fd, "w") as handle:
            json.dump(body, handle, indent=2, sort_keys=True)
        return path
    raise RemediationError("too many %s records named %s in %s" % (kind, base, report_dir))


def log_decision(state_dir, line):
    """Append one JSON line to decisions.jsonl (the dispatcher's journal)."""
    make_dirs(state_dir)
    with open(os.path.join(state_dir, DECISIONS_FILE), "a") as handle:
        handle.write(json.dumps(line, sort_keys=True) + "\n")
