"""The edge-metrics writer: exports from every agent merged into one transaction, then published live.

Like the span ingest queue: an export call hands over its increments and
waits until they are committed (so an acknowledged export is stored), the
writer merges whatever has queued up from all agents into one
``do_add_edge_increments`` call, and a full queue refuses at once. After each
commit the caller-reported increments go out on the Channels layer to the
live graph of every namespace they touch.
"""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async

from meshui.telemetry.actions import do_add_edge_increments
from meshui.telemetry.ingest import IngestFull, StoreFailed, stop_writer
from meshui.telemetry.live import LivePublisher
from meshui.telemetry.otlp_metrics import EdgeIncrement, EdgeKey

logger = logging.getLogger(__name__)


class MetricsWriter:
    def __init__(self, *, max_pending_keys: int, publisher: LivePublisher | None) -> None:
        self._queue: list[tuple[dict[EdgeKey, EdgeIncrement], asyncio.Future[None]]] = []
        self._pending = 0
        self._max_pending = max_pending_keys
        self._wake = asyncio.Event()
        self._stopping = False
        self._publisher = publisher

    async def submit(self, increments: dict[EdgeKey, EdgeIncrement]) -> None:
        if not increments:
            return
        if self._pending + len(increments) > self._max_pending:
            raise IngestFull(f"{self._pending} metric series are waiting to be stored")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((increments, done))
        self._pending += len(increments)
        self._wake.set()
        await done

    async def run(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                await self._write(batch)

    def _stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _write(self, batch: list[tuple[dict[EdgeKey, EdgeIncrement], asyncio.Future[None]]]) -> None:
        merged: dict[EdgeKey, EdgeIncrement] = {}
        for increments, _ in batch:
            for key, increment in increments.items():
                total = merged.get(key)
                if total is None:
                    merged[key] = total = EdgeIncrement()
                total.add(increment)
        try:
            await database_sync_to_async(do_add_edge_increments)(merged)
        except Exception as exc:
            logger.exception("storing %d edge metric series failed", len(merged))
            for _, done in batch:
                if not done.done():
                    done.set_exception(StoreFailed(type(exc).__name__))
            return
        finally:
            self._pending -= sum(len(increments) for increments, _ in batch)
        for _, done in batch:
            if not done.done():
                done.set_result(None)
        if self._publisher is not None:
            # After the commit: a browser never sees traffic the API cannot show it.
            try:
                await self._publisher.publish(merged)
            except Exception:  # Redis away: the live view misses a beat, the stored data is intact
                logger.exception("publishing live graph deltas failed")

    async def close(self, task: asyncio.Task[None] | None) -> None:
        """Let the writer finish the batch in hand and stop; calls still waiting fail (their clients retry)."""
        await stop_writer(task, self._stop)
        for increments, done in self._queue:
            self._pending -= len(increments)
            if not done.done():
                done.set_exception(StoreFailed("the server is stopping"))
        self._queue = []
