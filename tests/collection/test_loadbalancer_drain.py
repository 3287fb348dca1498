"""aegis.rag.loadbalancer's drain entry point against FakeHAProxy (the role's own aegis-haproxy-server on its
socket): it never takes out the last server that serves. A rolling deploy drained fleet-api-1 while HAProxy
still held fleet-api-2 DOWN after a restart, and every request failed with 503 until fleet-api-2 came UP."""

from __future__ import annotations

import pytest

from tests.doubles.haproxy import FakeHAProxy

DRAIN = [{"name": "Drain", "ansible.builtin.include_role": {"name": "aegis.rag.loadbalancer", "tasks_from": "drain"}}]


@pytest.fixture
def haproxy():
    double = FakeHAProxy({"api-a": "ready", "api-b": "ready"})
    yield double
    double.stop()


def drain(run_tasks, haproxy: FakeHAProxy, expect_failure: bool = False, **extra):
    return run_tasks(DRAIN, expect_failure=expect_failure, extra_vars={
        "loadbalancer_server": "api-a", "loadbalancer_group": "all", "ansible_become": False,
        "loadbalancer_admin_socket": haproxy.socket, "_loadbalancer_server_tool": str(haproxy.tool),
        "loadbalancer_drain_timeout": 5, "loadbalancer_drain_others_timeout": 2, **extra})


def test_an_up_server_is_not_drained_while_no_other_is_up(run_tasks, haproxy):
    haproxy.down.add("api-b")
    out = drain(run_tasks, haproxy, expect_failure=True)
    assert haproxy.admin == {"api-a": "ready", "api-b": "ready"}
    assert out.task_names[-1].endswith("Say why the drain stopped"), out.task_names
    msg = out.results[-1]["msg"]
    assert msg.startswith("Not draining api-a: localhost: aegis_api/api-a has no other server UP after 2.0 s: "), msg
    assert "'others': {'api-b': 'DOWN'}" in msg and "leave no server of aegis_api UP" in msg, msg


def test_it_drains_once_another_server_is_up(run_tasks, haproxy):
    out = drain(run_tasks, haproxy)
    assert haproxy.admin == {"api-a": "maint", "api-b": "ready"}
    assert out.stats["localhost"]["changed"] >= 1, out.stats


def test_a_server_already_down_is_drained_whatever_the_others(run_tasks, haproxy):
    """Taking out a server that serves nothing loses nothing (a runbook drains a broken host)."""
    haproxy.down.update({"api-a", "api-b"})
    drain(run_tasks, haproxy)
    assert haproxy.admin == {"api-a": "maint", "api-b": "ready"}


def test_zero_does_not_wait(run_tasks, haproxy):
    haproxy.down.add("api-b")
    drain(run_tasks, haproxy, loadbalancer_drain_others_timeout=0)
    assert haproxy.admin == {"api-a": "maint", "api-b": "ready"}
