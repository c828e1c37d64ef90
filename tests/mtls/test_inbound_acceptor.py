"""The mTLS inbound listener's accept loop: a connection accepted just as the agent stops is closed, never leaked."""

from __future__ import annotations

import asyncio
import gc
import select
import socket
import warnings

from proxyagent.metrics import MeshMetrics
from proxyagent.tls.inbound import InboundAcceptor


def _refusing_protocol() -> asyncio.Protocol:
    raise AssertionError("no connection is handed over in this test")


async def _accept_then_stop_at_once() -> tuple[socket.socket, int]:
    listener = socket.create_server(("127.0.0.1", 0))
    acceptor = InboundAcceptor(
        listener,
        plaintext=_refusing_protocol,
        tls=_refusing_protocol,
        server_context=lambda: None,
        strict=lambda: False,
        metrics=MeshMetrics(),
    )
    acceptor.start()
    client = socket.create_connection(listener.getsockname(), timeout=10)
    # Wait (without serving) until the kernel has the connection queued for accept.
    readable, _, _ = select.select([listener], [], [], 10)
    assert readable, "the connection never became acceptable"
    # Accept synchronously, as the reader callback does, then stop before the connection's task ever runs.
    acceptor._accept_ready()
    accepted = acceptor.accepted_total
    await acceptor.close()
    return client, accepted


def test_a_connection_accepted_as_the_listener_stops_is_closed_not_leaked() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        client, accepted = asyncio.run(_accept_then_stop_at_once())
        gc.collect()
    with client:
        assert accepted == 1
        # The server's side was closed: the client reads the end of the stream rather than waiting.
        assert client.recv(1) == b""
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == [], [str(w.message) for w in leaks]
