"""Upstreams that misbehave on the wire, and clients that pipeline a good request with a bad one."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tests.proxyagent.mesh_harness import mesh
from tests.proxyagent.sample_app import running_app


@contextmanager
def raw_upstream(answer: bytes) -> Iterator[int]:
    """A server that answers every request head it reads with ``answer``, byte for byte."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            buffer = b""
            while chunk := self.request.recv(65536):
                buffer += chunk
                while b"\r\n\r\n" in buffer:
                    _, buffer = buffer.split(b"\r\n\r\n", 1)
                    self.request.sendall(answer)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_bytes_after_a_complete_response_never_reach_the_client() -> None:
    second = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"
    with raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi" + second) as port, mesh() as built:
        agent = built.agent("reviews", port)
        received = _exchange(agent.ports["inbound"], b"GET / HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 200 ")
    assert received.endswith(b"\r\n\r\nhi")
    assert b"408" not in received


def test_a_malformed_body_before_anything_was_sent_is_a_502() -> None:
    broken = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    with raw_upstream(broken) as port, mesh() as built:
        agent = built.agent("reviews", port)
        received = _exchange(agent.ports["inbound"], b"GET / HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 502 ")
    assert b"x-mesh-error: upstream_reset" in received


def test_a_good_request_pipelined_with_a_bad_one_is_answered_then_the_bad_one_refused() -> None:
    with running_app("reviews-app") as app, mesh() as built:
        agent = built.agent("reviews", app.port)
        port = agent.ports["inbound"]
        warm = _exchange(port, b"GET /echo HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n")
        assert warm.startswith(b"HTTP/1.1 200 "), "leaves a pooled upstream connection behind"
        received = _exchange(
            port, b"GET /echo HTTP/1.1\r\nHost: reviews\r\n\r\nCONNECT example.com:443 HTTP/1.1\r\n\r\n"
        )
    first, _, rest = received.partition(b"HTTP/1.1 400 ")
    assert first.startswith(b"HTTP/1.1 200 "), received[:200]
    assert b"x-mesh-error: bad_request" in rest
