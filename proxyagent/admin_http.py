"""The agent's admin HTTP port: /metrics (Prometheus), /healthz (process up), /readyz (registered, holding config)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from proxyagent.http.headers import serialize
from proxyagent.http.messages import ClientGone, RequestReader
from proxyagent.mesh_errors import MeshError
from proxyagent.metrics import MeshMetrics

_PROMETHEUS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def _response(status: bytes, body: bytes, content_type: bytes = b"text/plain; charset=utf-8") -> bytes:
    head = serialize(
        b"HTTP/1.1 " + status,
        [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ],
    )
    return head + body


class AdminHttp:
    def __init__(self, metrics: MeshMetrics, ready: Callable[[], bool]) -> None:
        self._metrics = metrics
        self._ready = ready

    def respond(self, method: bytes, path: bytes) -> bytes:
        path = path.split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return _response(b"405 Method Not Allowed", b"method not allowed\n")
        if path == b"/metrics":
            return _response(b"200 OK", self._metrics.exposition(), _PROMETHEUS_TYPE)
        if path == b"/healthz":
            return _response(b"200 OK", b"ok\n")
        if path == b"/readyz":
            if self._ready():
                return _response(b"200 OK", b"ready\n")
            return _response(b"503 Service Unavailable", b"not ready: not registered or no config yet\n")
        return _response(b"404 Not Found", b"not found\n")

    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests = RequestReader(reader)
        try:
            while (head := await requests.next_head()) is not None:
                async for _ in requests.body(head):
                    pass
                writer.write(self.respond(head.method, head.target))
                await writer.drain()
                if not head.keep_alive:
                    break
        except (MeshError, ClientGone, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
