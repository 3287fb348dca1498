"""Metric names a PromQL expression reads, found by a small tokenizer that knows PromQL's syntax.

Label matchers `{...}`, ranges and subqueries `[...]`, strings, numbers and durations are skipped; an
identifier followed by `(`, `by` or `without` is a function or aggregation; the label lists after by/without/on/ignoring/
group_left/group_right are skipped. Every other identifier is a metric name. Each name comes with the `job`
its selector asks for (`job="..."`), or None.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<number>0x[0-9a-fA-F]+|[0-9][0-9.eE+]*(?:[a-zA-Z][0-9a-zA-Z]*)*|\.[0-9]+)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<punct>[{}()\[\],@])
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=])
""", re.VERBOSE)
_LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = _LABEL_LIST_KEYWORDS | {"and", "or", "unless", "bool", "offset", "inf", "nan", "start", "end"}
_JOB = re.compile(r"""\bjob\s*=\s*"([^"]*)\"""")


class PromQLSyntaxError(ValueError):
    pass


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise PromQLSyntaxError(f"cannot tokenize {expr[pos:pos + 20]!r} in {expr!r}")
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group()))
        pos = m.end()
    return out


def _skip_group(tokens: list[tuple[str, str]], i: int, open_: str, close: str) -> tuple[int, str]:
    """From tokens[i] == open_, the index after its matching close and the text in between."""
    depth, start = 0, i
    while i < len(tokens):
        if tokens[i][1] == open_:
            depth += 1
        elif tokens[i][1] == close:
            depth -= 1
            if depth == 0:
                return i + 1, " ".join(t for _, t in tokens[start + 1:i])
        i += 1
    raise PromQLSyntaxError(f"unbalanced {open_}")


def selectors(expr: str) -> list[tuple[str, str | None]]:
    """(metric name, job or None) for every vector selector in expr."""
    tokens, found, i = _tokens(expr), [], 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else None
        if text == "{":  # a selector without a name ({__name__=...}) hides the name: not allowed in rules
            i, body = _skip_group(tokens, i, "{", "}")
            if "__name__" in body or not found:
                raise PromQLSyntaxError(f"selector without a metric name in {expr!r}")
        elif text == "[":
            i, _ = _skip_group(tokens, i, "[", "]")
        elif kind == "ident" and text in _LABEL_LIST_KEYWORDS:
            i += 1
            if nxt == "(":
                i, _ = _skip_group(tokens, i, "(", ")")
        elif kind == "ident" and nxt in ("(", "by", "without") and text not in _KEYWORDS:
            i += 1  # a function or aggregation (`sum by (le) (...)`)
        elif kind == "ident" and text not in _KEYWORDS:
            job = None
            i += 1
            if nxt == "{":
                i, body = _skip_group(tokens, i, "{", "}")
                job_match = _JOB.search(body.replace(" ", ""))
                job = job_match.group(1) if job_match else None
            found.append((text, job))
        else:
            i += 1
    return found


def resolve(names: list[tuple[str, str | None]], recorded: dict[str, str]) -> set[tuple[str, str | None]]:
    """Recorded names (`level:metric:op`) replaced by the names their expressions read, recursively."""
    out: set[tuple[str, str | None]] = set()
    todo, seen = list(names), set()
    while todo:
        name, job = todo.pop()
        if name in recorded:
            if name not in seen:
                seen.add(name)
                todo.extend(selectors(recorded[name]))
        else:
            out.add((name, job))
    return out
