# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: metrics_window
short_description: Latency quantile and error ratio of what happened between two reads of a /metrics page
version_added: 0.1.0
description:
  - Compares two reads of a Prometheus text exposition (a service's C(/metrics), such as the Aegis API's) taken some
    seconds apart and sums up the requests made between them, not those since the process started. It gives a
    histogram's observations, their quantile and mean, and the ratio of two counters' increases (failures over all).
  - The quantile is computed from the increases of the histogram's buckets as PromQL's C(histogram_quantile) does
    (linear within the bucket that holds the rank). When the rank falls in the C(+Inf) bucket the quantile is the
    largest finite bucket bound, and RV(_value.above_largest_bucket) says that the true value is higher.
  - Counters are read as PromQL's C(increase) reads them, series by series, then summed. A series only in the later
    read counts from zero. When any chosen series is lower in the later read than in the earlier one, the process
    restarted between the reads, and the later read alone is the window (RV(_value.reset)).
  - Series are chosen with PromQL selectors, C(name{label="v", label!="v", label=~"regex", label!~"regex"}); regular
    expressions are anchored, as in PromQL. For a histogram the name is the base name, without C(_bucket).
    Bucket bounds are compared as numbers (C(le="1") and C(le="1.0") are one bucket).
positional: _input, before
options:
  _input:
    description: The later read of the page (its text).
    type: str
    required: true
  before:
    description: The earlier read of the page (its text).
    type: str
    required: true
  histogram:
    description: Selector of the histogram, for example C(http_request_duration_seconds{handler!~"/health|/ready"}).
    type: str
  errors:
    description: Selector of the counter of failures, for example C(http_requests_total{status=~"5.."}); with O(total).
    type: str
  total:
    description: Selector of the counter of all attempts, for example C(http_requests_total); with O(errors).
    type: str
  quantile:
    description: The quantile, between 0 and 1.
    type: float
    default: 0.95
"""

EXAMPLES = r"""
- name: Read the API's /metrics twice, 10 seconds apart
  ansible.builtin.uri:
    url: http://api-1:8910/metrics
    return_content: true
  register: reads
  loop: [first, second]
  loop_control:
    pause: 10

- name: The P95 and the 5xx ratio of the requests between the reads
  ansible.builtin.set_fact:
    recent: >-
      {{ reads.results[1].content | aegis.rag.metrics_window(reads.results[0].content,
         histogram='http_request_duration_seconds{handler!~"/health|/ready"}',
         errors='http_requests_total{status=~"5..", handler!~"/health|/ready"}',
         total='http_requests_total{handler!~"/health|/ready"}') }}
# {"observations": 240, "quantile": 0.95, "quantile_value": 0.43, "above_largest_bucket": false, "largest_bucket": 1.0,
#  "mean": 0.12, "sum": 28.8, "histogram_found": true, "errors": 3, "total": 240, "error_ratio": 0.0125,
#  "counters_found": true, "reset": false}
"""

RETURN = r"""
_value:
  description:
    - C(observations), C(sum) and C(mean) of the histogram's observations in the window (C(mean) is null without any);
      C(quantile) and C(quantile_value) (null without observations); C(above_largest_bucket) (the quantile fell in
      the C(+Inf) bucket, so C(quantile_value) is C(largest_bucket), a lower bound); C(largest_bucket), the largest
      finite bound; C(histogram_found) (the later read has the histogram).
    - C(errors) and C(total), the counters' increases; C(error_ratio) (null when C(total) is 0); C(counters_found)
      (the later read has the O(total) counter); C(reset) (a chosen series went down, so the process restarted).
  type: dict
"""

import math
import re

from ansible.errors import AnsibleFilterError

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(r"^(" + _NAME + r")\s*(\{.*\})?\s+(\S+)(?:\s+\S+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_SELECTOR = re.compile(r"^\s*(" + _NAME + r")\s*(?:\{(.*)\})?\s*$")
_EXEMPLAR = re.compile(r"\s+#\s+\{[^{}]*\}.*$")  # OpenMetrics: "<sample> # {trace_id="..."} 0.4"
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


def _unescape(value):
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), value)


def _pairs(text, pattern, what):
    """The name="value" pairs of a label set or a selector's braces, in order."""
    found, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = pattern.match(text, pos)
        if not match or match.end() == pos:
            raise ValueError("cannot read the %s {%s}" % (what, text))
        found.append(match.groups())
        pos = match.end()
    return found


def _float(text):
    value = float(text)  # float() reads +Inf, -Inf and NaN as Prometheus writes them
    if math.isnan(value):
        raise ValueError("NaN")
    return value


def _le(value):
    """A bucket bound in one spelling ("1", "1.0" and "1e0" are one bound, as Prometheus 3 reads them)."""
    try:
        return repr(float(value))
    except ValueError:
        return value


def parse(text):
    """Samples of a text exposition: {(name, ((label, value), ...)): value}; comments, NaN and unreadable lines
    are left out (a sample line of an unknown shape does not spoil the others); bucket bounds normalised."""
    samples = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(_EXEMPLAR.sub("", line))
        if not match:
            continue
        name, labels, value = match.groups()
        try:
            pairs = tuple(sorted((k, _le(v) if k == "le" else _unescape(v))
                                 for k, v in _pairs((labels or "{}")[1:-1], _LABEL, "labels")))
            samples[(name, pairs)] = samples.get((name, pairs), 0.0) + _float(value)
        except ValueError:
            continue
    return samples


def selector(text):
    """A PromQL selector as (name, [(label, op, compiled or value)])."""
    match = _SELECTOR.match(text or "")
    if not match:
        raise AnsibleFilterError("metrics_window: not a selector: %r" % (text,))
    name, braces = match.groups()
    try:
        matchers = _pairs(braces or "", _MATCHER, "selector")
    except ValueError as e:
        raise AnsibleFilterError("metrics_window: %s" % e) from None
    out = []
    for label, op, value in matchers:
        value = _unescape(value)
        if op in ("=~", "!~"):
            try:
                value = re.compile(value)
            except re.error as e:
                raise AnsibleFilterError("metrics_window: bad regular expression %r: %s" % (value, e)) from None
        out.append((label, op, value))
    return name, out


def _matches(labels, matchers):
    labels = dict(labels)
    for label, op, value in matchers:
        have = labels.get(label, "")
        if op == "=" and have != value or op == "!=" and have == value:
            return False
        if op == "=~" and not value.fullmatch(have) or op == "!~" and value.fullmatch(have):
            return False
    return True


def _chosen(samples, name, matchers):
    """{labels: value} of the series `name` that `matchers` choose."""
    return {labels: value for (n, labels), value in samples.items() if n == name and _matches(labels, matchers)}


def _window(later, earlier, families):
    """The increases of each family ({key: (name, matchers)}) between the reads: ({key: {labels: increase}},
    reset). When any chosen series went down the process restarted: every family counts from zero."""
    chosen = dict((key, (name, _chosen(later, name, matchers))) for key, (name, matchers) in families.items())
    reset = any(value < earlier.get((name, labels), 0.0)
                for name, series in chosen.values() for labels, value in series.items())
    return (dict((key, dict((labels, value - (0.0 if reset else earlier.get((name, labels), 0.0)))
                            for labels, value in series.items()))
                 for key, (name, series) in chosen.items()), reset)


def bucket_quantile(q, buckets):
    """PromQL's histogram_quantile over [(upper bound, cumulative count)]: (value or None, in the +Inf bucket)."""
    merged = {}
    for bound, count in buckets:
        merged[bound] = merged.get(bound, 0.0) + count
    ordered = sorted(merged.items())
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None, False
    top = 0.0
    for i, (bound, count) in enumerate(ordered):  # ensure monotonic, as Prometheus does
        top = max(top, count)
        ordered[i] = (bound, top)
    observations = ordered[-1][1]
    if observations <= 0:
        return None, False
    rank = q * observations
    b = next(i for i, (_bound, count) in enumerate(ordered) if count >= rank)
    if b == len(ordered) - 1:
        return ordered[-2][0], True
    if b == 0 and ordered[0][0] <= 0:
        return ordered[0][0], False
    start, count = 0.0, ordered[b][1]
    if b > 0:
        start = ordered[b - 1][0]
        count -= ordered[b - 1][1]
        rank -= ordered[b - 1][1]
    return start + (ordered[b][0] - start) * (rank / count), False


def _number(value):
    return int(value) if float(value).is_integer() else value


def metrics_window(after, before, histogram=None, errors=None, total=None, quantile=0.95):
    if not isinstance(after, str) or not isinstance(before, str):
        raise AnsibleFilterError("metrics_window: both reads must be the text of a /metrics page")
    try:
        q = float(quantile)
    except (TypeError, ValueError):
        raise AnsibleFilterError("metrics_window: quantile must be a number, got %r" % (quantile,)) from None
    if not 0 <= q <= 1:
        raise AnsibleFilterError("metrics_window: quantile must be within [0, 1], got %s" % q)
    later, earlier = parse(after), parse(before)
    out = {"observations": 0, "sum": 0.0, "mean": None, "quantile": q, "quantile_value": None, "above_largest_bucket": False,
           "largest_bucket": None, "histogram_found": False, "errors": 0, "total": 0, "error_ratio": None,
           "counters_found": False, "reset": False}

    if histogram:
        name, matchers = selector(histogram)
        no_le = [m for m in matchers if m[0] != "le"]
        found, reset = _window(later, earlier, {"bucket": (name + "_bucket", no_le),
                                                "count": (name + "_count", matchers),
                                                "sum": (name + "_sum", matchers)})
        buckets = []
        for labels, increase in found["bucket"].items():
            try:
                buckets.append((float(dict(labels).get("le")), increase))
            except (TypeError, ValueError):
                continue
        infinite = [n for bound, n in buckets if math.isinf(bound)]
        count = sum(found["count"].values()) if found["count"] else sum(infinite)
        seconds = sum(found["sum"].values())
        value, above = bucket_quantile(q, buckets)
        finite = [bound for bound, _count in buckets if not math.isinf(bound)]
        out.update(observations=_number(count), sum=seconds, mean=(seconds / count) if count > 0 else None,
                   quantile_value=value, above_largest_bucket=above, largest_bucket=max(finite) if finite else None,
                   histogram_found=bool(found["bucket"] or found["count"]), reset=reset)

    if errors or total:
        if not (errors and total):
            raise AnsibleFilterError("metrics_window: errors and total go together")
        found, reset = _window(later, earlier, {"errors": selector(errors), "total": selector(total)})
        n_errors, n_total = sum(found["errors"].values()), sum(found["total"].values())
        out.update(errors=_number(n_errors), total=_number(n_total),
                   error_ratio=(n_errors / n_total) if n_total > 0 else None, counters_found=bool(found["total"]),
                   reset=out["reset"] or reset)
    return out


class FilterModule(object):
    def filters(self):
        return {"metrics_window": metrics_window}
