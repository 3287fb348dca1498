"""The stand-in Ollama archive (molecule/standins/ollama.py): laid out like the real release, and its
`bin/ollama serve` runs the Ollama double from the real server's environment, with the system python3
and only the Python packages the archive bundles."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.stack import free_port

ROOT = Path(__file__).parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")

pytestmark = pytest.mark.skipif(shutil.which("zstd") is None or not SYSTEM_PYTHON.exists(),
                                reason="needs zstd and /usr/bin/python3")


def build(cache_dir: Path) -> dict:
    out = subprocess.run([sys.executable, str(ROOT / "molecule" / "standins" / "ollama.py"), "--cache-dir",
                          str(cache_dir)], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict:
    return build(tmp_path_factory.mktemp("standin-cache"))


@pytest.fixture(scope="module")
def usr(archive, tmp_path_factory) -> Path:
    """The archive unpacked as the role unpacks it into /usr."""
    root = tmp_path_factory.mktemp("usr")
    subprocess.run(["tar", "--zstd", "-xf", archive["path"], "-C", str(root)], check=True)
    return root


def api(port: int, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read().splitlines()[-1])


def serve(usr: Path, env: dict) -> subprocess.Popen:
    """`ollama serve` with the system python3 only (no .venv on PATH), waiting for /api/version."""
    proc = subprocess.Popen([str(usr / "bin" / "ollama"), "serve"], env={"PATH": "/usr/bin:/bin", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    port = int(env["OLLAMA_HOST"].rsplit(":", 1)[1])
    for _ in range(200):
        if proc.poll() is not None:
            pytest.fail(f"ollama serve exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            api(port, "/api/version")
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("ollama serve did not answer within 10 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=10)


def test_archive_is_laid_out_like_the_release(archive):
    unpacked = subprocess.run(["zstd", "-dc", archive["path"]], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(unpacked)) as tar:
        names = tar.getnames()
        launcher = tar.getmember("./bin/ollama")
    assert launcher.mode == 0o755
    assert all(n == "./bin/ollama" or n.startswith("./lib/ollama/") for n in names)
    assert "./lib/ollama/aegis-standin/site-packages/starlette/__init__.py" in names


def test_archive_is_cached_and_reproducible(archive, tmp_path):
    again = build(Path(archive["path"]).parent)
    elsewhere = build(tmp_path)
    assert again == archive
    assert elsewhere["sha256"] == archive["sha256"]


def test_serve_reads_the_ollama_environment_and_keeps_pulled_models(usr, tmp_path):
    port, models = free_port(), tmp_path / "models"
    env = {"OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(models), "HOME": str(tmp_path)}
    proc = serve(usr, env)
    try:
        assert api(port, "/api/tags") == {"models": []}
        assert api(port, "/api/pull", {"model": "smollm2:135m"})["status"] == "success"
    finally:
        stop(proc)
    assert (models / "models.json").is_file()
    proc = serve(usr, env)  # a restart keeps what was pulled
    try:
        assert [m["name"] for m in api(port, "/api/tags")["models"]] == ["smollm2:135m"]
    finally:
        stop(proc)


def test_serve_takes_the_queue_limits_from_the_environment(usr, tmp_path):
    port = free_port()
    proc = serve(usr, {"OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(tmp_path),
                       "OLLAMA_NUM_PARALLEL": "3", "OLLAMA_MAX_QUEUE": "7"})
    try:
        settings = api(port, "/_control")["settings"]
    finally:
        stop(proc)
    assert (settings["num_parallel"], settings["max_queue"]) == (3, 7)


def test_other_commands_are_refused_clearly(usr):
    run = subprocess.run([str(usr / "bin" / "ollama"), "pull", "x"], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 2
    assert "only runs 'ollama serve'" in run.stderr
