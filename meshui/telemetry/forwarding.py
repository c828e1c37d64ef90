"""Re-export of everything received to another OTLP endpoint (Jaeger, Tempo, an OpenTelemetry Collector).

The built-in store is a default, not a lock-in. Forwarding never slows ingest
down: requests wait in a bounded queue and are sent by one task; when the
other end is slow or away, a request is retried a few times with backoff and
then dropped (and counted), and a full queue drops new requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import grpc

logger = logging.getLogger(__name__)

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
METRICS = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
_ATTEMPTS = 3
_LOG_INTERVAL_S = 60.0


class OtlpForwarder:
    def __init__(self, target: str, *, max_pending: int = 1000) -> None:
        self.target = target
        self._queue: deque[tuple[str, bytes]] = deque()
        self._max_pending = max_pending
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_log = 0.0
        self.forwarded_total = 0
        self.dropped_total = 0

    def offer(self, method: str, request: bytes) -> None:
        if len(self._queue) >= self._max_pending:
            self._drop("the forwarding queue is full")
            return
        self._queue.append((method, request))
        self._wake.set()

    async def run(self) -> None:
        async with grpc.aio.insecure_channel(self.target) as channel:
            while not self._stopping:
                await self._wake.wait()
                self._wake.clear()
                while self._queue and not self._stopping:
                    method, request = self._queue.popleft()
                    await self._send(channel, method, request)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _send(self, channel: grpc.aio.Channel, method: str, request: bytes) -> None:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
        for attempt in range(_ATTEMPTS):
            try:
                await call(request, timeout=10)
            except grpc.aio.AioRpcError as exc:
                if attempt + 1 == _ATTEMPTS:
                    self._drop(f"{exc.code().name}: {exc.details()}")
                    return
                await asyncio.sleep(0.5 * 2**attempt)
            else:
                self.forwarded_total += 1
                return

    def _drop(self, reason: str) -> None:
        self.dropped_total += 1
        now = time.monotonic()
        if now - self._last_log > _LOG_INTERVAL_S:
            self._last_log = now
            logger.warning("OTLP forwarding to %s dropped a request: %s", self.target, reason)
