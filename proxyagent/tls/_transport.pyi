# Types of the C record layer (proxyagent/tls/_transport.c), for mypy.
import asyncio
import ssl
from collections.abc import Callable
from typing import Any

class TlsTransport(asyncio.Transport, asyncio.Protocol):
    server_side: bool
    def __init__(
        self,
        context: ssl.SSLContext,
        server_side: bool,
        protocol: asyncio.BaseProtocol,
        check: Callable[[Any], None],
        waiter: asyncio.Future[None],
        loop: asyncio.AbstractEventLoop,
    ) -> None: ...

def compatible(
    context: ssl.SSLContext, verify_mode: int, minimum_version: int, num_tickets: int, openssl_version: int, /
) -> bool: ...
