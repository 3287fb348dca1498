# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one HTTP client of the aegis.rag modules.

Standard library and ansible.module_utils only, so a target needs nothing but Python.
Retries with jittered exponential backoff on connection errors, timeouts and 502/503/504;
any other unexpected status becomes an HttpError carrying the status and a short body excerpt.
Large bodies are streamed both ways (downloads to a file, multipart uploads from a file).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json as jsonlib
import os
import random
import socket
import ssl
import threading
import time
import uuid
from http.client import HTTPException
from urllib.error import HTTPError as _UrlHTTPError
from urllib.error import URLError
from urllib.parse import urlencode

from ansible.module_utils.urls import ConnectionError as _AnsibleConnectionError
from ansible.module_utils.urls import Request, make_context
from ansible_collections.aegis.rag.plugins.module_utils.staging import staged_file

RETRY_STATUSES = (502, 503, 504)
EXCERPT_CHARS = 300
MAX_BACKOFF_S = 10.0
_TRANSIENT = (URLError, socket.timeout, TimeoutError, ConnectionError, HTTPException,
              ssl.SSLError, _AnsibleConnectionError)


_TLS_CONTEXTS = {}
_TLS_LOCK = threading.Lock()


def _tls_context(url, validate_certs):
    """One TLS context per process and setting: loading the CA store costs ~50 ms, too much per request.

    Plain http:// never uses the context, so it gets a bare one (no CA store loaded)."""
    key = "https-%s" % validate_certs if url.lower().startswith("https:") else "http"
    with _TLS_LOCK:
        if key not in _TLS_CONTEXTS:
            _TLS_CONTEXTS[key] = (make_context(validate_certs=validate_certs) if key != "http"
                                  else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
        return _TLS_CONTEXTS[key]


class HttpError(Exception):
    """A request that failed: `status` is None when no HTTP answer came back (refused, timeout, DNS)."""

    def __init__(self, msg, status=None, url=None, body_excerpt=""):
        super(HttpError, self).__init__(msg)
        self.msg = msg
        self.status = status
        self.url = url
        self.body_excerpt = body_excerpt


class Response:
    def __init__(self, status, headers, body, url):
        self.status = status
        self.headers = headers
        self.body = body
        self.url = url

    def json(self):
        try:
            return jsonlib.loads(self.body.decode("utf-8") or "null")
        except ValueError:
            raise HttpError("invalid JSON in the answer of %s" % self.url, self.status, self.url,
                            excerpt(self.body)) from None


def excerpt(body, limit=EXCERPT_CHARS):
    """The start of a body as text, for error messages."""
    if not body:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def error_reason(body):
    """The human part of a JSON error body (Qdrant, Ollama, Aegis and Jina shapes), or None."""
    try:
        data = jsonlib.loads(body.decode("utf-8")) if isinstance(body, bytes) else jsonlib.loads(body)
    except (ValueError, AttributeError, TypeError):
        return None
    if not isinstance(data, dict):
        return None
    status = data.get("status")
    if isinstance(status, dict) and status.get("error"):
        return str(status["error"])  # Qdrant
    error, detail = data.get("error"), data.get("detail")
    if isinstance(error, dict):
        error = error.get("message") or jsonlib.dumps(error)
    if error and detail and isinstance(detail, str):
        return "%s: %s" % (error, detail)  # Aegis
    if error or detail:
        return str(error or detail)  # Ollama ({"error"}), Jina/FastAPI ({"detail"})
    return data.get("message") and str(data["message"])


def _describe(exc):
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in str(reason):
        return "timed out"
    return str(reason) or type(reason).__name__


class HttpClient:
    def __init__(self, base_url, headers=None, timeout=10, validate_certs=True, retries=3, backoff=0.5):
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.retries = retries
        self.backoff = backoff
        self._request = Request(validate_certs=validate_certs, follow_redirects="safe")

    # -- building blocks
    def url(self, path, query=None):
        url = self.base_url + "/" + path.lstrip("/") if path else self.base_url
        if query:
            pairs = [(k, str(v).lower() if isinstance(v, bool) else v) for k, v in query.items() if v is not None]
            url += ("&" if "?" in url else "?") + urlencode(pairs)
        return url

    def _sleep_before_retry(self, attempt):
        delay = min(MAX_BACKOFF_S, self.backoff * (2 ** attempt))
        time.sleep(delay * random.uniform(0.5, 1.5))

    def _open(self, method, url, body, headers, timeout, retries, expect):
        """Open a request, retrying transient failures; returns the open response (status in expect)."""
        retries = self.retries if retries is None else retries
        all_headers = dict(self.headers)
        all_headers.update(headers or {})
        attempt = 0
        while True:
            data = body() if callable(body) else body
            try:
                resp = self._request.open(method, url, data=data, headers=all_headers,
                                          timeout=self.timeout if timeout is None else timeout,
                                          context=_tls_context(url, self.validate_certs))
                status = resp.status if hasattr(resp, "status") else resp.getcode()
                if status in expect:
                    return resp
                content = resp.read()
                resp.close()
            except _UrlHTTPError as exc:
                status = exc.code
                try:
                    content = exc.read()
                except Exception:  # the error body is only for the message
                    content = b""
                if status in expect:  # e.g. expect=(404,) for an absence check
                    return _Buffered(status, exc.headers, content)
            except _TRANSIENT as exc:
                if attempt < retries:
                    self._sleep_before_retry(attempt)
                    attempt += 1
                    continue
                raise HttpError("%s %s failed: %s" % (method, url, _describe(exc)), None, url) from exc
            if status in RETRY_STATUSES and attempt < retries:
                self._sleep_before_retry(attempt)
                attempt += 1
                continue
            reason = error_reason(content) or excerpt(content, 120) or "no body"
            raise HttpError("%s %s returned HTTP %s: %s" % (method, url, status, reason), status, url,
                            excerpt(content))

    @staticmethod
    def _json_body(json, data, headers):
        headers = dict(headers or {})
        if json is not None:
            headers.setdefault("Content-Type", "application/json")
            data = jsonlib.dumps(json).encode("utf-8")
        return data, headers

    # -- public API
    def request(self, method, path, json=None, data=None, headers=None, timeout=None, expect=(200,),
                query=None, retries=None):
        url = self.url(path, query)
        body, headers = self._json_body(json, data, headers)
        headers.setdefault("Accept", "application/json")
        attempt = 0
        retries_left = self.retries if retries is None else retries
        while True:
            resp = self._open(method, url, body, headers, timeout, retries_left - attempt, expect)
            try:
                content = resp.read()
                status = resp.status if hasattr(resp, "status") else resp.getcode()
                return Response(status, dict(resp.headers or {}), content, url)
            except _TRANSIENT as exc:  # the body broke off: retry the whole request
                if attempt < retries_left:
                    self._sleep_before_retry(attempt)
                    attempt += 1
                    continue
                raise HttpError("%s %s failed while reading the answer: %s" % (method, url, _describe(exc)),
                                None, url) from exc
            finally:
                resp.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def stream_json_lines(self, method, path, json=None, headers=None, timeout=None, expect=(200,), query=None,
                          retries=None):
        """Yield each JSON object of an NDJSON answer (e.g. Ollama's pull progress) as it arrives.

        Only opening the request is retried: once lines flow, a broken stream raises HttpError."""
        url = self.url(path, query)
        body, headers = self._json_body(json, None, headers)
        resp = self._open(method, url, body, headers, timeout, retries, expect)
        try:
            for raw in resp:
                line = raw.strip()
                if not line:
                    continue
                try:
                    yield jsonlib.loads(line.decode("utf-8"))
                except ValueError:
                    raise HttpError("invalid JSON line in the answer of %s %s" % (method, url),
                                    None, url, excerpt(line)) from None
        except _TRANSIENT as exc:
            raise HttpError("%s %s broke off: %s" % (method, url, _describe(exc)), None, url) from exc
        finally:
            resp.close()

    def stream_to_file(self, method, path, dest_path, chunk=1 << 20, json=None, headers=None, timeout=None,
                       expect=(200,), query=None, retries=None):
        """Download into dest_path chunk by chunk; returns (bytes_written, sha256 hex).

        Writes a temporary file next to dest_path and renames it at the end, so a failed download
        never leaves a partial file under the final name."""
        url = self.url(path, query)
        body, headers = self._json_body(json, None, headers)
        retries_left = self.retries if retries is None else retries
        directory = os.path.dirname(os.path.abspath(dest_path))
        attempt = 0
        while True:
            resp = self._open(method, url, body, headers, timeout, retries_left - attempt, expect)
            try:
                with staged_file(directory, ".download-") as tmp:
                    written, sha = _copy_hashed(resp, tmp, chunk)
                    os.replace(tmp, dest_path)
                return written, sha
            except _TRANSIENT as exc:
                if attempt < retries_left:
                    self._sleep_before_retry(attempt)
                    attempt += 1
                    continue
                raise HttpError("%s %s broke off during download: %s" % (method, url, _describe(exc)), None,
                                url) from exc
            finally:
                resp.close()

    def upload_file(self, method, path, src_path, field, filename=None, headers=None, timeout=None,
                    expect=(200,), query=None, retries=None, content_type="application/octet-stream",
                    chunk=1 << 20):
        """Send src_path as one multipart/form-data field, read from disk chunk by chunk."""
        boundary = "aegis-" + uuid.uuid4().hex
        filename = filename or os.path.basename(src_path)
        head = ('--%s\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\nContent-Type: %s\r\n\r\n'
                % (boundary, field, filename.replace('"', ""), content_type)).encode("utf-8")
        tail = ("\r\n--%s--\r\n" % boundary).encode("utf-8")
        size = os.path.getsize(src_path)

        def body():
            yield head
            with open(src_path, "rb") as src:
                while True:
                    block = src.read(chunk)
                    if not block:
                        break
                    yield block
            yield tail

        all_headers = dict(headers or {})
        all_headers["Content-Type"] = "multipart/form-data; boundary=%s" % boundary
        all_headers["Content-Length"] = str(len(head) + size + len(tail))
        all_headers.setdefault("Accept", "application/json")
        resp = self._open(method, self.url(path, query), body, all_headers, timeout, retries, expect)
        try:
            status = resp.status if hasattr(resp, "status") else resp.getcode()
            return Response(status, dict(resp.headers or {}), resp.read(), self.url(path, query))
        finally:
            resp.close()


class _Buffered:
    """An already-read error answer that was expected (e.g. 404), shaped like an open response."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self._body = body

    def read(self, size=-1):
        if size is None or size < 0:
            data, self._body = self._body, b""
        else:
            data, self._body = self._body[:size], self._body[size:]
        return data

    def __iter__(self):
        return iter(self._body.splitlines(True))

    def close(self):
        pass


def _copy_hashed(resp, path, chunk):
    """Copy an open response into `path` chunk by chunk; returns (bytes written, sha256 hex)."""
    digest, written = hashlib.sha256(), 0
    with open(path, "wb") as out:
        while True:
            block = resp.read(chunk)
            if not block:
                return written, digest.hexdigest()
            out.write(block)
            digest.update(block)
            written += len(block)
