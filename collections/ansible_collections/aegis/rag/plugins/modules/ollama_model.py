#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ollama_model
short_description: Install, update or remove an Ollama model, and optionally test it
version_added: 0.1.0
description:
  - Manages one model on an Ollama server through its REST API, idempotently.
  - V(present) pulls the model only when it is not installed; V(absent) deletes it; V(latest) pulls
    it every time and reports a change only when the digest changed.
  - A pull streams Ollama's progress lines; every line is checked for an error, since Ollama can
    report a failed pull after answering HTTP 200. The result keeps a compact progress log.
  - With O(test), the module then runs one timed generation and fails, with the details, when the
    answer is empty, does not match O(test.expect), or does not come within O(test.timeout).
author:
  - Aegis maintainers (@aegis-rag)
extends_documentation_fragment:
  - aegis.rag.ollama
  - aegis.rag.attributes
attributes:
  check_mode:
    support: full
    details:
      - Nothing is pulled, deleted or generated in check mode; the module says what would change.
      - For O(state=latest) on an installed model, whether the registry has a newer version is only
        known by pulling, so check mode reports C(changed=false) and says so in RV(msg).
  diff_mode:
    support: full
    details:
      - The diff shows the model's presence and digest before and after.
options:
  name:
    description:
      - Model name with an optional tag, for example V(deepseek-r1:7b). A missing tag means V(latest).
    type: str
    required: true
    aliases: [model]
  state:
    description:
      - V(present) pulls the model when it is missing, V(absent) removes it, V(latest) pulls it to
        pick up a newer version of the tag.
    type: str
    choices: [present, absent, latest]
    default: present
  insecure:
    description:
      - Allow pulling from a registry over plain HTTP or with an unverified certificate.
    type: bool
    default: false
  pull_timeout:
    description:
      - Seconds to wait for each progress line of a pull. The whole pull may take much longer.
    type: float
    default: 600.0
  test:
    description:
      - Run one generation after the model is in place (not in check mode, not with O(state=absent)).
    type: dict
    suboptions:
      prompt:
        description: The prompt.
        type: str
        default: Hello
      expect:
        description: Python regular expression the answer must match (searched, not anchored).
        type: str
      timeout:
        description: Seconds the generation may take, model load included.
        type: float
        default: 120.0
      options:
        description: "Ollama model options for the test, for example C({num_predict: 32, temperature: 0})."
        type: dict
notes:
  - The generation is sent with C(stream=false) and C(think=false); any C(<think>) block an older
    server still returns is removed before matching.
"""

EXAMPLES = r"""
- name: Make sure the chat model is installed (pulls only when missing)
  aegis.rag.ollama_model:
    name: deepseek-r1:7b
    ollama_url: http://127.0.0.1:11434

- name: Update the model and check it answers within a minute
  aegis.rag.ollama_model:
    name: deepseek-r1:7b
    state: latest
    test:
      prompt: "Reply with the single word: ready"
      expect: "(?i)ready"
      timeout: 60
      options:
        num_predict: 16
        temperature: 0
  register: model

- name: Show the measured speed
  ansible.builtin.debug:
    msg: "{{ model.test.tokens_per_second }} tokens/s, loaded in {{ model.test.load_duration_ms }} ms"

- name: Remove the old model
  aegis.rag.ollama_model:
    name: llama2:7b
    state: absent
"""

RETURN = r"""
name:
  description: The model name as given.
  returned: always
  type: str
  sample: deepseek-r1:7b
present:
  description: Whether the model is installed after the task (predicted in check mode).
  returned: always
  type: bool
  sample: true
digest:
  description: Digest of the installed model; null when absent or not yet known (check mode).
  returned: always
  type: str
  sample: 0a8c266910232fd3291e71e5ba1e058cc5af9d411192cf88b6d30e92b6e73163
size:
  description: Size of the model in bytes; null when absent or not yet known.
  returned: always
  type: int
  sample: 4683075271
previous_digest:
  description: Digest before the task (null when the model was absent).
  returned: always
  type: str
  sample: null
progress:
  description:
    - Compact pull log, one entry per status (repeated lines of the same status merged, keeping the
      last byte counts). Empty when nothing was pulled.
  returned: always
  type: list
  elements: dict
  sample:
    - {status: pulling manifest}
    - {status: pulling 96c415656d37, digest: "sha256:96c4...", total: 4683071776, completed: 4683071776}
    - {status: verifying sha256 digest}
    - {status: writing manifest}
    - {status: success}
test:
  description: Outcome of the test generation.
  returned: when O(test) is given
  type: dict
  contains:
    response:
      description: The answer (think block removed), cut to 500 characters.
      type: str
    passed:
      description: Whether the answer was non-empty and matched O(test.expect).
      type: bool
    latency_ms:
      description: Wall time of the generation request as measured by the module.
      type: float
    load_duration_ms:
      description: Time Ollama spent loading the model (0 when it was already loaded).
      type: float
    total_duration_ms:
      description: Ollama's own total time for the request.
      type: float
    eval_count:
      description: Tokens generated.
      type: int
    tokens_per_second:
      description: eval_count divided by eval_duration; null when Ollama did not report them.
      type: float
    skipped:
      description: True in check mode, where no generation runs.
      type: bool
  sample:
    response: ready
    passed: true
    latency_ms: 1840.2
    load_duration_ms: 1201.7
    total_duration_ms: 1822.9
    eval_count: 3
    tokens_per_second: 41.5
msg:
  description: What was done (or would be done in check mode).
  returned: always
  type: str
  sample: pulled deepseek-r1:7b
"""

import re
import time

from ansible_collections.aegis.rag.plugins.module_utils.base import AegisModule
from ansible_collections.aegis.rag.plugins.module_utils.http_client import HttpError, excerpt
from ansible_collections.aegis.rag.plugins.module_utils.ollama import find_model, list_models

PROGRESS_LIMIT = 60
THINK_BLOCK = re.compile(r"<think>.*?</think>", re.S)


class PullFailed(Exception):
    def __init__(self, msg, progress):
        super(PullFailed, self).__init__(msg)
        self.msg = msg
        self.progress = progress


class TestFailed(Exception):
    def __init__(self, msg, report):
        super(TestFailed, self).__init__(msg)
        self.msg = msg
        self.report = report


class Progress:
    """Pull progress with repeated statuses merged, so thousands of lines become a handful."""

    def __init__(self):
        self.entries = []
        self.lines = 0
        self.dropped = 0

    def add(self, event):
        self.lines += 1
        entry = {k: event[k] for k in ("status", "digest", "total", "completed") if k in event}
        if self.entries and self.entries[-1].get("status") == entry.get("status"):
            self.entries[-1].update(entry)
        elif len(self.entries) < PROGRESS_LIMIT:
            self.entries.append(entry)
        else:
            self.dropped += 1

    @property
    def succeeded(self):
        return bool(self.entries) and self.entries[-1].get("status") == "success"

    def as_list(self):
        if self.dropped:
            return self.entries + [{"status": "(%d more statuses not kept)" % self.dropped}]
        return list(self.entries)


def desired_action(state, installed):
    """(action, changed prediction) for a state: action is 'pull', 'delete' or None."""
    if state == "absent":
        return ("delete", True) if installed else (None, False)
    if state == "present":
        return ("pull", True) if not installed else (None, False)
    # latest: always pull; a change is certain only for a missing model
    return "pull", not installed


def pull(client, name, insecure, line_timeout):
    progress = Progress()
    payload = {"model": name, "stream": True, "insecure": insecure}
    stream = client.stream_json_lines("POST", "/api/pull", json=payload, timeout=line_timeout)
    try:
        for event in stream:
            if not isinstance(event, dict):
                raise PullFailed("unexpected progress line: %s" % excerpt(str(event), 200), progress)
            if event.get("error"):
                raise PullFailed(str(event["error"]), progress)
            progress.add(event)
    except HttpError as exc:
        raise PullFailed(exc.msg, progress) from exc
    if not progress.succeeded:
        raise PullFailed("the progress stream ended without a success status", progress)
    return progress


def strip_think(text):
    return THINK_BLOCK.sub("", text or "").strip()


def run_test(client, name, test):
    payload = {"model": name, "prompt": test["prompt"], "stream": False, "think": False}
    if test.get("options"):
        payload["options"] = test["options"]
    t0 = time.monotonic()
    try:
        body = client.post("/api/generate", json=payload, timeout=test["timeout"], retries=0).json()
    except HttpError as exc:
        raise TestFailed("test generation failed: %s" % exc.msg,
                         {"passed": False, "latency_ms": round((time.monotonic() - t0) * 1000, 1),
                          "error": exc.msg, "body": exc.body_excerpt}) from exc
    return test_report(body, test.get("expect"), (time.monotonic() - t0) * 1000)


def test_report(body, expect, latency_ms):
    """Turn an /api/generate reply into the test result; raises TestFailed when it does not pass."""
    answer = strip_think(body.get("response") if isinstance(body, dict) else "")
    body = body if isinstance(body, dict) else {}
    eval_count, eval_ns = body.get("eval_count"), body.get("eval_duration")
    report = {
        "response": answer[:500],
        "latency_ms": round(latency_ms, 1),
        "load_duration_ms": round((body.get("load_duration") or 0) / 1e6, 1),
        "total_duration_ms": round((body.get("total_duration") or 0) / 1e6, 1),
        "eval_count": eval_count,
        "tokens_per_second": round(eval_count / (eval_ns / 1e9), 2) if eval_count and eval_ns else None,
        "passed": False,
    }
    if not answer:
        raise TestFailed("test generation returned an empty answer", report)
    if expect and not re.search(expect, answer):
        raise TestFailed("test answer does not match %r: %s" % (expect, excerpt(answer, 200)), report)
    report["passed"] = True
    return report


def model_state(entry):
    if entry is None:
        return {"present": False, "digest": None, "size": None}
    return {"present": True, "digest": entry.get("digest"), "size": entry.get("size")}


def argument_spec():
    """The module's own options; AegisModule adds the Ollama connection options."""
    return dict(
        name=dict(type="str", required=True, aliases=["model"]),
        state=dict(type="str", choices=["present", "absent", "latest"], default="present"),
        insecure=dict(type="bool", default=False),
        pull_timeout=dict(type="float", default=600.0),
        test=dict(type="dict", options=dict(
            prompt=dict(type="str", default="Hello"),
            expect=dict(type="str"),
            timeout=dict(type="float", default=120.0),
            options=dict(type="dict"),
        )),
    )


def invalid_test_option(test, state):
    """Why the `test` option cannot be used as given, or None."""
    if test is None:
        return None
    if state == "absent":
        return "test cannot be used with state=absent"
    if test["timeout"] <= 0:
        return "test.timeout must be greater than 0"
    if test.get("expect"):
        try:
            re.compile(test["expect"])
        except re.error as exc:
            return "test.expect is not a valid regular expression: %s" % exc
    return None


def predict(name, action, changed, before):
    """Check mode: (state after, msg) without touching the server."""
    if action == "delete":
        return model_state(None), "would delete %s" % name
    if action == "pull" and changed:
        return {"present": True, "digest": None, "size": None}, "would pull %s" % name
    if action == "pull":
        return before, ("%s is present (%s); check mode cannot tell whether the registry has a newer version"
                        % (name, before["digest"]))
    return before, "%s is %s" % (name, "present" if before["present"] else "absent")


def delete(module, client, name):
    """Delete the model: (changed, state after, msg)."""
    with module.reporting(http="cannot delete %s" % name):
        resp = client.delete("/api/delete", json={"model": name}, expect=(200, 404))
    changed = resp.status == 200  # 404: someone else removed it meanwhile
    return changed, model_state(None), "deleted %s" % name if changed else "%s was already absent" % name


def pull_and_describe(module, client, name, before):
    """Pull the model: (changed, state after, msg); the progress log goes into module.result."""
    p = module.params
    try:
        with module.reporting(http="cannot list the models after pulling %s" % name):
            progress = pull(client, name, p["insecure"], p["pull_timeout"])
            after = model_state(find_model(list_models(client), name))
    except PullFailed as exc:
        module.fail("pull of %s failed: %s" % (name, exc.msg), progress=exc.progress.as_list(),
                    previous_digest=before["digest"])
    module.result["progress"] = progress.as_list()
    if not after["present"]:
        module.fail("pull of %s reported success but the model is not listed" % name)
    changed = after["digest"] != before["digest"]
    if not before["present"]:
        return changed, after, "pulled %s" % name
    return changed, after, "updated %s to %s" % (name, after["digest"]) if changed else "%s is up to date" % name


def apply(module, client, name, action, changed, before):
    """Carry out `action` (or predict it in check mode): (changed, state after, msg)."""
    if module.check_mode or action is None:
        return (changed,) + predict(name, action, changed, before)
    if action == "delete":
        return delete(module, client, name)
    return pull_and_describe(module, client, name, before)


def add_test_result(module, client, name, test):
    """Run the test generation into module.result (skipped in check mode); fails when it does not pass."""
    if module.check_mode:
        module.result["test"] = {"skipped": True, "passed": None}
        return
    try:
        module.result["test"] = run_test(client, name, test)
    except TestFailed as exc:
        module.result["test"] = exc.report
        module.fail("%s (%s): %s" % (name, module.result["msg"], exc.msg))


def main():
    module = AegisModule(argument_spec(), services=("ollama",), supports_check_mode=True)
    p = module.params
    name, state, test = p["name"].strip(), p["state"], p["test"]
    problem = "name must not be empty" if not name else invalid_test_option(test, state)
    if problem:
        module.fail(problem)

    client = module.ollama_client()
    with module.reporting(http="cannot list the models of %s" % p["ollama_url"]):
        before = model_state(find_model(list_models(client), name))
    module.result.update(name=name, state=state, previous_digest=before["digest"], progress=[])
    action, changed = desired_action(state, before["present"])
    changed, after, msg = apply(module, client, name, action, changed, before)

    module.result.update(changed=changed, present=after["present"], digest=after["digest"], size=after["size"],
                         msg=msg)
    if module._diff:
        module.result["diff"] = {"before": {"name": name, "present": before["present"], "digest": before["digest"]},
                                 "after": {"name": name, "present": after["present"], "digest": after["digest"]}}
    if test is not None:
        add_test_result(module, client, name, test)
    module.exit()


if __name__ == "__main__":
    main()
