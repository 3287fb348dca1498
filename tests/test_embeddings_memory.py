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
