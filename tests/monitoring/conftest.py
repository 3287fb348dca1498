"""Fixtures for the monitoring tests: the role's files folder and the Prometheus tools."""

import shutil
import sys
from pathlib import Path

import pytest

ROLE = Path(__file__).parents[2] / "collections/ansible_collections/aegis/rag/roles/monitoring"
FILES = ROLE / "files"
RULE_FILES = sorted((FILES / "rules").glob("*.yml"))
DASHBOARDS = sorted((FILES / "dashboards").glob("*.json"))

# the collection's test helpers (fake nvidia-smi and its recorded outputs) import as ansible_collections.aegis.rag...
COLLECTIONS = str(Path(__file__).parents[2] / "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)


@pytest.fixture(scope="session")
def amtool() -> str:
    path = shutil.which("amtool")
    if not path:
        pytest.skip("amtool is not installed (scripts/setup.sh --dev installs prometheus-alertmanager)")
    return path
