"""pytest plugin: the test stack as fixtures (registered by tests/conftest.py).

The Qdrant double is four files (qdrant.py plus its siblings qdrant_store.py, qdrant_snapshots.py and
qdrant_validation.py, imported like faults.py), so a host needs all of
tests/doubles/ to run it as a script. Additions and choices, names unchanged:
- Session doubles start once; after every test that used one (or changed it through its handle) an
  autouse fixture clears its fault rules, resumes/restarts it if the test paused/stopped it, and for
  Ollama restores the model registry and installed models.
- ``qdrant`` runs with an api key (``qdrant.api_key``, sent as the ``api-key`` header; ``qdrant.headers``
  and ``qdrant.client()`` carry it). ``start_double("qdrant", api_key=None)`` gives one without.
- ``ollama`` starts with ``deepseek-r1:7b`` and ``nomic-embed-text:latest`` installed. Controls (see the
  module docstring of tests/doubles/ollama.py for every field):
  ``ollama.set_registry(model, **spec)`` declares or changes a pullable model (``fail="..."`` makes its
  pull fail with an ``{"error"}`` line after HTTP 200; ``revision=2`` changes its digest),
  ``ollama.install(model, **spec)`` installs one without a pull, ``ollama.configure(**settings)``
  (``max_queue``, ``num_parallel``, ``token_delay_ms``, ``version``), ``ollama.state()``; embedding sizes
  come from each model's ``embedding_length`` spec.
- ``jina.api_key`` is the bearer key; ``jina.headers`` carries it. Real Jina when JINA_API_KEY is set.
- ``redis_server`` also has ``.port`` and stop/start/pause/resume (no fault rules: it is the real Redis).
- ``prometheus`` (optional) has ``.url``, ``.rules_dir`` and ``.load(rules={name: yaml}, scrape=[...])``.
- ``start_double(kind, **options)``: kind is qdrant, ollama or jina; options are the double's CLI flags
  in snake case (``api_key``, ``data_dir``, ``optimize_seconds``, ``large_upsert``, ``preload``,
  ``num_parallel``, ``max_queue``, ``token_delay_ms``...); ``port=`` picks the port. A Qdrant double from
  it has no api key unless ``api_key=`` is given. Stopped at test end.
- Every process a fixture starts is killed with its process group at the end, and dies with pytest
  even when pytest itself is killed (``setpriv --pdeathsig KILL``, from util-linux).
"""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import stack


class _Faults:
    """Fault rules on a double (tests/doubles/faults.py), switched at run time over HTTP."""

    def __init__(self, handle: Service) -> None:
        self._handle = handle

    def add(self, **rule: Any) -> int:
        self._handle._require_double("fault injection")
        self._handle.dirty = True
        r = httpx.post(self._handle.url + "/_faults", json=rule, timeout=5)
        r.raise_for_status()
        return r.json()["id"]

    def clear(self) -> None:
        self._handle._require_double("fault injection")
        httpx.delete(self._handle.url + "/_faults", timeout=5).raise_for_status()

    def rules(self) -> list[dict]:
        self._handle._require_double("fault injection")
        return httpx.get(self._handle.url + "/_faults", timeout=5).json()["rules"]


class Service:
    """A service under test: a process we started (a double or a real binary) or a real server by URL."""

    http_faults = True

    def __init__(self, url: str | None = None, process: stack.Process | None = None) -> None:
        self.process = process
        self._url = url
        self.real = process is None
        self.dirty = False
        self.faults = _Faults(self)

    @property
    def url(self) -> str:
        return (self._url or self.process.url).rstrip("/")

    def _require_double(self, what: str) -> None:
        if self.real:
            pytest.skip(f"{what} needs the test double, not a real server")
        if not self.http_faults and what == "fault injection":
            pytest.skip(f"{type(self).__name__} has no fault injection (it is the real program)")

    def stop(self) -> None:
        self._require_double("stop()")
        self.dirty = True
        self.process.stop()

    def start(self) -> None:
        self._require_double("start()")
        self.process.start()

    def pause(self) -> None:
        self._require_double("pause()")
        self.dirty = True
        self.process.pause()

    def resume(self) -> None:
        self._require_double("resume()")
        self.process.resume()

    def reset(self) -> None:
        """Back to a clean running state after a test (no-op for real servers)."""
        if self.real:
            return
        if self.process.paused:
            self.process.resume()
        if not self.process.alive():
            self.process.start()
        if self.http_faults:
            httpx.delete(self.url + "/_faults", timeout=5).raise_for_status()
        self.dirty = False


class QdrantService(Service):
    def __init__(self, api_key: str | None, **kw) -> None:
        super().__init__(**kw)
        self.api_key = api_key

    @property
    def headers(self) -> dict[str, str]:
        return {"api-key": self.api_key} if self.api_key else {}

    def client(self, **kwargs):
        from qdrant_client import QdrantClient

        with warnings.catch_warnings():  # "Api key is used with an insecure connection": loopback, on purpose
            warnings.simplefilter("ignore", UserWarning)
            return QdrantClient(url=self.url, api_key=self.api_key, prefer_grpc=False,
                                timeout=kwargs.pop("timeout", 10), **kwargs)


class OllamaService(Service):
    def _control(self, path: str, payload: dict | None = None) -> dict:
        self._require_double("Ollama control")
        self.dirty = True
        r = httpx.post(self.url + "/_control/" + path, json=payload or {}, timeout=5)
        if r.status_code >= 400:
            raise ValueError(r.json().get("error", r.text))
        return r.json()

    def set_registry(self, model: str, **spec: Any) -> dict:
        """Declare/replace a model the registry serves to /api/pull (spec fields: see ollama.py)."""
        return self._control("registry", {model: spec})

    def install(self, model: str, **spec: Any) -> dict:
        """Install a model as if pulled (also adds it to the registry)."""
        return self._control("install", {model: spec})

    def configure(self, **settings: Any) -> dict:
        return self._control("settings", settings)

    def state(self) -> dict:
        self._require_double("Ollama control")
        return httpx.get(self.url + "/_control", timeout=5).json()

    def reset(self) -> None:
        super().reset()
        if not self.real:
            httpx.post(self.url + "/_control/reset", json={}, timeout=5).raise_for_status()

    def client(self, **kwargs):
        import ollama

        return ollama.Client(host=self.url, **kwargs)


class JinaService(Service):
    def __init__(self, api_key: str, **kw) -> None:
        super().__init__(**kw)
        self.api_key = api_key

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


class S3Service(Service):
    http_faults = False

    def __init__(self, access_key: str, secret_key: str, region: str, **kw) -> None:
        super().__init__(**kw)
        self.access_key, self.secret_key, self.region = access_key, secret_key, region

    @property
    def endpoint_url(self) -> str:
        return self.url

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=self.region)


class RedisService(Service):
    http_faults = False

    @property
    def port(self) -> int:
        return self.process.port


class PrometheusService(Service):
    http_faults = False

    def __init__(self, workdir: Path, **kw) -> None:
        super().__init__(**kw)
        self.rules_dir = workdir / "prometheus-rules"
        self.config_file = workdir / "prometheus.yml"

    def load(self, rules: dict[str, str] | None = None, scrape: list[str] | None = None) -> None:
        """Replace the rule files and scrape targets (host:port) and reload Prometheus."""
        for old in self.rules_dir.glob("*.yml"):
            old.unlink()
        for name, text in (rules or {}).items():
            (self.rules_dir / f"{name}.yml").write_text(text)
        config = stack.PROMETHEUS_CONFIG.format(rules=self.rules_dir, port=self.process.port)
        if scrape:
            config += "  - job_name: targets\n    static_configs:\n      - targets: [" + \
                      ", ".join(f'"{t}"' for t in scrape) + "]\n"
        self.config_file.write_text(config)
        httpx.post(self.url + "/-/reload", timeout=10).raise_for_status()


def pytest_configure(config):
    # qdrant-client checks the server version in a background thread; when a test stops a double right
    # after creating a client, that check loses the race and warns. GET / itself is tested directly.
    config.addinivalue_line("filterwarnings", "ignore:Failed to obtain server version:UserWarning")


# -- session services -------------------------------------------------------------------------------
_SESSION: dict[str, Service] = {}


@pytest.fixture(scope="session")
def stack_workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stack")


def _session(name: str, factory) -> Service:
    if name not in _SESSION:
        _SESSION[name] = factory()
    return _SESSION[name]


def _owned(proc: stack.Process) -> stack.Process:
    """A process that dies with this pytest run, even if pytest itself is killed."""
    proc.die_with_parent = True
    return proc


@pytest.fixture(scope="session")
def _session_cleanup():
    yield
    for service in _SESSION.values():
        if service.process is not None:
            service.process.stop()
    _SESSION.clear()


@pytest.fixture(scope="session")
def qdrant(stack_workdir, _session_cleanup) -> QdrantService:
    url = os.environ.get("AEGIS_TEST_QDRANT_URL")
    if url:
        return _session("qdrant", lambda: QdrantService(os.environ.get("AEGIS_TEST_QDRANT_API_KEY"), url=url))
    return _session("qdrant", lambda: QdrantService(
        stack.QDRANT_API_KEY, process=_owned(stack.qdrant_double(stack_workdir)).start()))


@pytest.fixture(scope="session")
def ollama(stack_workdir, _session_cleanup) -> OllamaService:
    url = os.environ.get("AEGIS_TEST_OLLAMA_URL")
    if url:
        return _session("ollama", lambda: OllamaService(url=url))
    return _session("ollama", lambda: OllamaService(process=_owned(stack.ollama_double(stack_workdir)).start()))


@pytest.fixture(scope="session")
def jina(stack_workdir, _session_cleanup) -> JinaService:
    key = os.environ.get("JINA_API_KEY")
    if key:
        return _session("jina", lambda: JinaService(key, url="https://api.jina.ai"))
    return _session("jina", lambda: JinaService(stack.JINA_API_KEY, process=_owned(stack.jina_double(stack_workdir)).start()))


@pytest.fixture(scope="session")
def s3(stack_workdir, _session_cleanup) -> S3Service:
    url = os.environ.get("AEGIS_TEST_S3_ENDPOINT")
    if url:
        return _session("s3", lambda: S3Service(os.environ.get("AWS_ACCESS_KEY_ID", ""),
                                                 os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
                                                 os.environ.get("AWS_DEFAULT_REGION", stack.S3_REGION), url=url))
    return _session("s3", lambda: S3Service(stack.S3_ACCESS_KEY, stack.S3_SECRET_KEY, stack.S3_REGION,
                                             process=_owned(stack.moto_s3(stack_workdir)).start()))


@pytest.fixture
def s3_bucket(s3) -> str:
    """A fresh, empty bucket, emptied and removed after the test."""
    yield from _bucket(s3)


@pytest.fixture(scope="module")
def s3_module_bucket(s3) -> str:
    """s3_bucket for a module-scoped fixture: emptied and removed at the end of the test module."""
    yield from _bucket(s3)


def _bucket(s3: S3Service):
    """The body of s3_bucket: yields a fresh bucket's name, empties and removes it when resumed."""
    client = s3.client()
    name = f"aegis-test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    yield name
    paginator = client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=name):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            client.delete_object(Bucket=name, Key=item["Key"], VersionId=item["VersionId"])
    client.delete_bucket(Bucket=name)


@pytest.fixture(scope="session")
def redis_server(stack_workdir, _session_cleanup) -> RedisService:
    if not (shutil.which("redis-server") or Path("/usr/bin/redis-server").exists()):
        pytest.skip("redis-server is not installed (scripts/setup.sh installs it)")
    return _session("redis", lambda: RedisService(process=_owned(stack.redis(stack_workdir)).start()))


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(path).exists():
        pytest.skip("promtool is not installed (scripts/setup.sh --dev installs it)")
    return path


@pytest.fixture(scope="session")
def prometheus(stack_workdir, _session_cleanup) -> PrometheusService:
    if not (shutil.which("prometheus") or Path("/usr/bin/prometheus").exists()):
        pytest.skip("prometheus is not installed (scripts/setup.sh --dev installs it)")
    return _session("prometheus", lambda: PrometheusService(stack_workdir,
                                                            process=_owned(stack.prometheus(stack_workdir)).start()))


# -- per test ---------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _reset_used_services(request):
    """After each test: clear faults and restore every double the test used or disturbed."""
    yield
    for name, service in list(_SESSION.items()):
        if service.real:
            continue
        if service.dirty or name in request.fixturenames or (name == "redis" and "redis_server" in request.fixturenames):
            service.reset()


@pytest.fixture
def collection_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


_DOUBLES = {"qdrant": stack.qdrant_double, "ollama": stack.ollama_double, "jina": stack.jina_double}


def _flags(options: dict[str, Any]) -> tuple[str, ...]:
    args: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, (list, tuple)):
            args += [flag, ",".join(map(str, value))]
        else:
            args += [flag, str(value)]
    return tuple(args)


@pytest.fixture
def start_double(tmp_path):
    """Factory: start_double(kind, **options) -> an extra double of that kind, stopped at test end."""
    yield from _double_starter(tmp_path)


@pytest.fixture(scope="module")
def start_module_double(tmp_path_factory):
    """start_double for a module-scoped fixture: the doubles are stopped at the end of the test module."""
    yield from _double_starter(tmp_path_factory.mktemp("doubles"))


def _double_starter(tmp_path: Path):
    """The body of start_double: yields the factory, stops what it started when resumed."""
    started: list[Service] = []

    def start(kind: str, **options: Any) -> Service:
        if kind not in _DOUBLES:
            raise ValueError(f"unknown double {kind!r}; choose from {sorted(_DOUBLES)}")
        name = f"{kind}-{len(started)}"
        port = options.pop("port", None)
        if kind == "qdrant":
            api_key = options.pop("api_key", None)
            data_dir = Path(options.pop("data_dir", tmp_path / f"{name}-data"))
            proc = stack.qdrant_double(tmp_path, api_key=api_key, name=name, extra=_flags(options), data_dir=data_dir)
            service: Service = QdrantService(api_key, process=proc)
        elif kind == "ollama":
            data_dir = Path(options.pop("data_dir", tmp_path / f"{name}-data"))
            service = OllamaService(process=stack.ollama_double(tmp_path, name=name, extra=_flags(options),
                                                                data_dir=data_dir))
        else:
            api_key = options.pop("api_key", stack.JINA_API_KEY)
            service = JinaService(api_key, process=stack.jina_double(tmp_path, api_key=api_key, name=name,
                                                                     extra=_flags(options)))
        service.process.port = port
        _owned(service.process)
        started.append(service)
        service.process.start()
        return service

    yield start
    for service in started:
        service.process.stop()


@pytest.fixture
def start_aegis(tmp_path, local_embedder):
    """Factory: a real Aegis API served by uvicorn in a thread (embedded store, the local embedder unless
    `embedder` is given) with other settings (e.g. api_keys=[...]); stopped at test end."""
    from tests.collection.aegis_app import AegisServer

    servers = []

    def start(embedder=None, **settings):
        server = AegisServer(tmp_path / f"aegis{len(servers)}", embedder=embedder or local_embedder, **settings).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
