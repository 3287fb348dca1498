#!/usr/bin/env python3
"""HTTP double of an Ollama server (the native /api, as of Ollama 0.12).

Run it: ``python -m tests.doubles.ollama --port 11434 [--data-dir D] [--preload deepseek-r1:7b,...]`` (or copy
this file and faults.py to a host: ``python3 ollama.py``; needs starlette and uvicorn). The official
``ollama`` Python client works against it unchanged.

Models: a *registry* (what ``/api/pull`` can fetch) and the *installed* models (what ``/api/tags``
lists, persisted in ``<data-dir>/models.json`` so they survive a restart). A model spec has:
``family, parameter_size, quantization_level, size, capabilities`` (``completion``, ``thinking``,
``embedding``, ``tools``), ``embedding_length, context_length``, ``revision`` (changing it changes every
digest: a new version upstream), ``fail`` (pulls stream some progress, then an ``{"error": fail}`` line
after HTTP 200), ``fail_generate`` (generation streams half its tokens, then an ``{"error"}`` line; 500
when not streaming), ``pull_seconds`` (how long a pull takes), ``load_seconds`` (load time on first use),
``leak_think`` (content starts with a ``<think>...</think>`` block even with ``"think": false``, like old
servers), ``answer`` (a fixed answer instead of the derived one).

Answers are deterministic: "Based on the context: " followed by the first 60 distinct content words
(4+ letters, stopwords dropped, in order of appearance) of the last user message (``/api/generate``: the
prompt), then of the system messages, plus the bracketed citations ``[n]`` found there. So a test can see
that retrieved context reached the model. Thinking models (``deepseek-r1``) answer ``thinking`` separately
when ``think`` is true or absent. Embeddings hash words into ``embedding_length`` signed buckets (at several
prefix sizes, so ``dimensions`` truncation keeps every word) and are L2-normalised: deterministic, and
texts sharing words are close.

Scheduler: ``--num-parallel`` (OLLAMA_NUM_PARALLEL, 1) requests run, ``--max-queue`` (OLLAMA_MAX_QUEUE,
512) wait; beyond that generate/chat/embed answer 503 with the server's "server busy" message.
``--token-delay-ms`` paces streamed tokens.

``ollama.py serve`` starts it as the real binary's ``ollama serve`` does, from the environment alone:
``OLLAMA_HOST`` (``[scheme://]host[:port]``, default 127.0.0.1:11434), ``OLLAMA_MODELS`` (where pulled
models are remembered, default ``~/.ollama/models``), ``OLLAMA_NUM_PARALLEL``, ``OLLAMA_MAX_QUEUE``; no model
is preloaded. The role tests' stand-in ``ollama`` binary (molecule/standins/ollama.py) runs this.

Control (never faulted, like /_faults): ``GET /_control`` (state), ``POST /_control/registry``
``{model: spec | null}``, ``POST /_control/install {model: spec}``, ``POST /_control/settings``
``{num_parallel, max_queue, token_delay_ms, version}``, ``POST /_control/reset`` (registry, installed
models and settings as at start-up).

Known divergences from the real server:
- No real model files: sizes, digests and model_info are synthetic but consistent (sha256 of the
  manifest, which lists sha256 layer digests); /api/show has no tensors; no ``/api/create``, ``/api/copy``,
  ``/api/push``, ``/api/blobs``, OpenAI-compatible ``/v1`` routes, tools or images.
- Generation text is derived from the prompt (see above), token counts are word counts, durations are
  measured wall time; ``options`` other than ``num_predict`` are ignored; ``context`` is a list of word ids.
- The queue counts requests in flight across all models (the real scheduler queues per model load).
- ``keep_alive`` only affects ``/api/ps`` (``0`` unloads, default 5m); nothing is really loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import sys
import time
import zlib
from datetime import UTC, datetime
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

try:
    from . import faults
except ImportError:  # run as a plain script next to faults.py
    import faults

VERSION = "0.12.10"
QUEUE_FULL = "server busy, please try again.  maximum pending requests exceeded"
MANIFEST_MISSING = "pull model manifest: file does not exist"
ANSWER_WORDS = 60
DEFAULT_SPEC = {
    "family": "llama", "parameter_size": "1B", "quantization_level": "Q4_K_M", "size": 800_000_000,
    "capabilities": ["completion"], "embedding_length": 2048, "context_length": 4096, "revision": 1,
    "fail": None, "fail_generate": None, "pull_seconds": 0.2, "load_seconds": 0.0, "leak_think": False,
    "answer": None,
}
DEFAULT_REGISTRY = {
    "deepseek-r1:7b": {"family": "qwen2", "parameter_size": "7.6B", "quantization_level": "Q4_K_M",
                       "size": 4_683_075_271, "capabilities": ["completion", "thinking"],
                       "embedding_length": 3584, "context_length": 131072},
    "nomic-embed-text:latest": {"family": "nomic-bert", "parameter_size": "137M", "quantization_level": "F16",
                                "size": 274_302_450, "capabilities": ["embedding"], "embedding_length": 768,
                                "context_length": 2048},
    "all-minilm:latest": {"family": "bert", "parameter_size": "23M", "quantization_level": "F16",
                          "size": 45_960_996, "capabilities": ["embedding"], "embedding_length": 384,
                          "context_length": 512},
    "llama3.2:1b": {"family": "llama", "parameter_size": "1.2B", "quantization_level": "Q8_0",
                    "size": 1_321_098_329, "capabilities": ["completion", "tools"], "embedding_length": 2048,
                    "context_length": 131072},
    "smollm2:135m": {"family": "llama", "parameter_size": "134.52M", "quantization_level": "F16",
                     "size": 270_898_672, "capabilities": ["completion", "tools"], "embedding_length": 576,
                     "context_length": 8192},
}
STOPWORDS = {
    "about", "above", "after", "again", "against", "also", "among", "another", "answer", "answers",
    "based", "because", "been", "before", "being", "below", "between", "both", "cannot", "context",
    "could", "does", "doing", "down", "during", "each", "else", "even", "every", "from", "further",
    "have", "having", "here", "into", "itself", "just", "like", "made", "make", "many", "more", "most",
    "much", "must", "only", "other", "ought", "over", "question", "questions", "same", "should", "some",
    "such", "than", "that", "their", "theirs", "them", "then", "there", "these", "they", "this",
    "those", "through", "under", "until", "upon", "very", "were", "what", "when", "where", "which",
    "while", "whom", "with", "within", "without", "would", "your", "yours", "you're", "it's",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def normalize(name: str) -> str:
    name = name.strip()
    for prefix in ("registry.ollama.ai/library/", "registry.ollama.ai/"):
        if name.lower().startswith(prefix):
            name = name[len(prefix):]
    if name and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name.lower()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).astimezone().isoformat()


def layers_of(name: str, spec: dict) -> list[dict]:
    """The layers a pull downloads: (media type, digest, size). Digests are sha256 of synthetic content."""
    rev = spec["revision"]
    kinds = [("application/vnd.ollama.image.model", spec["size"] - 1400),
             ("application/vnd.ollama.image.template", 387), ("application/vnd.ollama.image.license", 1065),
             ("application/vnd.ollama.image.params", 148)]
    return [{"mediaType": kind, "digest": "sha256:" + sha256(f"{name}|{rev}|{kind}"), "size": size}
            for kind, size in kinds]


def manifest_digest(name: str, spec: dict) -> str:
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                           "digest": "sha256:" + sha256(f"{name}|{spec['revision']}|config"), "size": 487},
                "layers": layers_of(name, spec)}
    return sha256(json.dumps(manifest, sort_keys=True))


def content_words(text: str) -> list[str]:
    seen: dict[str, None] = {}
    for word in re.findall(r"[A-Za-z][A-Za-z0-9_'\-]{3,}", text):
        key = word.lower()
        if key not in STOPWORDS and key not in seen:
            seen[key] = None
    return list(seen)


def derive_answer(primary: str, secondary: str) -> tuple[str, str]:
    """(answer, thinking) for a prompt: deterministic, echoing the prompt's content words."""
    words = content_words(primary + "\n" + secondary)[:ANSWER_WORDS]
    cites = sorted(set(re.findall(r"\[(\d{1,3})\]", primary + "\n" + secondary)), key=int)[:5]
    answer = "Based on the context: " + " ".join(words) + "."
    if cites:
        answer += " " + " ".join(f"[{c}]" for c in cites)
    thinking = "The user asks about " + " ".join(words[:8]) + ". I will answer from the context."
    return answer, thinking


def embed_text(text: str, dim: int) -> list[float]:
    """Each word adds a signed 1 in buckets of growing prefixes (8, 32, 128... dims), so a vector cut
    to any `dimensions` still carries every word; L2-normalised."""
    vec = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()) or [""]:
        h = zlib.crc32(word.encode())
        scale = 8
        while True:
            size = min(scale, dim)
            vec[h % size] += 1.0 if (h >> 16) & 1 else -1.0
            if size == dim:
                break
            h, scale = zlib.crc32(h.to_bytes(4, "little")), scale * 4
    norm = sum(v * v for v in vec) ** 0.5 or 1.0
    return [v / norm for v in vec]


def truncate_dims(vec: list[float], dims: int | None) -> list[float]:
    if dims and 0 < dims < len(vec):
        vec = vec[:dims]
        norm = sum(v * v for v in vec) ** 0.5 or 1.0
        vec = [v / norm for v in vec]
    return vec


class OllamaDouble:
    def __init__(self, data_dir: Path | None, preload: list[str], num_parallel: int, max_queue: int,
                 token_delay_ms: int, version: str = VERSION) -> None:
        self.data_dir = data_dir
        self.registry = {k: {**DEFAULT_SPEC, **v} for k, v in DEFAULT_REGISTRY.items()}
        self.installed: dict[str, dict] = self._load()
        for name in preload:
            name = normalize(name)
            if name not in self.installed:
                self._install(name, self.registry.get(name, DEFAULT_SPEC))
        self.settings = {"num_parallel": num_parallel, "max_queue": max_queue, "token_delay_ms": token_delay_ms,
                         "version": version}
        self.loaded: dict[str, float] = {}  # model -> expiry (epoch seconds)
        self.inflight = 0
        self._initial = json.dumps({"registry": self.registry, "installed": self.installed,
                                    "settings": self.settings})
        self.app = Starlette(routes=[
            Route("/", self.root, methods=["GET", "HEAD"]),
            Route("/api/version", self.version, methods=["GET", "HEAD"]),
            Route("/api/tags", self.tags, methods=["GET", "HEAD"]),
            Route("/api/ps", self.ps, methods=["GET"]),
            Route("/api/pull", self.pull, methods=["POST"]),
            Route("/api/show", self.show, methods=["POST"]),
            Route("/api/delete", self.delete, methods=["DELETE"]),
            Route("/api/generate", self.generate, methods=["POST"]),
            Route("/api/chat", self.chat, methods=["POST"]),
            Route("/api/embed", self.embed, methods=["POST"]),
            Route("/api/embeddings", self.embeddings, methods=["POST"]),
            Route("/_control", self.control_state, methods=["GET"]),
            Route("/_control/{action}", self.control, methods=["POST"]),
        ])

    # -- persistence -------------------------------------------------------------------------------
    def _load(self) -> dict[str, dict]:
        path = self.data_dir / "models.json" if self.data_dir else None
        if path and path.exists():
            return json.loads(path.read_text())
        return {}

    def _save(self) -> None:
        if not self.data_dir:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.data_dir / "models.json.tmp"
        tmp.write_text(json.dumps(self.installed, indent=1))
        tmp.replace(self.data_dir / "models.json")

    def _install(self, name: str, spec: dict) -> None:
        spec = {**DEFAULT_SPEC, **spec}
        self.installed[name] = {"spec": spec, "digest": manifest_digest(name, spec), "modified_at": now_iso()}
        self._save()

    # -- ASGI --------------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)

    # -- helpers -----------------------------------------------------------------------------------
    @staticmethod
    async def body(request: Request) -> dict:
        raw = await request.body()
        if not raw.strip():
            raise ApiError(400, "missing request body")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        if not isinstance(data, dict):
            raise ApiError(400, "json: cannot unmarshal into Go value of type api.Request")
        return data

    def model_of(self, data: dict, status_missing: int = 404) -> tuple[str, dict]:
        raw = data.get("model") or data.get("name") or ""
        if not isinstance(raw, str) or not raw:
            raise ApiError(400, "model is required")
        name = normalize(raw)
        if name not in self.installed:
            raise ApiError(status_missing, f"model '{raw}' not found")
        return name, self.installed[name]

    def details(self, spec: dict) -> dict:
        return {"parent_model": "", "format": "gguf", "family": spec["family"], "families": [spec["family"]],
                "parameter_size": spec["parameter_size"], "quantization_level": spec["quantization_level"]}

    def _expiry(self, keep_alive: Any) -> float | None:
        if keep_alive in (0, "0", "0s", "0m"):
            return None
        seconds = 300.0
        if isinstance(keep_alive, (int, float)):
            seconds = float(keep_alive)
        elif isinstance(keep_alive, str):
            match = re.fullmatch(r"(-?\d+(?:\.\d+)?)(ms|s|m|h)?", keep_alive.strip())
            if not match:
                raise ApiError(400, f"time: invalid duration \"{keep_alive}\"")
            factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
            seconds = float(match.group(1)) * factor
        return float("inf") if seconds < 0 else time.time() + seconds

    async def schedule(self, name: str, model: dict, keep_alive: Any) -> float:
        """Admit a request (503 when the queue is full), load the model; returns the load time (s)."""
        if self.inflight >= self.settings["num_parallel"] + self.settings["max_queue"]:
            raise ApiError(503, QUEUE_FULL)
        self.inflight += 1
        started = time.monotonic()
        try:
            if name not in self.loaded or self.loaded[name] < time.time():
                await asyncio.sleep(model["spec"]["load_seconds"])
            expiry = self._expiry(keep_alive)
            if expiry is None:
                self.loaded.pop(name, None)
            else:
                self.loaded[name] = expiry
        except BaseException:
            self.inflight -= 1
            raise
        return time.monotonic() - started

    # -- simple endpoints --------------------------------------------------------------------------
    async def root(self, request: Request) -> Response:
        return PlainTextResponse("Ollama is running")

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": self.settings["version"]})

    async def tags(self, request: Request) -> Response:
        models = [{"name": n, "model": n, "modified_at": m["modified_at"], "size": m["spec"]["size"],
                   "digest": m["digest"], "details": self.details(m["spec"])} for n, m in self.installed.items()]
        models.sort(key=lambda x: x["modified_at"], reverse=True)
        return JSONResponse({"models": models})

    async def ps(self, request: Request) -> Response:
        out = []
        for name, expiry in list(self.loaded.items()):
            if expiry < time.time() or name not in self.installed:
                self.loaded.pop(name)
                continue
            m = self.installed[name]
            exp = datetime.max.replace(tzinfo=UTC) if expiry == float("inf") else \
                datetime.fromtimestamp(expiry, UTC)
            out.append({"name": name, "model": name, "size": m["spec"]["size"], "digest": m["digest"],
                        "details": self.details(m["spec"]), "expires_at": exp.astimezone().isoformat(),
                        "size_vram": m["spec"]["size"], "context_length": m["spec"]["context_length"]})
        return JSONResponse({"models": out})

    async def show(self, request: Request) -> Response:
        try:
            name, m = self.model_of(await self.body(request))
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        spec = m["spec"]
        fam = spec["family"]
        return JSONResponse({
            "license": "synthetic license of the Aegis test double",
            "modelfile": f"# Modelfile generated by \"ollama show\"\nFROM {name}\n",
            "parameters": 'stop                           "<|end|>"',
            "template": "{{ .System }}\n{{ .Prompt }}",
            "details": self.details(spec),
            "model_info": {"general.architecture": fam, "general.parameter_count": spec["size"] // 2,
                           f"{fam}.context_length": spec["context_length"],
                           f"{fam}.embedding_length": spec["embedding_length"]},
            "capabilities": spec["capabilities"],
            "modified_at": m["modified_at"],
        })

    async def delete(self, request: Request) -> Response:
        try:
            data = await self.body(request)
            name, _ = self.model_of(data)
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        del self.installed[name]
        self.loaded.pop(name, None)
        self._save()
        return Response(status_code=200)

    # -- pull --------------------------------------------------------------------------------------
    async def pull(self, request: Request) -> Response:
        try:
            data = await self.body(request)
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        raw = data.get("model") or data.get("name") or ""
        if not isinstance(raw, str) or not raw.strip():
            return JSONResponse({"error": "invalid model name"}, status_code=400)
        name = normalize(raw)
        events = self._pull_events(name)
        if data.get("stream") is False:
            latest: dict = {}
            async for event in events:
                if "error" in event:
                    return JSONResponse({"error": event["error"]}, status_code=500)
                latest = event
            return JSONResponse(latest)
        return StreamingResponse(_ndjson(events), media_type="application/x-ndjson")

    async def _pull_events(self, name: str):
        yield {"status": "pulling manifest"}
        spec = self.registry.get(name)
        if spec is None:
            yield {"error": MANIFEST_MISSING}
            return
        layers = layers_of(name, spec)
        current = self.installed.get(name)
        have = {layer["digest"] for layer in layers_of(name, current["spec"])} if current else set()
        step = spec["pull_seconds"] / (len(layers) * 4)
        for i, layer in enumerate(layers):
            status = f"pulling {layer['digest'][7:19]}"
            total = layer["size"]
            if layer["digest"] in have:
                yield {"status": status, "digest": layer["digest"], "total": total, "completed": total}
                continue
            for part in (0, 1, 2, 3, 4):
                yield {"status": status, "digest": layer["digest"], "total": total, "completed": total * part // 4}
                if part < 4:
                    await asyncio.sleep(step)
            if spec["fail"] and i == 0:
                yield {"error": spec["fail"]}
                return
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        if current is None or current["digest"] != manifest_digest(name, spec):
            self._install(name, spec)
        yield {"status": "success"}

    # -- inference ---------------------------------------------------------------------------------
    async def generate(self, request: Request) -> Response:
        return await self._infer(request, chat=False)

    async def chat(self, request: Request) -> Response:
        return await self._infer(request, chat=True)

    async def _infer(self, request: Request, chat: bool) -> Response:
        received = time.monotonic()
        try:
            data = await self.body(request)
            name, model = self.model_of(data)
            spec = model["spec"]
            caps = spec["capabilities"]
            if "completion" not in caps:
                raise ApiError(400, f'"{data.get("model")}" does not support {"chat" if chat else "generate"}')
            think = data.get("think")
            if think not in (None, False, "low", "medium", "high") and think is not True:
                raise ApiError(400, f"invalid think value: {think!r}")
            if "thinking" in caps:
                think = True if think is None else think
            elif think:
                raise ApiError(400, f'"{data.get("model")}" does not support thinking')
            primary, secondary, empty = self._prompt_parts(data, chat)
            load_s = await self.schedule(name, model, data.get("keep_alive"))
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        try:
            if empty:  # an empty prompt/message list only loads (or unloads) the model
                reason = "unload" if data.get("keep_alive") in (0, "0") else "load"
                body = {"model": data["model"], "created_at": now_iso(), "done": True, "done_reason": reason}
                body.update({"message": {"role": "assistant", "content": ""}} if chat else {"response": ""})
                return JSONResponse(body)
            answer, thinking = derive_answer(primary, secondary)
            answer = spec["answer"] or answer
            if not think:
                thinking = ""
                if spec["leak_think"]:
                    answer = f"<think>\n{derive_answer(primary, secondary)[1]}\n</think>\n\n{answer}"
            tokens = re.findall(r"\S+\s*", answer)
            limit = (data.get("options") or {}).get("num_predict")
            reason = "stop"
            if isinstance(limit, int) and 0 <= limit < len(tokens):
                tokens, reason = tokens[:limit], "length"
            stream = self._stream(data, chat, tokens, re.findall(r"\S+\s*", thinking), reason, primary + secondary,
                                  load_s, received, spec["fail_generate"])
            if data.get("stream") is False:
                return await self._collect(stream, chat)
            return StreamingResponse(_ndjson(stream, release=self._release), media_type="application/x-ndjson")
        finally:
            if empty or data.get("stream") is False:
                self._release()

    def _release(self) -> None:
        self.inflight = max(0, self.inflight - 1)

    @staticmethod
    def _prompt_parts(data: dict, chat: bool) -> tuple[str, str, bool]:
        if not chat:
            prompt = data.get("prompt") or ""
            if not isinstance(prompt, str):
                raise ApiError(400, "json: cannot unmarshal prompt into Go struct field of type string")
            return prompt, str(data.get("system") or ""), prompt == ""
        messages = data.get("messages") or []
        if not isinstance(messages, list) or not all(isinstance(x, dict) for x in messages):
            raise ApiError(400, "json: cannot unmarshal messages into Go struct field of type []api.Message")
        users = [str(x.get("content") or "") for x in messages if x.get("role") == "user"]
        systems = [str(x.get("content") or "") for x in messages if x.get("role") == "system"]
        return (users[-1] if users else ""), "\n".join(systems), not messages

    async def _stream(self, data: dict, chat: bool, tokens: list[str], thinking: list[str], reason: str,
                      prompt: str, load_s: float, received: float, fail: str | None):
        model = data["model"]
        delay = self.settings["token_delay_ms"] / 1000
        eval_start = time.monotonic()

        def chunk(content: str = "", thought: str = "") -> dict:
            out: dict[str, Any] = {"model": model, "created_at": now_iso()}
            if chat:
                out["message"] = {"role": "assistant", "content": content, **({"thinking": thought} if thought else {})}
            else:
                out.update({"response": content, **({"thinking": thought} if thought else {})})
            out["done"] = False
            return out

        for piece in thinking:
            yield chunk(thought=piece)
            await asyncio.sleep(delay)
        for i, piece in enumerate(tokens):
            if fail and i == len(tokens) // 2:
                yield {"error": fail}
                return
            yield chunk(content=piece)
            await asyncio.sleep(delay)
        if fail:
            yield {"error": fail}
            return
        final = chunk()
        now = time.monotonic()
        words = len(re.findall(r"\w+", prompt))
        final.update({"done": True, "done_reason": reason, "total_duration": int((now - received) * 1e9),
                      "load_duration": int(load_s * 1e9), "prompt_eval_count": words,
                      "prompt_eval_duration": int(words * 1e5), "eval_count": len(tokens) + len(thinking),
                      "eval_duration": int((now - eval_start) * 1e9)})
        if not chat:
            final["context"] = [zlib.crc32(w.encode()) % 150000 for w in re.findall(r"\w+", prompt)[:2048]]
        yield final

    @staticmethod
    async def _collect(stream, chat: bool) -> Response:
        content, thinking, last = [], [], {}
        async for part in stream:
            if "error" in part:
                return JSONResponse({"error": part["error"]}, status_code=500)
            if chat:
                content.append(part["message"]["content"])
                thinking.append(part["message"].get("thinking", ""))
            else:
                content.append(part["response"])
                thinking.append(part.get("thinking", ""))
            last = part
        think_text = "".join(thinking)
        if chat:
            last["message"] = {"role": "assistant", "content": "".join(content),
                               **({"thinking": think_text} if think_text else {})}
        else:
            last["response"] = "".join(content)
            if think_text:
                last["thinking"] = think_text
        return JSONResponse(last)

    async def embed(self, request: Request) -> Response:
        started = time.monotonic()
        try:
            data = await self.body(request)
            name, model = self.model_of(data)
            raw = data.get("input")
            if isinstance(raw, str):
                inputs = [raw] if raw else []
            elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
                inputs = raw
            elif raw is None:
                inputs = []
            else:
                raise ApiError(400, "invalid input type")
            dims = data.get("dimensions")
            if dims is not None and (not isinstance(dims, int) or dims < 0):
                raise ApiError(400, "dimensions must be a positive integer")
            load_s = await self.schedule(name, model, data.get("keep_alive"))
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        try:
            size = model["spec"]["embedding_length"]
            vectors = [truncate_dims(embed_text(t, size), dims) for t in inputs]
            return JSONResponse({"model": data["model"], "embeddings": vectors,
                                 "total_duration": int((time.monotonic() - started) * 1e9),
                                 "load_duration": int(load_s * 1e9),
                                 "prompt_eval_count": sum(len(re.findall(r"\w+", t)) for t in inputs)})
        finally:
            self._release()

    async def embeddings(self, request: Request) -> Response:
        """The deprecated single-prompt endpoint."""
        try:
            data = await self.body(request)
            name, model = self.model_of(data, status_missing=404)
            await self.schedule(name, model, data.get("keep_alive"))
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        try:
            prompt = data.get("prompt") or ""
            return JSONResponse({"embedding": embed_text(prompt, model["spec"]["embedding_length"]) if prompt else []})
        finally:
            self._release()

    # -- control -----------------------------------------------------------------------------------
    async def control_state(self, request: Request) -> Response:
        return JSONResponse({"registry": self.registry, "installed": self.installed, "settings": self.settings,
                             "loaded": sorted(self.loaded), "inflight": self.inflight})

    async def control(self, request: Request) -> Response:
        action = request.path_params["action"]
        try:
            data = await self.body(request) if action != "reset" else {}
            if action == "registry":
                for name, spec in data.items():
                    self._set_registry(normalize(name), spec)
            elif action == "install":
                for name, spec in data.items():
                    key = normalize(name)
                    self._set_registry(key, spec or {})
                    self._install(key, self.registry[key])
            elif action == "settings":
                unknown = set(data) - set(self.settings)
                if unknown:
                    raise ApiError(400, f"unknown settings: {sorted(unknown)}")
                self.settings.update(data)
            elif action == "reset":
                initial = json.loads(self._initial)
                self.registry, self.installed, self.settings = (initial["registry"], initial["installed"],
                                                                initial["settings"])
                self.loaded.clear()
                self._save()
            else:
                raise ApiError(404, f"unknown control action {action}")
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        return JSONResponse({"ok": True})

    def _set_registry(self, name: str, spec: dict | None) -> None:
        if spec is None:
            self.registry.pop(name, None)
            return
        unknown = set(spec) - set(DEFAULT_SPEC)
        if unknown:
            raise ApiError(400, f"unknown model spec fields: {sorted(unknown)}")
        self.registry[name] = {**DEFAULT_SPEC, **self.registry.get(name, {}), **spec}


async def _ndjson(events, release=None):
    try:
        async for event in events:
            yield (json.dumps(event) + "\n").encode()
    finally:
        if release:
            release()


def build_app(data_dir: Path | None = None, preload: list[str] | None = None, num_parallel: int = 1,
              max_queue: int = 512, token_delay_ms: int = 0, version: str = VERSION):
    double = OllamaDouble(data_dir, preload or [], num_parallel, max_queue, token_delay_ms, version)
    control_open = faults.with_faults(double)

    async def app(scope, receive, send):  # the control path bypasses faults, like /_faults does
        if scope["type"] == "http" and scope["path"].startswith("/_control"):
            return await double(scope, receive, send)
        return await control_open(scope, receive, send)

    app.double = double
    app.faults = control_open.faults
    return app


def ollama_host(value: str | None) -> tuple[str, int]:
    """(host, port) of OLLAMA_HOST as Ollama reads it: ``[scheme://]host[:port]``, IPv6 in brackets."""
    value = (value or "").strip()
    scheme, _, rest = value.rpartition("://")
    rest = rest.split("/", 1)[0]
    default_port = {"http": 80, "https": 443}.get(scheme.lower(), 11434)
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail.removeprefix(":")
    else:
        host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    try:
        return host or "127.0.0.1", int(port) if port else default_port
    except ValueError:
        raise SystemExit(f"OLLAMA_HOST={value!r}: the port is not a number") from None


def serve_from_environment(environ: Mapping[str, str]) -> dict:
    """Arguments of build_app and uvicorn for `ollama serve`, read from the OLLAMA_* environment."""
    host, port = ollama_host(environ.get("OLLAMA_HOST"))
    models = environ.get("OLLAMA_MODELS") or str(Path.home() / ".ollama" / "models")
    try:
        num_parallel = int(environ.get("OLLAMA_NUM_PARALLEL") or 1)
        max_queue = int(environ.get("OLLAMA_MAX_QUEUE") or 512)
    except ValueError as exc:
        raise SystemExit(f"OLLAMA_NUM_PARALLEL and OLLAMA_MAX_QUEUE must be integers: {exc}") from None
    return {"host": host, "port": port, "data_dir": Path(models), "num_parallel": num_parallel,
            "max_queue": max_queue}


def serve(environ: Mapping[str, str]) -> None:
    """`ollama serve`: the double configured like the real server, from its environment."""
    import uvicorn

    conf = serve_from_environment(environ)
    app = build_app(conf["data_dir"], [], conf["num_parallel"], conf["max_queue"])
    uvicorn.run(app, host=conf["host"], port=conf["port"], log_level="warning", lifespan="off",
                timeout_graceful_shutdown=1)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    if (sys.argv[1:] if argv is None else argv)[:1] == ["serve"]:
        serve(os.environ)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=11434)
    ap.add_argument("--data-dir", default=None, help="where installed models are remembered (none: in memory)")
    ap.add_argument("--preload", default="deepseek-r1:7b,nomic-embed-text:latest",
                    help="comma-separated models installed at start-up (empty: none)")
    ap.add_argument("--num-parallel", type=int, default=int(os.environ.get("OLLAMA_NUM_PARALLEL") or 1))
    ap.add_argument("--max-queue", type=int, default=int(os.environ.get("OLLAMA_MAX_QUEUE") or 512))
    ap.add_argument("--token-delay-ms", type=int, default=0)
    ap.add_argument("--version", dest="version_string", default=VERSION)
    args = ap.parse_args(argv)
    preload = [p for p in args.preload.split(",") if p.strip()]
    app = build_app(Path(args.data_dir) if args.data_dir else None, preload, args.num_parallel, args.max_queue,
                    args.token_delay_ms, args.version_string)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="off",
                timeout_graceful_shutdown=1)


if __name__ == "__main__":
    main()
