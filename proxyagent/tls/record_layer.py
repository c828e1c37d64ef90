"""Mutual TLS connections for the data plane, with their records read and written in C where it can (ADR 019).

``open_tls`` (outbound) and ``accept_tls`` (inbound) hand back a connection
only once its handshake finished and the peer passed the checks asyncio's TLS
would have made (``refuse_foreign_trust_domain``). The transport they give the
application's protocol is ``_transport.TlsTransport``: OpenSSL over memory
BIOs in C, on the ``SSL_CTX`` inside the agent's ``ssl.SSLContext``. Where that
module was not built (no C compiler or no OpenSSL headers), or the context's
OpenSSL is not the one it was built against (``compatible``), asyncio's own
TLS serves the connection instead: the same handshake and checks, more CPU
per record.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

from proxyagent.tls.material import refuse_foreign_trust_domain

try:
    from proxyagent.tls import _transport
except ImportError:  # not built here: asyncio's TLS serves every connection
    AVAILABLE = False
else:
    AVAILABLE = True

P = TypeVar("P", bound=asyncio.BaseProtocol)

# Whether connections use the C record layer where it is available; tests turn it off to cover asyncio's TLS.
enabled = True


def native(context: ssl.SSLContext) -> bool:
    """Whether ``context``'s connections can use the C record layer (decided once per context)."""
    if not (enabled and AVAILABLE):
        return False
    known: bool | None = getattr(context, "_native_records", None)
    if known is None:
        known = bool(
            context.sni_callback is None
            and context.keylog_filename is None
            and not context.post_handshake_auth
            and _transport.compatible(
                context,
                int(context.verify_mode),
                int(context.minimum_version),
                context.num_tickets,
                ssl.OPENSSL_VERSION_NUMBER,
            )
        )
        context._native_records = known  # type: ignore[attr-defined]  # cached on the context it describes
    return known


def _peer_check(context: ssl.SSLContext) -> Callable[[Any], None]:
    trust_domain: str = getattr(context, "trust_domain", "")

    def check(transport: asyncio.BaseTransport) -> None:
        if trust_domain:
            refuse_foreign_trust_domain(transport.get_extra_info("peercert"), trust_domain)

    return check


async def open_tls(
    factory: Callable[[], P], host: str, port: int, context: ssl.SSLContext
) -> tuple[asyncio.Transport, P]:
    """A mutual TLS connection to ``host:port`` served by ``factory``'s protocol, handshake done; raises
    ``ssl.SSLError`` or ``OSError`` as ``loop.create_connection`` would."""
    loop = asyncio.get_running_loop()
    if not native(context):
        return await loop.create_connection(factory, host, port, ssl=context)
    protocol = factory()
    handshake: asyncio.Future[None] = loop.create_future()
    _, transport = await loop.create_connection(
        lambda: _transport.TlsTransport(context, False, protocol, _peer_check(context), handshake, loop), host, port
    )
    await _handshake(transport, handshake)
    return transport, protocol


async def accept_tls(
    factory: Callable[[], P], conn: socket.socket, context: ssl.SSLContext, timeout_s: float
) -> asyncio.BaseTransport:
    """Serve an accepted connection with mutual TLS once its handshake is done (within ``timeout_s``); raises
    ``ssl.SSLError``, ``OSError`` or ``TimeoutError``."""
    loop = asyncio.get_running_loop()
    if not native(context):
        transport, _ = await loop.connect_accepted_socket(factory, conn, ssl=context, ssl_handshake_timeout=timeout_s)
        return transport
    handshake: asyncio.Future[None] = loop.create_future()
    protocol = factory()
    _, transport = await loop.connect_accepted_socket(
        lambda: _transport.TlsTransport(context, True, protocol, _peer_check(context), handshake, loop), conn
    )
    async with asyncio.timeout(timeout_s):
        await _handshake(transport, handshake)
    return transport


async def _handshake(transport: _transport.TlsTransport, handshake: asyncio.Future[None]) -> None:
    try:
        await handshake
    except BaseException:  # refused, failed, timed out or cancelled: nothing may use the connection
        transport.abort()
        raise
