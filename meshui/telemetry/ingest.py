"""The span ingest queue: export requests wait here, a writer stores them in large transactions.

Each export call hands over its decoded spans and waits until they are
committed, so an acknowledged export is stored. The writer takes whatever has
queued up (across calls) up to ``batch_spans`` per transaction. The queue is
bounded in spans: when it is full the call is refused at once
(``IngestFull``, RESOURCE_EXHAUSTED on the wire) rather than held in memory;
OTLP clients retry with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

from channels.db import database_sync_to_async

from meshui.telemetry.actions import do_store_spans
from meshui.telemetry.models import Span

logger = logging.getLogger(__name__)


class IngestFull(Exception):  # noqa: N818 - a condition the caller reports, not a bug
    """More spans are waiting to be stored than the queue may hold."""


class StoreFailed(Exception):  # noqa: N818
    """The batch holding these spans could not be written (the database is down, say)."""


async def stop_writer(task: asyncio.Task[None] | None, ask_to_stop: Callable[[], None], grace_s: float = 10.0) -> None:
    """Ask a writer loop to stop and wait for it; cancel it only if it does not stop in ``grace_s``.

    Asking rather than cancelling: a cancellation that lands inside a client
    library (redis-py, while publishing) can be swallowed there, leaving the
    task waiting forever.
    """
    ask_to_stop()
    if task is None:
        return
    done, _ = await asyncio.wait({task}, timeout=grace_s)
    if not done:
        logger.warning("%s did not stop within %.0f s; cancelling it", task.get_name(), grace_s)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class SpanIngest:
    def __init__(self, *, max_pending_spans: int, batch_spans: int) -> None:
        self._queue: deque[tuple[list[Span], asyncio.Future[None]]] = deque()
        self._pending = 0
        self._max_pending = max_pending_spans
        self._batch_spans = batch_spans
        self._wake = asyncio.Event()
        self._stopping = False
        self.stored_total = 0
        self.refused_total = 0

    @property
    def pending(self) -> int:
        return self._pending

    async def submit(self, spans: list[Span]) -> None:
        """Queue ``spans`` and wait until they are committed; raises ``IngestFull`` or ``StoreFailed``."""
        if self._pending + len(spans) > self._max_pending:
            self.refused_total += len(spans)
            raise IngestFull(f"{self._pending} spans are waiting to be stored")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((spans, done))
        self._pending += len(spans)
        self._wake.set()
        await done

    async def run(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._write_batch()

    def _stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _write_batch(self) -> None:
        spans: list[Span] = []
        waiting: list[asyncio.Future[None]] = []
        while self._queue and (not spans or len(spans) + len(self._queue[0][0]) <= self._batch_spans):
            batch, done = self._queue.popleft()
            spans.extend(batch)
            waiting.append(done)
        started = time.perf_counter()
        try:
            traces = await database_sync_to_async(do_store_spans)(spans)
        except Exception as exc:
            logger.exception("storing %d spans failed", len(spans))
            for done in waiting:
                if not done.done():
                    done.set_exception(StoreFailed(type(exc).__name__))
        else:
            self.stored_total += len(spans)
            logger.debug(
                "stored %d spans of %d traces in %.1f ms", len(spans), traces, (time.perf_counter() - started) * 1e3
            )
            for done in waiting:
                if not done.done():
                    done.set_result(None)
        finally:
            self._pending -= len(spans)

    async def close(self, task: asyncio.Task[None] | None) -> None:
        """Let the writer finish the batch in hand and stop; calls still waiting fail (their clients retry)."""
        await stop_writer(task, self._stop)
        while self._queue:
            spans, done = self._queue.popleft()
            self._pending -= len(spans)
            if not done.done():
                done.set_exception(StoreFailed("the server is stopping"))
