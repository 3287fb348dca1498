"""module_defaults through the collection's per-service action groups (meta/runtime.yml): one play mixes
modules of every service and a module in no group; each group gives only options its members accept."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from ansible_collections.aegis.rag.plugins.module_utils.base import SERVICE_OPTIONS
from ansible_collections.aegis.rag.tests.unit.helpers.fake_nvidia_smi import fake_nvidia_smi

from tests.collection.conftest import COLLECTION_ROOT, VENV_BIN, ansible_env
from tests.collection.qdrant_helpers import Rest, qdrant_options, s3_options

pytestmark = pytest.mark.slow


def test_service_groups_configure_a_play_mixing_modules(run_tasks, qdrant, ollama, s3, s3_bucket, collection_name,
                                                         tmp_path):
    defaults = {
        "group/aegis.rag.qdrant": qdrant_options(qdrant),
        "group/aegis.rag.ollama": {"ollama_url": ollama.url, "timeout": 10},
        "group/aegis.rag.s3": s3_options(s3),
    }
    smi = fake_nvidia_smi(tmp_path)
    play = run_tasks([
        {"name": "gpu", "aegis.rag.gpu_info": {"nvidia_smi_path": str(smi)}},
        {"name": "collection", "aegis.rag.qdrant_collection": {
            "name": collection_name, "vectors": {"dense": {"size": 4, "distance": "Cosine"}}}},
        {"name": "model", "aegis.rag.ollama_model": {"name": "smollm2:135m"}},
        {"name": "backup", "aegis.rag.qdrant_snapshot": {
            "collection": collection_name, "state": "s3_upload", "bucket": s3_bucket}},
        {"name": "info", "aegis.rag.qdrant_collection_info": {"name": collection_name}},
    ], play={"module_defaults": defaults})
    assert play.result("gpu")["gpu_count"] == 2
    assert play.result("collection")["changed"] and Rest(qdrant).info(collection_name) is not None
    assert play.result("model")["msg"] == "pulled smollm2:135m"
    backup = play.result("backup")
    assert backup["changed"] and backup["key"].startswith(f"qdrant/{collection_name}/")
    assert s3.client().head_object(Bucket=s3_bucket, Key=backup["key"])["ContentLength"] > 0
    assert play.result("info")["exists"] is True


def test_every_group_member_documents_every_option_of_its_group(tmp_path):
    groups = yaml.safe_load((COLLECTION_ROOT / "meta" / "runtime.yml").read_text())["action_groups"]
    assert set(groups) == {"qdrant", "ollama", "s3"}  # no `all`: the modules share no option with one meaning
    members = sorted({m for group in groups.values() for m in group})
    proc = subprocess.run([str(VENV_BIN / "ansible-doc"), "--json", "-t", "module", *(f"aegis.rag.{m}" for m in members)],
                          check=False, env=ansible_env(tmp_path), cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    for group, group_members in groups.items():
        for member in group_members:
            missing = set(SERVICE_OPTIONS[group]) - set(docs[f"aegis.rag.{member}"]["doc"]["options"])
            assert not missing, f"{member} is in group {group} but lacks {sorted(missing)}"
