# Types of the native relay (proxyagent/http/_relay.c), for mypy and mypyc.
import asyncio
from typing import Any

MAX_FAST_BODY: int

class Relay:
    def __init__(
        self,
        bridge: Any,
        loop: asyncio.AbstractEventLoop,
        connections: set[Any],
        via_line: bytes,
        idle_timeout: float,
        sampling: float,
        exporter: Any,
        span_kind: int,
        span_batch: int,
        span_max: int,
        /,
    ) -> None: ...
    spans_dropped: int
    waiters: int
    inbound: bool
    def close_idle(self) -> None: ...
    def take_spans(self, limit: int, /) -> tuple[bytes, int]: ...

class Client(asyncio.Protocol):
    native: bool
    peer_identity: str
    def __init__(self, relay: Relay, /) -> None: ...
    def close(self) -> None: ...
    def connected(self, gen: int, upstream: Upstream, /) -> None: ...
    def connect_failed(self, gen: int, detail: str, /) -> None: ...
    def waiting(self, gen: int, /) -> bool: ...

class Upstream(asyncio.Protocol):
    def __init__(self, relay: Relay, key: tuple[str, int, str], /) -> None: ...
    def close(self) -> None: ...
