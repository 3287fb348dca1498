"""Shared fixtures for every test suite: the test stack (doubles, S3, Redis, Prometheus), the local embedder."""

import os
import sys
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures"]

# Every Python the tests start caches the bytecode of Ansible's module payloads (tests/bytecode): a module run's CPU
# is mostly compiling them again.
BYTECODE = str(Path(__file__).parent / "bytecode")
if BYTECODE not in os.environ.get("PYTHONPATH", "").split(os.pathsep):  # xdist's workers inherit it
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [BYTECODE, os.environ.get("PYTHONPATH")]))
# scripts/setup.sh installs the tests' packages without their bytecode: what the tests import is compiled once and
# kept in the virtualenv (as `make test` does, Makefile: PYCACHE), for this process and the ones it starts.
os.environ.setdefault("PYTHONPYCACHEPREFIX", str(Path(__file__).parents[1] / ".venv" / "pycache"))
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.pycache_prefix, sys.dont_write_bytecode = os.environ["PYTHONPYCACHEPREFIX"], False

from tests.module_python import MODULE_PYTHON  # noqa: E402 - after the environment it starts its servers with

# The modules of the implicit localhost run by the same interpreter as the inventories' local hosts (tests/bytecode).
if MODULE_PYTHON != sys.executable:
    os.environ["AEGIS_LOCALHOST_PYTHON"] = MODULE_PYTHON


@pytest.fixture(scope="session")
def local_embedder(tmp_path_factory):
    """The bundled MiniLM embedder, exported to ONNX once per session and shared by every test."""
    from aegis_rag.embeddings import LocalEmbedder

    # Importing ansible.module_utils (the collection's unit tests do) replaces sys.intern with a callable
    # object, which torch's exporter (torch._dynamo) refuses; export with the original function in place.
    patched = sys.intern
    sys.intern = getattr(patched, "unpatched_implementation", patched)
    try:
        return LocalEmbedder.bundled("onnx", tmp_path_factory.mktemp("aegis-models"))
    finally:
        sys.intern = patched


FLEET = "tests/fleet/"
# The fleet's tests in this order (each leaves the fleet healthy, so any order passes; this one checks the converged
# state first, then what changes it); files not named here follow.
FLEET_ORDER = ["test_converge.py", "test_services.py", "test_monitoring.py", "test_scheduler.py",
               "test_client_loop.py", "test_runbooks.py"]


def pytest_collection_modifyitems(items):
    """The real-host tests first: the fleet's (tests/fleet), then the other Molecule scenarios. `make test` runs
    pytest with `-n 2 --dist loadfile --no-loadscope-reorder`: one worker takes the fleet at once, the other the
    other scenarios and then, with the first once the fleet is done, the rest of the suite."""
    def rank(item) -> tuple[int, int]:
        path = item.nodeid.split("::")[0]
        if path.startswith(FLEET):
            name = path.removeprefix(FLEET)
            return 0, FLEET_ORDER.index(name) if name in FLEET_ORDER else len(FLEET_ORDER)
        return (1 if path == "tests/molecule/test_scenarios.py" else 2), 0
    items.sort(key=rank)  # stable: the order within each rank stays pytest's


def pytest_xdist_make_scheduler(config, log):
    """Under `--dist loadfile`, every test of tests/fleet on one worker, as if one file: they share one converged
    fleet (a session fixture), and a second worker must not converge a second one on the same hosts."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FleetAsOneFile(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return FLEET if nodeid.startswith(FLEET) else nodeid.split("::", 1)[0]

    return FleetAsOneFile(config, log)
