"""The launcher and the real services: `python -m tests.stack up|status|env|down` leaves nothing running;
Redis, promtool and Prometheus fixtures work."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from tests import stack


def run(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.stack", *args], cwd=stack.REPO, env=env,
                          capture_output=True, text=True, timeout=180, check=False)


def test_up_status_down_leaves_nothing_running(tmp_path):
    env = {**os.environ, "AEGIS_STACK_DIR": str(tmp_path / "stack")}
    up = run("up", env=env)
    assert up.returncode == 0, up.stderr
    state = stack._load_state(tmp_path / "stack")["services"]
    assert set(state) == {"qdrant", "ollama", "jina", "s3", "redis", "prometheus"}
    try:
        status = run("status", env=env)
        assert status.returncode == 0 and status.stdout.count(" ready") == 6, status.stdout
        assert "already up" in run("up", env=env).stderr
        exports = run("env", env=env).stdout
        assert f"AEGIS_TEST_QDRANT_URL={state['qdrant']['url']}" in exports
        r = httpx.get(state["qdrant"]["url"] + "/collections", headers={"api-key": stack.QDRANT_API_KEY})
        assert r.status_code == 200
        assert httpx.get(state["ollama"]["url"] + "/api/tags").json()["models"]
    finally:
        down = run("down", env=env)
    assert down.returncode == 0 and "qdrant" in down.stdout
    for name, entry in state.items():
        assert not stack._group_alive(entry["pid"]), f"{name} (pgid {entry['pid']}) still running"
    assert run("status", env=env).returncode == 3
    assert "nothing was running" in run("down", env=env).stdout


def test_redis_server(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    assert client.ping() and client.set("aegis:k", "v", ex=60) and client.get("aegis:k") == b"v"
    redis_server.stop()
    try:
        assert not stack.redis_ready(redis_server.port)
    finally:
        redis_server.start()
    assert redis.Redis.from_url(redis_server.url).ping()


RULES = """groups:
  - name: aegis
    rules:
      - alert: QdrantDown
        expr: up{job="qdrant"} == 0
        for: 1m
"""


def test_promtool_checks_rules(promtool, tmp_path):
    good = tmp_path / "good.yml"
    good.write_text(RULES)
    assert subprocess.run([promtool, "check", "rules", str(good)], capture_output=True, check=False).returncode == 0
    bad = tmp_path / "bad.yml"
    bad.write_text(RULES.replace("== 0", "=== 0"))
    assert subprocess.run([promtool, "check", "rules", str(bad)], capture_output=True, check=False).returncode != 0


def test_prometheus_loads_rules(prometheus, qdrant):
    prometheus.load(rules={"aegis": RULES}, scrape=[qdrant.url.removeprefix("http://")])
    groups = httpx.get(prometheus.url + "/api/v1/rules").json()["data"]["groups"]
    assert [r["name"] for g in groups for r in g["rules"]] == ["QdrantDown"]
