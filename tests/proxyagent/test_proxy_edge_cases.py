"""Upstreams that misbehave on the wire, and clients that pipeline a good request with a bad one."""

from __future__ import annotations

import http.client
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.proxyagent.mesh_harness import mesh
from tests.proxyagent.sample_app import running_app

# Every test here runs on both data paths: the native relay and the Python one.
pytestmark = pytest.mark.usefixtures("data_path")


@contextmanager
def raw_upstream(answer: bytes, *, close: bool = False) -> Iterator[int]:
    """A server that answers every request head it reads with ``answer``, byte for byte (then closes the
    connection, with ``close``)."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            buffer = b""
            while chunk := self.request.recv(65536):
                buffer += chunk
                while b"\r\n\r\n" in buffer:
                    _, buffer = buffer.split(b"\r\n\r\n", 1)
                    self.request.sendall(answer)
                    if close:
                        return

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
    assert b"Request Timeout" not in received  # not b"408": the via header names a port that may hold it


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


def _body_through(answer: bytes, *, close: bool = False) -> tuple[int, dict[str, str], bytes]:
    """What a client gets through one agent from an upstream that answers ``answer``."""
    with raw_upstream(answer, close=close) as port, mesh() as built:
        agent = built.agent("reviews", port)
        conn = http.client.HTTPConnection("127.0.0.1", agent.ports["inbound"], timeout=10)
        try:
            conn.request("GET", "/", headers={"Host": "reviews"})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()


def test_a_chunked_response_with_extensions_and_trailers_is_relayed_as_its_body() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;note=x\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n"
    )
    status, headers, body = _body_through(answer)
    assert (status, body) == (200, b"hello world")
    assert headers["transfer-encoding"] == "chunked"
    assert "x-sum" not in headers


def test_an_interim_response_is_skipped() -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone"
    status, _, body = _body_through(answer)
    assert (status, body) == (201, b"done")


def test_a_close_delimited_response_reaches_an_http11_client_chunked() -> None:
    status, headers, body = _body_through(
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", close=True
    )
    assert (status, body) == (200, b"until the end")
    assert headers["transfer-encoding"] == "chunked"


def test_headers_the_response_connection_header_names_are_not_forwarded() -> None:
    answer = b"HTTP/1.1 200 OK\r\nConnection: x-hop\r\nX-Hop: secret\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
    status, headers, body = _body_through(answer)
    assert (status, body, headers.get("x-kept")) == (200, b"ok", "yes")
    assert "x-hop" not in headers
    assert "via" in headers


def test_a_response_with_many_header_lines_is_relayed_whole() -> None:
    cookies = b"".join(b"Set-Cookie: c%d=%d\r\n" % (n, n) for n in range(90))
    status, headers, body = _body_through(b"HTTP/1.1 200 OK\r\n" + cookies + b"Content-Length: 2\r\n\r\nok")
    assert (status, body) == (200, b"ok")
    assert headers["set-cookie"].endswith("c89=89")


def test_chunk_sizes_with_leading_zeros_are_read_as_numbers() -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000003\r\nabc\r\n0\r\n\r\n"
    status, _, body = _body_through(answer)
    assert (status, body) == (200, b"abc")


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx",
        b"HTTP/1.1 200 OK\r\nBad Header: 1\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        b"SMTP ready\r\n\r\n",
    ],
    ids=["two-lengths", "te-not-chunked", "space-in-name", "unasked-upgrade", "not-http"],
)
def test_a_response_the_mesh_cannot_relay_is_a_502(answer: bytes) -> None:
    with raw_upstream(answer) as port, mesh() as built:
        agent = built.agent("reviews", port)
        received = _exchange(agent.ports["inbound"], b"GET / HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 502 ")
    assert b"x-mesh-error: upstream_reset" in received
