"""The stand-in Qdrant archive (molecule/standins/qdrant.py): laid out like the real release (`qdrant` at its
root), and its `qdrant` starts the Qdrant double from what the real binary reads: `--config-path`, `--uri`,
`--bootstrap`, `--disable-telemetry` and QDRANT__SECTION__KEY variables, with the system python3 and only
the Python packages the archive bundles."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.stack import free_port

ROOT = Path(__file__).parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")

pytestmark = pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="needs /usr/bin/python3")


@pytest.fixture(scope="module")
def archive() -> dict:
    out = subprocess.run([sys.executable, str(ROOT / "molecule" / "standins" / "qdrant.py")], capture_output=True,
                         text=True, check=True, timeout=600)
    return json.loads(out.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def release(archive, tmp_path_factory) -> Path:
    """The archive unpacked as the role unpacks it (into a version directory)."""
    folder = tmp_path_factory.mktemp("qdrant-release")
    subprocess.run(["tar", "-xzf", archive["path"], "-C", str(folder)], check=True)
    return folder


def status(url: str, api_key: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"api-key": api_key} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def port_is_taken(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_archive_is_laid_out_like_the_release(archive):
    with tarfile.open(archive["path"]) as tar:
        launcher = tar.getmember("qdrant")
        top_level = {name.split("/")[0] for name in tar.getnames()}
    assert launcher.isfile() and launcher.mode & 0o111
    assert top_level == {"qdrant", "standin"}
    assert len(archive["sha256"]) == 64


def test_starts_from_the_config_file_and_environment(release, tmp_path):
    http_port, grpc_port, p2p_port = free_port(), free_port(), free_port()
    config = {
        "service": {"host": "127.0.0.1", "http_port": 1, "grpc_port": grpc_port, "api_key": "from-config",
                    "read_only_api_key": "read-only"},
        "storage": {"storage_path": str(tmp_path / "storage"), "snapshots_path": str(tmp_path / "snapshots")},
        "cluster": {"enabled": True, "p2p": {"port": p2p_port}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    command = [str(release / "qdrant"), "--config-path", str(tmp_path / "config.yaml"), "--disable-telemetry",
               "--bootstrap", "http://first:6335", "--uri", "http://second:6335"]
    # The environment wins over the file, as on the real server.
    env = {"PATH": "/usr/bin:/bin", "QDRANT__SERVICE__HTTP_PORT": str(http_port)}
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = server.stdout.readline()
        assert server.stdout.readline().strip() == f"Qdrant HTTP listening on {http_port}"
        base = f"http://127.0.0.1:{http_port}"
        assert status(f"{base}/readyz") == 200
        assert status(f"{base}/collections") == 401
        assert status(f"{base}/collections", "from-config") == 200
        assert port_is_taken(grpc_port) and port_is_taken(p2p_port)
        assert (tmp_path / "storage" / "engine").is_dir()
        assert (tmp_path / "snapshots").is_dir()
        assert "uri http://second:6335" in banner and "bootstrap http://first:6335" in banner
    finally:
        server.terminate()
        server.wait(timeout=30)
