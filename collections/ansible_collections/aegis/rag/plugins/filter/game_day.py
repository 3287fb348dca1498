# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filters of the game day (playbook aegis.rag.game_day), standard library only:

- game_day_firing(alerts, wanted): the alerts of Alertmanager's GET /api/v2/alerts that match `wanted` (one
  {alertname, labels} or a list of them; labels must all be equal); [] when wanted is empty.
- game_day_score(faults): {faults, score, table}: each fault with its times in seconds (seconds_to_detect, and
  seconds_to_repair from the alert, or seconds_to_heal from the injection for a fault healed before any alert),
  ISO times, its `failed` flag and a one-line summary; the score ({total, repaired, score, median_detect_s,
  median_repair_s, failed_requests, answered, degraded, failed_faults}); the report's tables of the faults and of the
  score (table, score_table: {columns, rows}).
- game_day_svg(faults_or_scored, date=None): the timeline chart as an SVG document: one row per fault, bars for
  the detect and repair phases, a mark per failed request, an axis in seconds, the date and the score in the title.

A fault, as the playbook records it: fault, host, alert (name or null), outcome (repaired, self-healed, not
repaired, undetected, error, not run), injected_at, detected_at, repaired_at, undone_at (epoch seconds or null),
answered, degraded, failed_requests, failure_times (epoch seconds of failed requests), note.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import statistics
from xml.sax.saxutils import escape, quoteattr

from ansible.errors import AnsibleFilterError

REPAIRED = ("repaired", "self-healed")
OUTCOMES = REPAIRED + ("not repaired", "undetected", "error", "not run")


def _labels_match(alert, wanted):
    labels = alert.get("labels") or {}
    if labels.get("alertname") != wanted.get("alertname"):
        return False
    return all(str(labels.get(name)) == str(value) for name, value in (wanted.get("labels") or {}).items())


def game_day_firing(alerts, wanted):
    if not wanted:
        return []
    if not isinstance(alerts, list):
        raise AnsibleFilterError("game_day_firing: Alertmanager's alerts must be a list, got %s" % type(alerts).__name__)
    wanted = wanted if isinstance(wanted, list) else [wanted]
    if not all(isinstance(w, dict) and w.get("alertname") for w in wanted):
        raise AnsibleFilterError("game_day_firing: each wanted alert needs an alertname")
    return [a for a in alerts if isinstance(a, dict) and any(_labels_match(a, w) for w in wanted)]


def _number(fault, key):
    value = fault.get(key)
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError("game_day_score: %s of %s is not a time: %r" % (key, fault.get("fault"), value)) from exc


def _iso(stamp):
    if stamp is None:
        return None
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds(start, end):
    return None if start is None or end is None else round(end - start, 1)


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def _score_fault(fault):
    if not isinstance(fault, dict) or not fault.get("fault"):
        raise AnsibleFilterError("game_day_score: every fault must be a dict with a name, got %r" % (fault,))
    outcome = fault.get("outcome")
    if outcome not in OUTCOMES:
        raise AnsibleFilterError("game_day_score: %s has outcome %r, not one of %s" % (
            fault["fault"], outcome, ", ".join(OUTCOMES)))
    injected, detected, repaired, undone = (_number(fault, k) for k in
                                            ("injected_at", "detected_at", "repaired_at", "undone_at"))
    scored = dict(fault)
    scored.update(
        injected_at=injected, detected_at=detected, repaired_at=repaired, undone_at=undone,
        injected=_iso(injected), detected=_iso(detected), repaired=_iso(repaired), undone=_iso(undone),
        seconds_to_detect=_seconds(injected, detected),
        # from the alert to the healthy fleet; a fault that healed before any alert has no repair phase
        seconds_to_repair=_seconds(detected, repaired) if outcome == "repaired" else None,
        seconds_to_heal=_seconds(injected, repaired) if outcome == "self-healed" else None,
        answered=int(fault.get("answered") or 0), degraded=int(fault.get("degraded") or 0),
        failed_requests=int(fault.get("failed_requests") or 0),
        failure_times=[float(t) for t in fault.get("failure_times") or []],
        failed=outcome not in REPAIRED)
    scored["summary"] = _summary(scored)
    return scored


def _summary(fault):
    """One line: what was injected where and what came of it."""
    times = []
    if fault["seconds_to_detect"] is not None:
        times.append("detected in %s" % _fmt(fault["seconds_to_detect"]))
    if fault["seconds_to_repair"] is not None:
        times.append("repaired in %s" % _fmt(fault["seconds_to_repair"]))
    if fault["seconds_to_heal"] is not None:
        times.append("healthy again within %s" % _fmt(fault["seconds_to_heal"]))
    if fault["injected_at"] is not None:
        times.append("%d failed and %d answered requests" % (fault["failed_requests"], fault["answered"]))
    line = "%s on %s: %s" % (fault["fault"], fault.get("host") or "-", fault["outcome"])
    line += " (%s)" % ", ".join(times) if times else ""
    return line + ("; " + fault["note"] if fault.get("note") else "")


TABLE_COLUMNS = ["fault", "host", "alert", "injected at", "detected at", "repaired at", "s to detect", "s to repair",
                 "answered", "failed requests", "outcome", "runbook"]


def _table_row(fault):
    runbook = fault.get("runbook") or {}
    run = "%s rc %s" % (str(runbook.get("runbook", "")).rsplit(".", 1)[-1], runbook.get("rc")) if runbook else "-"
    repaired_at = fault["repaired"] or (("undone " + fault["undone"]) if fault["undone"] else None)
    seconds = _dash(fault["seconds_to_repair"])
    if fault["seconds_to_heal"] is not None:
        seconds = "healed in %g" % fault["seconds_to_heal"]
    return [fault["fault"], fault.get("host") or "-", fault.get("alert") or "none", fault["injected"] or "-",
            fault["detected"] or "-", repaired_at or "-", _dash(fault["seconds_to_detect"]), seconds,
            fault["answered"], fault["failed_requests"], fault["outcome"], run]


def _dash(value):
    return "-" if value is None else value


def game_day_score(faults):
    if isinstance(faults, dict) and "faults" in faults:
        faults = faults["faults"]
    if not isinstance(faults, list):
        raise AnsibleFilterError("game_day_score: expected a list of faults, got %s" % type(faults).__name__)
    scored = [_score_fault(f) for f in faults]
    repaired = [f for f in scored if not f["failed"]]
    result = {
        "faults": scored,
        "score": {
            "total": len(scored),
            "repaired": len(repaired),
            "score": "%d/%d" % (len(repaired), len(scored)),
            "median_detect_s": _median(f["seconds_to_detect"] for f in scored),
            "median_repair_s": _median(f["seconds_to_repair"] for f in scored),
            "failed_requests": sum(f["failed_requests"] for f in scored),
            "answered": sum(f["answered"] for f in scored),
            "degraded": sum(f["degraded"] for f in scored),
            "failed_faults": [f["fault"] for f in scored if f["failed"]],
        },
        "table": {"columns": TABLE_COLUMNS, "rows": [_table_row(f) for f in scored]},
    }
    score = result["score"]
    result["score_table"] = {
        "columns": ["faults repaired", "median s to detect", "median s to repair", "failed requests",
                    "answered requests"],
        "rows": [[score["score"], _dash(score["median_detect_s"]), _dash(score["median_repair_s"]),
                  score["failed_requests"], score["answered"]]]}
    return result


# -- the timeline chart -----------------------------------------------------------------------------------------

WIDTH = 960
LABEL_W = 230
RIGHT = 30
TOP = 78
ROW_H = 36
BAR_H = 14
AXIS_H = 34
LEGEND_H = 30
COLORS = {"detect": "#e8a33d", "repair": "#3b73c4", "self-healed": "#3f9f5f", "unrepaired": "#c8453a",
          "failed request": "#5b1a8c"}


def _tick_step(span):
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if span / step <= 10:
            return step
    return 7200


def _fmt(seconds):
    return "-" if seconds is None else ("%g s" % seconds)


def _phases(fault):
    """(start, end, kind, tooltip) of the fault's bars, in seconds after its injection."""
    start = fault["injected_at"]
    if start is None:
        return []
    rel = {k: (None if fault[k] is None else fault[k] - start) for k in ("detected_at", "repaired_at", "undone_at")}
    outcome, bars = fault["outcome"], []
    if outcome == "self-healed":
        bars.append((0, rel["repaired_at"], "self-healed", "healed without an alert within %s"
                     % _fmt(fault["seconds_to_heal"])))
        return bars
    if rel["detected_at"] is not None:
        bars.append((0, rel["detected_at"], "detect", "detect %s (%s)" % (_fmt(fault["seconds_to_detect"]),
                                                                          fault.get("alert") or "alert")))
    if outcome == "repaired":
        bars.append((rel["detected_at"], rel["repaired_at"], "repair", "repair %s" % _fmt(fault["seconds_to_repair"])))
    else:
        end = rel["undone_at"] if rel["undone_at"] is not None else rel["repaired_at"]
        begin = rel["detected_at"] if rel["detected_at"] is not None else 0
        if end is not None:
            bars.append((begin, end, "unrepaired", "%s, undone by the game day at %s" % (outcome, _fmt(round(end, 1)))))
    return [b for b in bars if b[1] is not None]


def _bar_label(fault):
    if fault["outcome"] == "repaired":
        return "%s + %s" % (_fmt(fault["seconds_to_detect"]), _fmt(fault["seconds_to_repair"]))
    if fault["outcome"] == "self-healed":
        return "healthy within %s, no alert" % _fmt(fault["seconds_to_heal"])
    detect = ("detected in %s, " % _fmt(fault["seconds_to_detect"])) if fault["seconds_to_detect"] is not None else ""
    return detect + fault["outcome"]


def _text(x, y, content, **attrs):
    extra = "".join(" %s=%s" % (k.rstrip("_").replace("_", "-"), quoteattr(str(v))) for k, v in attrs.items())
    return "<text x=\"%.1f\" y=\"%.1f\"%s>%s</text>" % (x, y, extra, escape(str(content)))


def game_day_svg(faults, date=None):
    scored = faults if isinstance(faults, dict) and "score" in faults else game_day_score(faults)
    rows, score = scored["faults"], scored["score"]
    starts = [f["injected_at"] for f in rows if f["injected_at"] is not None]
    if date is None:
        date = _iso(min(starts))[:10] if starts else ""
    ends = [10.0]  # at least 10 s of axis
    for f in rows:
        ends += [phase[1] for phase in _phases(f)]
        if f["injected_at"] is not None:
            ends += [t - f["injected_at"] for t in f["failure_times"]]
    step = _tick_step(max(ends))
    span = step * (int(max(ends) // step) + 1)
    plot_w = WIDTH - LABEL_W - RIGHT
    height = TOP + ROW_H * max(len(rows), 1) + AXIS_H + LEGEND_H

    def x_of(seconds):
        return LABEL_W + plot_w * max(0.0, min(seconds, span)) / span

    title = "Game day %s: %s faults repaired" % (date, score["score"]) if date else \
        "Game day: %s faults repaired" % score["score"]
    subtitle = "median time to detect %s, median time to repair %s, %d failed requests (%d answered)" % (
        _fmt(score["median_detect_s"]), _fmt(score["median_repair_s"]), score["failed_requests"], score["answered"])
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
           'font-family="sans-serif" font-size="12">' % (WIDTH, height, WIDTH, height),
           "<title>%s</title>" % escape(title),
           '<rect width="100%" height="100%" fill="#ffffff"/>',
           _text(12, 24, title, font_size=17, font_weight="bold", class_="title"),
           _text(12, 44, subtitle, fill="#444444", class_="subtitle")]
    axis_y = TOP + ROW_H * max(len(rows), 1)
    out.append('<g class="axis" stroke="#dddddd">')
    for tick in range(0, int(span) + 1, step):
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d"/>' % (x_of(tick), TOP - 6, x_of(tick), axis_y))
    out.append("</g>")
    out.append('<g class="ticks" fill="#444444" text-anchor="middle">')
    for tick in range(0, int(span) + 1, step):
        out.append(_text(x_of(tick), axis_y + 16, "%d s" % tick))
    out.append("</g>")
    out.append(_text(LABEL_W + plot_w / 2, axis_y + 30, "seconds after the fault was injected", fill="#444444",
                     text_anchor="middle"))
    out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888888"/>' % (LABEL_W, axis_y, WIDTH - RIGHT, axis_y))
    for index, fault in enumerate(rows):
        y = TOP + ROW_H * index
        mid = y + ROW_H / 2
        out.append('<g class="fault" data-fault=%s data-outcome=%s>' % (
            quoteattr(fault["fault"]), quoteattr(fault["outcome"])))
        out.append(_text(12, mid - 2, fault["fault"], font_weight="bold"))
        out.append(_text(12, mid + 12, "%s: %s" % (fault.get("host") or "-", fault["outcome"]), font_size=11,
                         fill="#c8453a" if fault["failed"] else "#3f7f4f"))
        if fault["injected_at"] is None:
            out.append(_text(LABEL_W + 6, mid + 4, fault.get("note") or "not run", fill="#888888"))
        for begin, end, kind, tip in _phases(fault):
            out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>' % (
                x_of(begin), mid - BAR_H / 2 - 3, max(x_of(end) - x_of(begin), 1.5), BAR_H, COLORS[kind],
                escape(tip)))
        bars = _phases(fault)
        if bars:
            end = max(x_of(phase[1]) for phase in bars)
            label = _bar_label(fault)
            if end + 8 + 6.5 * len(label) <= WIDTH - RIGHT:
                out.append(_text(end + 6, mid + 1, label, font_size=11, fill="#333333"))
            else:
                out.append(_text(end - 6, mid - 12, label, font_size=11, fill="#333333", text_anchor="end"))
        for stamp in fault["failure_times"][:2000] if fault["injected_at"] is not None else []:
            at = x_of(stamp - fault["injected_at"])
            out.append('<line class="failed-request" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>' % (
                at, mid + BAR_H / 2 - 1, at, mid + BAR_H / 2 + 7, COLORS["failed request"]))
        out.append("</g>")
    out.append('<g class="legend">')
    x = 12
    legend_y = axis_y + AXIS_H + 10
    for kind, label in (("detect", "detect (to the alert)"), ("repair", "repair (to healthy)"),
                        ("self-healed", "healed by itself"), ("unrepaired", "not repaired or undetected"),
                        ("failed request", "failed request")):
        out.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"/>' % (x, legend_y, COLORS[kind]))
        out.append(_text(x + 16, legend_y + 10, label))
        x += 30 + 7 * len(label)
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


class FilterModule(object):
    def filters(self):
        return {"game_day_firing": game_day_firing, "game_day_score": game_day_score, "game_day_svg": game_day_svg}
