"""The request contract is exact: typed fields are not coerced, the published pattern means what the server
enforces, and a 405 names every method of its path."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest


@pytest.mark.parametrize(("field", "value"), [("stream", 0), ("stream", 1), ("stream", "true"), ("stream", None),
                                              ("top_k", "5"), ("top_k", 5.5), ("top_k", True), ("top_k", [5])])
def test_typed_fields_are_refused_not_coerced(client, field, value):
    r = client.post("/chat", json={"question": "When are snapshots uploaded?", field: value})
    assert r.status_code == 422, r.text
    assert [f["field"] for f in r.json()["fields"]] == [field]
    assert r.json()["fields"][0]["message"].startswith("Input should be a valid")


def test_an_integral_number_is_a_json_integer(client):  # JSON Schema's `integer` admits 2.0
    r = client.post("/chat", json={"question": "When are snapshots uploaded?", "top_k": 2.0})
    assert r.status_code == 200 and len(r.json()["sources"]) <= 2, r.text


# White space by one engine or another, and look-alikes that are white space to none
SPACE_LIKE = "\t\n\x0b\x0c\r \x1c\x1f\x85\xa0\u1680\u180e\u2000\u200a\u200b\u2028\u2029\u202f\u205f\u2060\u3000\ufeff"


def test_the_published_question_pattern_is_what_the_server_enforces(client):
    pattern = client.get("/openapi.json").json()["components"]["schemas"]["ChatRequest"]["properties"]["question"][
        "pattern"]
    questions = [c * 2 for c in SPACE_LIKE] + ["a", " a "]
    accepted = [client.post("/chat", json={"question": q}).status_code != 422 for q in questions]
    assert accepted == [bool(re.search(pattern, q)) for q in questions]
    node = shutil.which("node")
    if node:  # JSON Schema patterns are ECMA-262 regular expressions
        script = "const [p, qs] = JSON.parse(process.argv[1]); console.log(JSON.stringify(qs.map(q => new RegExp(p, 'u').test(q))))"
        run = subprocess.run([node, "-e", script, json.dumps([pattern, questions])], capture_output=True, text=True,
                             check=True, timeout=30)
        assert json.loads(run.stdout) == accepted
    # the two the issue named: NEL and the byte-order mark are both blank
    assert not accepted[SPACE_LIKE.index("\x85")] and not accepted[SPACE_LIKE.index("\ufeff")]


def test_a_405_names_every_method_of_its_path(client):
    r = client.options("/documents")
    assert r.status_code == 405 and r.json()["error"] == "request refused"
    assert set(r.headers["allow"].split(", ")) == {"GET", "POST"}
    assert client.put("/documents/some-id").headers["allow"] == "DELETE"
    assert client.get("/chat").headers["allow"] == "POST"
