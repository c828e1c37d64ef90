"""The span ingest queue: export calls wait here, writers store their spans in large transactions.

On PostgreSQL two batches may be written at once: each is one statement that
inserts its spans with ``ON CONFLICT DO NOTHING`` and merges only what it
inserted into the summaries with ``ON CONFLICT DO UPDATE``, which waits for a
concurrent transaction holding the same summary row and then adds to its
committed version (ADR 011). SQLite takes one writer at a time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

from channels.db import database_sync_to_async
from django.db import close_old_connections, connections

from meshui.telemetry.actions import do_store_spans
from meshui.telemetry.span_store import SpanRow
from meshui.telemetry.writer import CommitQueue

logger = logging.getLogger(__name__)


class SpanIngest(CommitQueue[list[SpanRow]]):
    what = "spans"

    def __init__(self, *, max_pending_spans: int, batch_spans: int, writers: int = 1) -> None:
        super().__init__(max_pending=max_pending_spans, max_batch=batch_spans, writers=writers)
        self.stored_total = 0
        # With several writers each batch needs a thread (and database connection) of its own; these
        # threads keep their connections between batches and close them when the queue closes.
        self._threads = ThreadPoolExecutor(writers, thread_name_prefix="span-writer") if writers > 1 else None

    def size(self, item: list[SpanRow]) -> int:
        return len(item)

    async def write(self, items: list[list[SpanRow]]) -> None:
        spans = [span for batch in items for span in batch]
        started = time.perf_counter()
        if self._threads is None:
            traces = await database_sync_to_async(do_store_spans)(spans)
        else:
            traces = await asyncio.get_running_loop().run_in_executor(self._threads, _store_in_thread, spans)
        self.stored_total += len(spans)
        elapsed_ms = (time.perf_counter() - started) * 1e3
        logger.debug("stored %d spans of %d traces in %.1f ms", len(spans), traces, elapsed_ms)

    async def close(self, task: asyncio.Task[None] | None) -> None:
        await super().close(task)
        if self._threads is not None:
            threads, self._threads = self._threads, None
            await asyncio.get_running_loop().run_in_executor(None, _close_connections, threads, self.writers)


def _store_in_thread(spans: list[SpanRow]) -> int:
    # What database_sync_to_async does around a call: drop a connection that broke or grew too old.
    close_old_connections()
    try:
        return do_store_spans(spans)
    finally:
        close_old_connections()


def _close_connections(threads: ThreadPoolExecutor, count: int) -> None:
    """Close every writer thread's connection: each of ``count`` tasks waits until all run at once, so
    they run on ``count`` different threads."""
    everyone = threading.Barrier(count)

    def close() -> None:
        everyone.wait(timeout=10)
        connections.close_all()

    wait([threads.submit(close) for _ in range(count)])
    threads.shutdown()
