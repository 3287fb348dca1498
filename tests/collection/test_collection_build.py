"""`ansible-galaxy collection build` of aegis.rag: the tarball carries the LICENSE, the changelog and the unit
tests, and never tool caches or test output (even when they exist in the source tree)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile

import yaml

from tests.collection.conftest import COLLECTION_ROOT, VENV_BIN

CACHES = (".pytest_cache", ".ruff_cache", ".mypy_cache", "__pycache__")


def test_built_tarball_has_license_and_changelog_and_no_caches(tmp_path):
    source = tmp_path / "ansible_collections" / "aegis" / "rag"
    shutil.copytree(COLLECTION_ROOT, source, ignore=shutil.ignore_patterns("output", *CACHES))
    for where in (source, source / "tests" / "unit", source / "plugins" / "modules"):  # what tools leave behind
        for cache in CACHES:
            (where / cache).mkdir(exist_ok=True)
            (where / cache / "junk").write_text("cache")
    (source / "tests" / "output").mkdir()
    (source / "tests" / "output" / "junk.xml").write_text("<x/>")
    out = tmp_path / "dist"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    proc = subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out)],
                          cwd=source, env=env, check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    version = yaml.safe_load((COLLECTION_ROOT / "galaxy.yml").read_text())["version"]
    with tarfile.open(out / f"aegis-rag-{version}.tar.gz") as tar:
        names = tar.getnames()
    leaked = [n for n in names if any(part in CACHES or part == "output" for part in n.split("/"))]
    assert not leaked, leaked
    assert {"LICENSE", "CHANGELOG.rst", "changelogs/changelog.yaml", "meta/runtime.yml",
            "tests/unit/conftest.py", "plugins/module_utils/base.py"} <= set(names)
    assert (COLLECTION_ROOT / "LICENSE").read_bytes() == (COLLECTION_ROOT.parents[3] / "LICENSE").read_bytes()


def test_galaxy_metadata_points_to_documentation_and_issues():
    meta = yaml.safe_load((COLLECTION_ROOT / "galaxy.yml").read_text())
    assert meta["documentation"].startswith("https://") and meta["issues"].startswith("https://")
    assert {".pytest_cache", ".ruff_cache", ".mypy_cache"} <= {p.rsplit("/", 1)[-1] for p in meta["build_ignore"]}
