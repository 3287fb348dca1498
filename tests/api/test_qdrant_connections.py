"""The API's Qdrant client and connections the server closes: a pooled keep-alive connection that Qdrant
closes as a request goes out ("Server disconnected without sending a response") is retried once on a new
connection instead of failing the request with a 503 (seen on the Molecule fleet during a rolling upgrade)."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from aegis_rag.settings import Settings
from aegis_rag.breaker import CLOSED
from aegis_rag.errors import DependencyError
from aegis_rag.vectorstore import ServerStore

EXISTS = json.dumps({"result": {"exists": True}, "status": "ok", "time": 0.0}).encode()


class ClosingServer:
    """Answers the first request of every connection (keep-alive), then reads the next request on that
    connection and closes it without answering, as a server whose idle timeout just expired does.
    With `close_every_request`, every request is dropped unanswered (a server that is really broken).
    qdrant-client's version check (`GET /`, from a thread of its own, at any moment) is closed and not counted:
    `requests` and `connections` count the store's calls only."""

    def __init__(self, close_every_request: bool = False) -> None:
        self.close_every_request = close_every_request
        self.requests = 0
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            for answered in range(2):
                request = conn.recv(65536)
                if not request or request.startswith(b"GET / "):
                    return
                self.requests += 1
                self.connections += not answered
                if answered or self.close_every_request:
                    return  # closed without a response
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(EXISTS), EXISTS))

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def make_server():
    servers: list[ClosingServer] = []

    def make(**kwargs) -> ClosingServer:
        servers.append(ClosingServer(**kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def store_for(server: ClosingServer, tmp_path) -> ServerStore:
    return ServerStore(Settings(data_dir=tmp_path, qdrant_url=server.url, collection="docs", qdrant_timeout_s=5))


def test_a_connection_closed_by_the_server_before_answering_is_retried_on_a_new_one(make_server, tmp_path):
    server = make_server()
    store = store_for(server, tmp_path)
    first = store._call("collection_exists", store._client.collection_exists, "docs")
    second = store._call("collection_exists", store._client.collection_exists, "docs")  # the pooled connection
    assert first is True and second is True
    assert (server.requests, server.connections) == (3, 2)  # the dropped request went out again on a new one
    assert store.breaker.state == CLOSED


def test_a_server_that_never_answers_still_fails_after_one_retry(make_server, tmp_path):
    server = make_server(close_every_request=True)
    store = store_for(server, tmp_path)
    with pytest.raises(DependencyError, match="Server disconnected without sending a response"):
        store._call("collection_exists", store._client.collection_exists, "docs")
    assert server.requests == 2  # one retry, not a loop
