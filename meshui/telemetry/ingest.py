"""The span ingest queue: export calls wait here, one writer stores their spans in large transactions."""

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

    def __init__(self, *, max_pending_spans: int, batch_spans: int) -> None:
        super().__init__(max_pending=max_pending_spans, max_batch=batch_spans)
        self.stored_total = 0

    def size(self, item: list[SpanRow]) -> int:
        return len(item)

    async def write(self, items: list[list[SpanRow]]) -> None:
        spans = [span for batch in items for span in batch]
        started = time.perf_counter()
        traces = await database_sync_to_async(do_store_spans)(spans)
        self.stored_total += len(spans)
        elapsed_ms = (time.perf_counter() - started) * 1e3
        logger.debug("stored %d spans of %d traces in %.1f ms", len(spans), traces, elapsed_ms)
