"""Connections to upstreams (other agents' inbound ports, or the local app), pooled per address."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from dataclasses import dataclass

from proxyagent.mesh_errors import MeshError, MeshErrorCode

_MAX_IDLE_PER_HOST = 64


@dataclass(eq=False)
class UpstreamConnection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    address: tuple[str, int]
    reused: bool = False

    def usable(self) -> bool:
        # Bytes that arrived while the connection sat idle (a 408, say) would be taken for the
        # next request's response. StreamReader has no public peek, hence its buffer.
        buffered = len(getattr(self.reader, "_buffer", b""))
        return not self.writer.is_closing() and not self.reader.at_eof() and not buffered

    def close(self) -> None:
        self.writer.close()


class ConnectionPool:
    """Idle keep-alive connections per (host, port); a connection is either lent out or idle, never both."""

    def __init__(self, connect_timeout_s: float = 2.0) -> None:
        self._idle: defaultdict[tuple[str, int], list[UpstreamConnection]] = defaultdict(list)
        self._connect_timeout_s = connect_timeout_s

    async def acquire(self, host: str, port: int, *, fresh: bool = False) -> UpstreamConnection:
        key = (host, port)
        idle = self._idle[key]
        while idle and not fresh:
            conn = idle.pop()
            if conn.usable():
                conn.reused = True
                return conn
            conn.close()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                reader, writer = await asyncio.open_connection(host, port, limit=2**20)
        except TimeoutError:
            raise MeshError(MeshErrorCode.UPSTREAM_CONNECT_FAILED, f"connect to {host}:{port} timed out") from None
        except OSError as exc:
            raise MeshError(
                MeshErrorCode.UPSTREAM_CONNECT_FAILED, f"connect to {host}:{port} failed: {exc.strerror or exc}"
            ) from None
        return UpstreamConnection(reader, writer, key)

    def release(self, conn: UpstreamConnection) -> None:
        idle = self._idle[conn.address]
        if conn.usable() and len(idle) < _MAX_IDLE_PER_HOST:
            idle.append(conn)
        else:
            conn.close()

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
                with contextlib.suppress(OSError, ConnectionError):
                    await conn.writer.wait_closed()
        self._idle.clear()
