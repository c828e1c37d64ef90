"""The edge-metrics writer: every agent's exports merged into one transaction, then published live.

After each commit the caller-reported increments go out on the Channels layer
to the live graph of every namespace they touch.
"""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async

from meshui.telemetry.actions import do_add_edge_increments
from meshui.telemetry.live import LivePublisher
from meshui.telemetry.otlp_metrics import EdgeIncrement, EdgeKey
from meshui.telemetry.writer import CommitQueue

logger = logging.getLogger(__name__)

Increments = dict[EdgeKey, EdgeIncrement]


def _merge(items: list[Increments]) -> Increments:
    merged: Increments = {}
    for increments in items:
        for key, increment in increments.items():
            total = merged.get(key)
            if total is None:
                merged[key] = total = EdgeIncrement()
            total.add(increment)
    return merged


class MetricsWriter(CommitQueue[Increments]):
    what = "metric series"

    def __init__(self, *, max_pending_keys: int, publisher: LivePublisher | None) -> None:
        # However many series wait, they go in one transaction: merged, they are one row per edge and bucket.
        super().__init__(max_pending=max_pending_keys, max_batch=max_pending_keys)
        self._publisher = publisher
        # The batch just written, merged; published once it is committed.
        self._written: Increments = {}

    def size(self, item: Increments) -> int:
        return len(item)

    async def submit(self, item: Increments) -> None:
        if item:
            await super().submit(item)

    async def write(self, items: list[Increments]) -> None:
        merged = _merge(items)
        await database_sync_to_async(do_add_edge_increments)(merged)
        self._written = merged

    async def after_commit(self, items: list[Increments]) -> None:
        written, self._written = self._written, {}
        if self._publisher is None:
            return
        # After the commit: a browser never sees traffic the API cannot show it.
        try:
            await self._publisher.publish(written)
        except Exception:  # Redis away: the live view misses a beat, the stored data is intact
            logger.exception("publishing live graph deltas failed")
