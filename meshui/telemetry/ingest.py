"""The span ingest queue: export calls wait here, writers store their spans in large transactions.

On PostgreSQL two batches may be written at once: each is one statement that
inserts its spans with ``ON CONFLICT DO NOTHING`` and merges only what it
inserted into the summaries with ``ON CONFLICT DO UPDATE``, which waits for a
concurrent transaction holding the same summary row and then adds to its
committed version (ADR 011). SQLite takes one writer at a time.
"""

from __future__ import annotations

import logging
import time

from channels.db import database_sync_to_async

from meshui.telemetry.actions import do_store_spans
from meshui.telemetry.span_store import SpanRow
from meshui.telemetry.writer import CommitQueue

logger = logging.getLogger(__name__)


class SpanIngest(CommitQueue[list[SpanRow]]):
    what = "spans"

    def __init__(self, *, max_pending_spans: int, batch_spans: int, writers: int = 1) -> None:
        super().__init__(max_pending=max_pending_spans, max_batch=batch_spans, writers=writers)
        self.stored_total = 0

    def size(self, item: list[SpanRow]) -> int:
        return len(item)

    async def write(self, items: list[list[SpanRow]]) -> None:
        spans = [span for batch in items for span in batch]
        started = time.perf_counter()
        # With several writers each batch needs a thread (and database connection) of its own.
        store = database_sync_to_async(do_store_spans, thread_sensitive=self.writers == 1)
        traces = await store(spans)
        self.stored_total += len(spans)
        elapsed_ms = (time.perf_counter() - started) * 1e3
        logger.debug("stored %d spans of %d traces in %.1f ms", len(spans), traces, elapsed_ms)
