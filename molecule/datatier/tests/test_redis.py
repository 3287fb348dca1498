"""Verify aegis.rag.redis on the CPU Ollama host, with its own port, address and directives (testinfra over
nsenter). The service enabled and running with the defaults on the fleet's data host: tests/fleet/test_services.py."""

from pathlib import Path

import pytest
import yaml

testinfra_hosts = ["nsenter://aegis-ollama"]

HOST_VARS = yaml.safe_load((Path(__file__).parents[1] / "molecule.yml").read_text())["provisioner"][
    "inventory"
]["group_vars"]["redis"]
PORT = HOST_VARS["redis_port"]
PASSWORD = HOST_VARS["redis_password"]


@pytest.fixture(scope="module")
def address(host):
    """The host's address on its default route, where the scenario binds Redis."""
    return host.check_output("ip -4 -o addr show scope global | awk '{ sub(\"/.*\", \"\", $4); print $4; exit }'")


def redis_cli(host, address, *args, password=PASSWORD):
    env = f"REDISCLI_AUTH='{password}' " if password else ""
    return host.run(f"{env}redis-cli -h {address} -p {PORT} " + " ".join(args))


def test_listens_only_on_the_bound_address_and_port(host, address):
    listening = {str(s) for s in host.socket.get_listening_sockets() if s.startswith("tcp")}
    redis_sockets = {s for s in listening if s.endswith(f":{PORT}")}
    assert redis_sockets == {f"tcp://{address}:{PORT}"}
    assert not any(s.endswith(":6379") for s in listening)


def test_authenticated_ping_answers(host, address):
    assert redis_cli(host, address, "PING").stdout.strip() == "PONG"


def test_unauthenticated_ping_is_refused(host, address):
    answer = redis_cli(host, address, "PING", password=None).stdout
    assert answer.startswith("NOAUTH")


def test_wrong_password_is_refused(host, address):
    ping = redis_cli(host, address, "PING", password="wrong")
    assert "WRONGPASS" in ping.stderr
    assert ping.stdout.startswith("NOAUTH")


@pytest.mark.parametrize("path", ["/etc/redis/redis.conf", "/etc/redis/aegis-secrets.conf"])
def test_configuration_is_readable_by_root_and_redis_only(host, path):
    config = host.file(path)
    assert (config.user, config.group, config.mode) == ("root", "redis", 0o640)


def test_password_is_only_in_the_secrets_file(host):
    assert PASSWORD in host.file("/etc/redis/aegis-secrets.conf").content_string
    assert PASSWORD not in host.file("/etc/redis/redis.conf").content_string


def test_dpkg_keeps_the_ownership_across_upgrades(host):
    overrides = host.check_output("dpkg-statoverride --list '/etc/redis*'").splitlines()
    assert sorted(overrides) == ["root redis 2750 /etc/redis", "root redis 640 /etc/redis/redis.conf"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("maxmemory-policy", "allkeys-lru"),
        ("maxmemory", str(64 * 1024 * 1024)),
        ("maxmemory-samples", "10"),
        ("lazyfree-lazy-eviction", "yes"),
        ("save", ""),
        ("appendonly", "no"),
    ],
)
def test_running_configuration(host, address, name, value):
    assert redis_cli(host, address, "CONFIG", "GET", name).stdout.splitlines() == [name, value]
