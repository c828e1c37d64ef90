"""The native relay (ADR 013): which requests it serves, and handing a connection to the Python path."""

from __future__ import annotations

import http.client
import json
import re
import socket
from typing import Any

import pytest

from tests.proxyagent.mesh_harness import TwoHops

# Where there is no C compiler the relay is not built, and the Python path serves every request.
_relay = pytest.importorskip("proxyagent.http._relay", reason="the native relay is not built here")


def _request(conn: http.client.HTTPConnection, method: str, path: str, body: object = None) -> dict[str, Any]:
    conn.request(method, path, body=body, headers={"Host": "reviews"})  # type: ignore[arg-type]
    response = conn.getresponse()
    assert response.status == 200, response.read()
    reply: dict[str, Any] = json.loads(response.read())
    return reply


def _connection_kinds(two_hops: TwoHops) -> list[bool]:
    outbound = two_hops.web.outbound
    assert outbound is not None

    async def kinds() -> list[bool]:
        return [bool(getattr(connection, "native", False)) for connection in outbound.connections]

    return two_hops.mesh.loop.run(kinds())


def test_plain_requests_are_served_by_the_relay_on_one_connection(two_hops: TwoHops) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", two_hops.web.ports["outbound"], timeout=10)
    try:
        for _ in range(3):
            assert _request(conn, "GET", "/echo?q=1")["path"] == "/echo?q=1"
        reply = _request(conn, "POST", "/echo", body=b"x" * 1000)
        assert reply["body_length"] == 1000
        assert reply["headers"]["x-mesh-source-workload"] == "web-v1"
        assert reply["headers"]["x-mesh-hops"] == "2"
        assert _connection_kinds(two_hops) == [True]
    finally:
        conn.close()


def test_a_request_the_relay_does_not_take_hands_its_connection_to_the_python_path(two_hops: TwoHops) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", two_hops.web.ports["outbound"], timeout=10)
    try:
        assert _request(conn, "GET", "/echo")["method"] == "GET"
        chunks = (piece for piece in (b"ab", b"cd"))  # no length: http.client sends it chunked
        assert _request(conn, "POST", "/echo", body=chunks)["body_length"] == 4
        assert _connection_kinds(two_hops) == [False], "handed over at the chunked request"
        assert _request(conn, "GET", "/echo?after=1")["path"] == "/echo?after=1"
    finally:
        conn.close()
    assert [method for method, _, _ in two_hops.app.requests] == ["GET", "POST", "GET"]


def test_pipelined_requests_are_answered_in_order(two_hops: TwoHops) -> None:
    requests = b"".join(
        b"GET /echo?n=%d HTTP/1.1\r\nHost: reviews\r\n%s\r\n" % (n, b"Connection: close\r\n" if n == 3 else b"")
        for n in range(1, 4)
    )
    with socket.create_connection(("127.0.0.1", two_hops.web.ports["outbound"]), timeout=10) as sock:
        sock.sendall(requests)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    paths = re.findall(rb'"path": "([^"]*)"', received)
    assert paths == [b"/echo?n=1", b"/echo?n=2", b"/echo?n=3"]
    assert received.count(b"HTTP/1.1 200 ") == 3


def test_a_body_larger_than_the_relay_holds_goes_through_the_python_path(two_hops: TwoHops) -> None:
    size = _relay.MAX_FAST_BODY + 1
    conn = http.client.HTTPConnection("127.0.0.1", two_hops.web.ports["outbound"], timeout=10)
    try:
        assert _request(conn, "PUT", "/echo", body=b"y" * size)["body_length"] == size
        assert _connection_kinds(two_hops) == [False]
    finally:
        conn.close()
