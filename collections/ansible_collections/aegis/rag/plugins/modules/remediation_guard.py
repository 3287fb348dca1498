#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: remediation_guard
short_description: Decide whether an alert's runbook may run now, and record what happened
version_added: 0.1.0
description:
  - The guards of the remediation dispatcher (playbook C(aegis.rag.remediate)), run on the controller with the
    plan made by the P(aegis.rag.remediation_plan#filter) filter.
  - With O(phase=admit), in this order, it decides V(ignored) (the alert is not firing), V(disabled) (the off
    switch O(enabled) or the file O(disable_file)), fails when the plan has an error (unknown alert or host),
    V(suggest) (the alert is in O(suggest_only); a suggestion record says what would run), V(escalate) (the alert
    already had O(max_attempts) runs on this host within O(window) seconds; an escalation record is written and
    a warning logged), V(busy) (another runbook of the same tier holds its lock, or the last attempt for this
    alert and host still runs; it escalates only once that attempt has failed) or V(run) (the attempt is
    counted and the tier's lock taken; RV(command) is the runbook's command line).
  - With O(phase=finish), after the run, it records the outcome (in the state and as an outcome record) and
    releases the tier's lock.
  - "Files: O(state_dir) holds C(state.json) (attempts per alert fingerprint and host, written atomically under an
    flock of C(state.lock)), C(decisions.jsonl) (one line per decision) and C(tier-<tier>.lock) (created with
    O_EXCL, broken when older than O(lock_stale_after)); O(report_dir) gets the records
    C(remediation-<suggestion|escalation|outcome>-<UTC time>-<alert>-<host>.json)."
author:
  - Aegis maintainers (@aegis-rag)
extends_documentation_fragment:
  - aegis.rag.attributes
attributes:
  check_mode:
    support: full
    details:
      - In check mode the decision is made from the current state and nothing is written or locked.
  diff_mode:
    support: none
options:
  phase:
    description:
      - V(admit) decides before the run, V(finish) records its outcome and releases the tier's lock.
    type: str
    choices: [admit, finish]
    required: true
  plan:
    description:
      - The alert's plan, as the P(aegis.rag.remediation_plan#filter) filter returns it (C(alert), C(status),
        C(fingerprint), C(instance), C(labels), C(runbook), C(tier), C(host), C(limit), C(extra_vars), C(error)).
    type: dict
    required: true
  state_dir:
    description:
      - Directory of the state, the decision journal and the tier locks; created when missing.
    type: path
    required: true
  report_dir:
    description:
      - Directory of the suggestion, escalation and outcome records; created when missing.
    type: path
    required: true
  enabled:
    description:
      - The off switch. V(false) decides V(disabled) for every alert.
    type: bool
    default: true
  disable_file:
    description:
      - While this file exists, every alert is decided V(disabled). Default C(<state_dir>/disabled).
    type: path
  suggest_only:
    description:
      - Alert names whose runbook is never run, only suggested; V(*) for every alert.
    type: list
    elements: str
    default: []
  max_attempts:
    description:
      - Runs per alert fingerprint and host within O(window); the next alert escalates instead of running.
    type: int
    default: 2
  window:
    description:
      - Seconds over which attempts are counted.
    type: int
    default: 3600
  lock_stale_after:
    description:
      - Seconds after which a tier's lock is considered left behind by a killed dispatcher and broken.
    type: int
    default: 7200
  ansible_playbook:
    description:
      - The C(ansible-playbook) of RV(command); when it is not an executable path, the one in E(PATH).
    type: str
    default: ansible-playbook
  inventories:
    description:
      - Inventory sources passed to the runbook (the dispatcher's own, C(ansible_inventory_sources)).
    type: list
    elements: str
    default: []
  runbook_timeout:
    description:
      - Seconds the runbook may run; RV(command) runs it under C(timeout), which kills it after that.
    type: int
    default: 1800
  lock_token:
    description:
      - With O(phase=finish), the RV(lock_token) that O(phase=admit) returned.
    type: str
  run_result:
    description:
      - With O(phase=finish), the registered result of the runbook's command (C(rc), C(stdout), C(stderr),
        C(start), C(end), C(msg)).
    type: dict
    default: {}
notes:
  - Runs on the controller (the state, locks and records are local files); uses C(fcntl), so POSIX only.
"""

EXAMPLES = r"""
- name: Plan the alert's remediation
  ansible.builtin.set_fact:
    plan: "{{ aegis_alert | aegis.rag.remediation_plan(runbooks, hostvars, groups) }}"

- name: Decide
  aegis.rag.remediation_guard:
    phase: admit
    plan: "{{ plan }}"
    state_dir: /var/lib/aegis/remediation
    report_dir: /var/lib/aegis/reports
    suggest_only: [AegisAPIHighErrorRate]
    inventories: "{{ ansible_inventory_sources }}"
  register: admit

- name: Run the runbook and record the outcome
  when: admit.decision == 'run'
  block:
    - name: Run the runbook
      ansible.builtin.command:
        argv: "{{ admit.command }}"
      register: run
      changed_when: true
      failed_when: false
  always:
    - name: Record the outcome
      aegis.rag.remediation_guard:
        phase: finish
        plan: "{{ plan }}"
        state_dir: /var/lib/aegis/remediation
        report_dir: /var/lib/aegis/reports
        lock_token: "{{ admit.lock_token }}"
        run_result: "{{ run | default({}) }}"
"""

RETURN = r"""
decision:
  description: With O(phase=admit), V(run), V(suggest), V(escalate), V(busy), V(disabled) or V(ignored).
  returned: phase is admit
  type: str
  sample: run
msg:
  description: The decision or outcome in one sentence.
  returned: always
  type: str
  sample: attempt 1 of 2 for AegisServiceDown on api-1
attempts:
  description: Runs for this alert and host within the window, this one included when it runs.
  returned: phase is admit
  type: int
  sample: 1
command:
  description: The runbook's command line (argv), limited to the plan's host or tier.
  returned: phase is admit and the plan has no error
  type: list
  elements: str
  sample: [timeout, --kill-after=60, "1800", ansible-playbook, --inventory, /srv/inventory, aegis.rag.runbook_api_failure,
           --limit, api-1, --extra-vars, '{"aegis_report_dir": "/var/lib/aegis/reports"}']
environment:
  description:
    - Environment of the runbook's command; plain text output, and without ansible-runner's event callback (which
      run_playbook of ansible-rulebook sets).
  returned: phase is admit
  type: dict
  sample: {ANSIBLE_STDOUT_CALLBACK: ansible.builtin.default, ANSIBLE_CALLBACK_PLUGINS: "", ANSIBLE_NOCOLOR: "1"}
lock_token:
  description: Proof of holding the tier's lock, for O(phase=finish); null unless the decision is V(run).
  returned: phase is admit
  type: str
  sample: 5f0c3c1e9a9b4d2f8e7a6b5c4d3e2f1a
record:
  description: The record written (suggestion, escalation or outcome); null when none.
  returned: always
  type: str
  sample: /var/lib/aegis/reports/remediation-escalation-20261206T041500Z-AegisServiceDown-api-1.json
escalation:
  description: The escalation record's content, for a webhook; null unless the decision is V(escalate).
  returned: phase is admit
  type: dict
  sample: {kind: escalation, alert: AegisServiceDown, limit: api-1, attempts: 2, max_attempts: 2}
report_dir:
  description: The absolute report directory, also given to the runbook as C(aegis_report_dir).
  returned: always
  type: str
  sample: /var/lib/aegis/reports
outcome:
  description: With O(phase=finish), the run's outcome, V(ok), V(failed) or V(timed out), with its C(rc).
  returned: phase is finish
  type: dict
  sample: {status: ok, rc: 0, start: "2026-12-06 04:15:00.000001", end: "2026-12-06 04:15:40.000001"}
"""

import os
import re
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.aegis.rag.plugins.module_utils import remediation as rem

ALERT_NAME = re.compile(r"^(\*|[A-Za-z_][A-Za-z0-9_:]*)$")
TAIL_CHARS = 4000
TIMEOUT_RCS = (124, 137)  # timeout(1): timed out, killed after --kill-after


def iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def record_body(kind, plan, now, **extra):
    body = {"kind": kind, "generated_at": iso(now)}
    keys = ("alert", "status", "fingerprint", "instance", "labels", "runbook", "tier", "host", "limit")
    body.update((key, plan.get(key)) for key in keys)
    body.update(extra)
    return body


def find_ansible_playbook(module, given):
    """`given` when it is an executable path, else the ansible-playbook found in PATH (else `given` unchanged:
    the run then fails naming it)."""
    if os.path.isabs(given) and os.access(given, os.X_OK):
        return given
    return module.get_bin_path(os.path.basename(given)) or given


def journal(state_dir, now, plan, decision, reason, record=None):
    rem.log_decision(state_dir, dict(at=iso(now), decision=decision, alert=plan.get("alert"),
                                     fingerprint=plan.get("fingerprint"), limit=plan.get("limit"),
                                     runbook=plan.get("runbook"), reason=reason, record=record))


def with_journal(state_dir, now, plan, decision, reason):
    """journal() that never hides the failure being reported."""
    try:
        journal(state_dir, now, plan, decision, reason)
    except (rem.RemediationError, OSError):
        pass


def admit(module, plan, state_dir, report_dir, now):
    params = module.params
    disable_file = params["disable_file"] or os.path.join(state_dir, "disabled")
    command = None
    if not plan.get("error") and plan.get("runbook"):
        command = rem.runbook_command(plan, find_ansible_playbook(module, params["ansible_playbook"]),
                                      params["inventories"], report_dir, params["runbook_timeout"])
    result = dict(decision=None, attempts=0, command=command, environment=rem.runbook_environment(os.environ),
                  lock_token=None, record=None, escalation=None, report_dir=report_dir)

    def judge(data):
        attempts = rem.recent_attempts(data, rem.attempt_key(plan), now, params["window"]) if plan["limit"] else []
        decision, reason = rem.decide(plan, params["enabled"], disable_file, params["suggest_only"], len(attempts),
                                      params["max_attempts"])
        if decision == rem.ESCALATE:  # not while the last attempt still runs: it may yet repair the fault
            holder = rem.live_tier_lock(state_dir, plan["tier"], params["lock_stale_after"], now)
            if holder and (holder.get("alert"), holder.get("limit")) == (plan["alert"], plan["limit"]):
                decision = rem.BUSY
                reason = "attempt %d of %d for %s on %s still runs: escalated only if it fails; not counted" % (
                    len(attempts), params["max_attempts"], plan["alert"], plan["limit"])
        return decision, reason, attempts

    try:
        if module.check_mode:
            decision, reason, attempts = judge(rem.load_state(os.path.join(state_dir, rem.STATE_FILE)))
            if decision == rem.RUN and os.path.exists(rem.tier_lock_path(state_dir, plan["tier"])):
                decision, reason = rem.BUSY, "the %s tier's lock is held" % plan["tier"]
            result.update(decision=decision, attempts=len(attempts))
            module.exit_json(changed=decision in (rem.RUN, rem.SUGGEST, rem.ESCALATE), msg=reason, **result)

        with rem.state_transaction(state_dir) as data:
            rem.prune(data, now, params["window"])
            decision, reason, attempts = judge(data)
            if decision == rem.RUN:
                owner = dict(alert=plan["alert"], limit=plan["limit"], fingerprint=plan["fingerprint"],
                             runbook=plan["runbook"])
                token, holder = rem.acquire_tier_lock(state_dir, plan["tier"], owner, params["lock_stale_after"], now)
                if token is None:
                    decision = rem.BUSY
                    reason = "the %s tier is busy: %s runs for %s on %s since %s; not run, not counted" % (
                        plan["tier"], holder.get("runbook"), holder.get("alert"), holder.get("limit"),
                        iso(holder["created_at"]) if isinstance(holder.get("created_at"), (int, float)) else "?")
                else:
                    rem.record_attempt(data, plan, now)
                    attempts = attempts + [now]
                    result["lock_token"] = token
            if decision == rem.SUGGEST:
                result["record"] = rem.write_record(report_dir, "suggestion", plan, record_body(
                    "suggestion", plan, now, reason=reason, command=command), now)
            elif decision == rem.ESCALATE:
                last = data["alerts"].get(rem.attempt_key(plan), {}).get("last")
                result["escalation"] = record_body(
                    "escalation", plan, now, reason=reason, attempts=len(attempts),
                    attempted_at=[iso(t) for t in attempts], max_attempts=params["max_attempts"],
                    window_s=params["window"], last_outcome=last, command=command)
                result["record"] = rem.write_record(report_dir, "escalation", plan, result["escalation"], now)
                module.warn("ESCALATION: %s (record %s)" % (reason, result["record"]))
        journal(state_dir, now, plan, decision, reason, result["record"])
    except (rem.RemediationError, OSError) as exc:
        with_journal(state_dir, now, plan, "error", str(exc))
        module.fail_json(msg=str(exc), **result)
    result.update(decision=decision, attempts=len(attempts))
    module.exit_json(changed=decision in (rem.RUN, rem.SUGGEST, rem.ESCALATE), msg=reason, **result)


def outcome_of(run):
    rc = run.get("rc")
    if rc in TIMEOUT_RCS:
        status = "timed out"
    elif rc == 0 and not run.get("failed"):
        status = "ok"
    else:
        status = "failed"
    return {"status": status, "rc": rc, "start": run.get("start"), "end": run.get("end"),
            "msg": run.get("msg") if status != "ok" else None}


def finish(module, plan, state_dir, report_dir, now):
    params = module.params
    run = params["run_result"] or {}
    outcome = outcome_of(run)
    if module.check_mode:
        module.exit_json(changed=False, msg="check mode: nothing ran", outcome=outcome, record=None,
                         report_dir=report_dir)
    try:
        with rem.state_transaction(state_dir) as data:
            rem.record_outcome(data, plan, dict(outcome, finished_at=iso(now)))
            released = rem.release_tier_lock(state_dir, plan["tier"], params["lock_token"])
        record = rem.write_record(report_dir, "outcome", plan, record_body(
            "outcome", plan, now, outcome=outcome, lock_released=released,
            stdout_tail=(run.get("stdout") or "")[-TAIL_CHARS:], stderr_tail=(run.get("stderr") or "")[-TAIL_CHARS:]),
            now)
        msg = "%s on %s: %s (rc=%s)" % (plan["runbook"], plan["limit"], outcome["status"], outcome["rc"])
        journal(state_dir, now, plan, "finished", msg, record)
    except (rem.RemediationError, OSError) as exc:
        module.fail_json(msg=str(exc), outcome=outcome, report_dir=report_dir)
    if not released:
        module.warn("the %s tier's lock was not this run's any more (broken as stale?)" % plan["tier"])
    module.exit_json(changed=True, msg=msg, outcome=outcome, record=record, report_dir=report_dir)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            phase=dict(type="str", choices=["admit", "finish"], required=True),
            plan=dict(type="dict", required=True),
            state_dir=dict(type="path", required=True),
            report_dir=dict(type="path", required=True),
            enabled=dict(type="bool", default=True),
            disable_file=dict(type="path"),
            suggest_only=dict(type="list", elements="str", default=[]),
            max_attempts=dict(type="int", default=2),
            window=dict(type="int", default=3600),
            lock_stale_after=dict(type="int", default=7200),
            ansible_playbook=dict(type="str", default="ansible-playbook"),
            inventories=dict(type="list", elements="str", default=[]),
            runbook_timeout=dict(type="int", default=1800),
            lock_token=dict(type="str", no_log=False),
            run_result=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    plan = module.params["plan"]
    missing = [key for key in ("alert", "status", "fingerprint", "limit", "tier", "runbook", "error") if key not in plan]
    if missing:
        module.fail_json(msg="plan lacks %s: make it with the aegis.rag.remediation_plan filter" % ", ".join(missing))
    odd = [name for name in module.params["suggest_only"] if not ALERT_NAME.match(name)]
    if odd:  # e.g. -e 'aegis_remediation_suggest_only=["*"]', a string: running instead would be the wrong way round
        module.fail_json(msg="suggest_only takes alert names or *, not %s" % ", ".join(repr(n) for n in odd))
    state_dir = os.path.abspath(module.params["state_dir"])
    report_dir = os.path.abspath(module.params["report_dir"])
    phase = admit if module.params["phase"] == "admit" else finish
    phase(module, plan, state_dir, report_dir, time.time())


if __name__ == "__main__":
    main()
