"""The C record layer for mutual TLS (``proxyagent.tls._transport``): real handshakes over loopback sockets, on
the standard event loop and on uvloop (the agent's), against itself and against asyncio's own TLS."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import uvloop

from proxyagent.tls import record_layer
from proxyagent.tls.spiffe import peer_id
from tests.mtls.conftest import workload_certificate
from tests.mtls.fake_control_plane import TestCa

pytestmark = pytest.mark.skipif(not record_layer.AVAILABLE, reason="the C record layer is not built here")

WEB = "spiffe://cluster.local/ns/shop/sa/web"
REVIEWS = "spiffe://cluster.local/ns/shop/sa/reviews"
T = TypeVar("T")
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, T]], T]:
    def run_on_loop(coro: Coroutine[Any, Any, T]) -> T:
        loop = LOOPS[request.param]()
        try:
            return loop.run_until_complete(asyncio.wait_for(coro, 20))
        finally:
            loop.close()

    return run_on_loop


class Peer(asyncio.Protocol):
    """Records what arrives; echoes it back when ``echo``."""

    def __init__(self, echo: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.echo = echo
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.eof = False
        self.lost: asyncio.Future[Exception | None] = loop.create_future()
        self._wanted = 0
        self._enough: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport) or hasattr(transport, "write")
        self.transport = transport  # type: ignore[assignment]  # a TlsTransport or asyncio's

    def data_received(self, data: bytes) -> None:
        self.received += data
        if self.echo:
            assert self.transport is not None
            self.transport.write(data)
        if self._enough is not None and len(self.received) >= self._wanted and not self._enough.done():
            self._enough.set_result(None)

    def eof_received(self) -> bool:
        self.eof = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)

    async def receive(self, size: int) -> bytes:
        if len(self.received) < size:
            self._wanted = size
            self._enough = asyncio.get_running_loop().create_future()
            await self._enough
        return bytes(self.received)


def contexts(client_id: str = WEB, server_id: str = REVIEWS) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = TestCa()
    return (
        workload_certificate(ca, client_id).client_context(),
        workload_certificate(ca, server_id).server_context(),
    )


async def pair(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext, server: Peer | None = None
) -> tuple[tuple[asyncio.Transport, Peer], tuple[asyncio.BaseTransport, Peer]]:
    """A connection from ``open_tls`` to ``accept_tls``, both handshakes done."""
    loop = asyncio.get_running_loop()
    server_peer = server or Peer(echo=True)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        opening = asyncio.ensure_future(record_layer.open_tls(Peer, "127.0.0.1", port, client_context))
        conn, _ = await loop.sock_accept(listener)
        accepting = asyncio.ensure_future(record_layer.accept_tls(lambda: server_peer, conn, server_context, 10))
        (client_transport, client_peer), server_transport = await asyncio.gather(opening, accepting)
    return (client_transport, client_peer), (server_transport, server_peer)


def test_records_carry_exchanges_both_ways_and_each_side_knows_the_other(run: Any) -> None:
    client_context, server_context = contexts()

    async def exchange() -> None:
        (client, caller), (server, callee) = await pair(client_context, server_context)
        assert type(client).__name__ == type(server).__name__ == "TlsTransport"
        assert peer_id(client.get_extra_info("peercert")) == REVIEWS
        assert peer_id(server.get_extra_info("peercert")) == WEB
        assert client.get_extra_info("sslcontext") is client_context
        assert client.get_extra_info("cipher")[1] == "TLSv1.3"
        assert client.get_extra_info("peername") == server.get_extra_info("sockname")
        # Small writes, then one larger than the TCP buffers and many TLS records, then a batch of lines.
        expected = b"GET / HTTP/1.1\r\n\r\n" + bytes(range(256)) * 4096 + b"a" + b"bc"
        client.write(expected[:18])
        client.write(memoryview(expected)[18:-3])
        client.writelines([b"a", bytearray(b"bc")])
        assert await caller.receive(len(expected)) == expected
        assert bytes(callee.received) == expected
        # close() sends close_notify: the other side reads it as the end, then loses the connection cleanly.
        client.close()
        assert client.is_closing()
        assert await callee.lost is None
        assert callee.eof
        assert await caller.lost is None
        client.write(b"late")  # dropped, as asyncio's transports drop writes after close

    run(exchange())


@pytest.mark.parametrize("c_side", ["client", "server"])
def test_records_interoperate_with_asyncio_tls(run: Any, c_side: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Either side may be the C layer and the other asyncio's TLS: the wire is plain TLS 1.3."""
    client_context, server_context = contexts()
    real_native = record_layer.native
    c_context = client_context if c_side == "client" else server_context
    monkeypatch.setattr(record_layer, "native", lambda context: context is c_context and real_native(context))

    async def exchange() -> None:
        (client, caller), (server, callee) = await pair(client_context, server_context)
        assert (type(client).__name__ == "TlsTransport") == (c_side == "client")
        assert (type(server).__name__ == "TlsTransport") == (c_side == "server")
        assert peer_id(server.get_extra_info("peercert")) == WEB
        message = b"x" * 100_000
        client.write(message)
        assert await caller.receive(len(message)) == message
        assert bytes(callee.received) == message
        server.close()
        assert await caller.lost is None

    run(exchange())


def test_a_forged_record_drops_the_connection_and_tells_the_application_why(run: Any) -> None:
    client_context, server_context = contexts()

    async def forged() -> None:
        (client, caller), (_, callee) = await pair(client_context, server_context)
        # As if the network had altered application data: a record whose authentication tag cannot verify.
        client.data_received(b"\x17\x03\x03\x00\x20" + bytes(32))  # type: ignore[attr-defined]
        lost = await caller.lost
        assert isinstance(lost, ssl.SSLError), lost
        assert caller.received == b""
        assert client.is_closing()
        await callee.lost  # the alert or the close reaches the other side

    run(forged())


def test_a_caller_certificate_from_another_ca_fails_the_handshake_and_the_connection(run: Any) -> None:
    client_context = workload_certificate(TestCa(), WEB).client_context()
    _, server_context = contexts()
    # The caller trusts the server's CA, so only the server has reason to refuse.
    client_context.load_verify_locations(cadata=_bundle_of(server_context))

    async def refused() -> None:
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            await pair(client_context, server_context)
        assert "certificate verify failed" in str(caught.value)

    run(refused())


def _bundle_of(context: ssl.SSLContext) -> str:
    return "".join(ssl.DER_cert_to_PEM_cert(der) for der in context.get_ca_certs(binary_form=True))


@pytest.mark.parametrize("c_layer", [True, False], ids=["c", "asyncio"])
def test_a_server_naming_a_workload_of_another_trust_domain_is_refused_by_either_layer(
    run: Any, c_layer: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its root is in the caller's bundle (shared with another trust domain), so OpenSSL alone would accept it."""
    ours, theirs = TestCa(), TestCa("other.example")
    bundle = ours.bundle_pem + theirs.bundle_pem
    client_context = workload_certificate(ours, WEB, bundle).client_context()
    server_context = workload_certificate(theirs, "spiffe://other.example/ns/shop/sa/reviews", bundle).server_context()
    monkeypatch.setattr(record_layer, "enabled", c_layer)

    async def refused() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Peer(echo=True), "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ssl.SSLCertVerificationError) as caught:
                await record_layer.open_tls(Peer, "127.0.0.1", port, client_context)
            assert caught.value.reason == "FOREIGN_TRUST_DOMAIN"
        finally:
            server.close()

    run(refused())


def test_a_caller_that_never_finishes_the_handshake_is_dropped_at_the_timeout(run: Any) -> None:
    _, server_context = contexts()

    async def silent() -> None:
        loop = asyncio.get_running_loop()
        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.setblocking(False)
            caller = socket.create_connection(listener.getsockname())
            caller.setblocking(False)
            conn, _ = await loop.sock_accept(listener)
            with caller:
                with pytest.raises(TimeoutError):
                    await record_layer.accept_tls(Peer, conn, server_context, 0.2)
                assert await loop.sock_recv(caller, 1) == b""  # closed on it

    run(silent())


def test_the_c_layer_takes_a_context_only_when_it_reads_back_through_the_same_openssl() -> None:
    from proxyagent.tls import _transport

    _, context = contexts()
    settings = (int(context.verify_mode), int(context.minimum_version), context.num_tickets)
    assert _transport.compatible(context, *settings, ssl.OPENSSL_VERSION_NUMBER)
    assert not _transport.compatible(context, *settings, ssl.OPENSSL_VERSION_NUMBER + 1)
    assert not _transport.compatible(context, settings[0], settings[1], settings[2] + 1, ssl.OPENSSL_VERSION_NUMBER)
    assert not _transport.compatible(context, int(ssl.CERT_NONE), *settings[1:], ssl.OPENSSL_VERSION_NUMBER)
