"""A queue whose callers wait for their data to be committed, drained by one writer in large transactions.

Span ingest and edge metrics work the same way: an export call hands over
what it decoded and waits until it is stored (so an acknowledged export is
stored); the writer takes whatever has queued up, from every caller, into one
transaction; a full queue refuses at once (``IngestFull``, RESOURCE_EXHAUSTED
on the wire) rather than holding more in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class IngestFull(Exception):  # noqa: N818 - a condition the caller reports, not a bug
    """More is waiting to be stored than the queue may hold."""


class StoreFailed(Exception):  # noqa: N818
    """The batch holding this data could not be written (the database is down, say)."""


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


class CommitQueue(Generic[T]):
    """Subclasses say how big an item is, how many fit one transaction, and how to write a batch."""

    what = "items"

    def __init__(self, *, max_pending: int, max_batch: int, writers: int = 1) -> None:
        self._queue: deque[tuple[T, int, asyncio.Future[None]]] = deque()
        self._pending = 0
        self._max_pending = max_pending
        self._max_batch = max_batch
        # Batches written at once (each in its own transaction); only where ``write`` is safe concurrently.
        self.writers = writers
        self._wake = asyncio.Event()
        self._stopping = False
        self.refused_total = 0

    @property
    def pending(self) -> int:
        return self._pending

    def size(self, item: T) -> int:
        raise NotImplementedError

    async def write(self, items: list[T]) -> None:
        raise NotImplementedError

    async def after_commit(self, items: list[T]) -> None:
        """Runs once the callers were told their data is stored."""

    async def submit(self, item: T) -> None:
        """Queue ``item`` and wait until it is committed; raises ``IngestFull`` or ``StoreFailed``."""
        size = self.size(item)
        if self._pending + size > self._max_pending:
            self.refused_total += size
            raise IngestFull(f"{self._pending} {self.what} are waiting to be stored")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((item, size, done))
        self._pending += size
        self._wake.set()
        await done

    async def run(self) -> None:
        await asyncio.gather(*(self._writer_loop() for _ in range(self.writers)))

    async def _writer_loop(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._write_batch()

    async def close(self, task: asyncio.Task[None] | None) -> None:
        """Let the writer finish the batch in hand and stop; callers still waiting fail (their clients retry)."""
        await stop_writer(task, self._stop)
        while self._queue:
            _, size, done = self._queue.popleft()
            self._pending -= size
            if not done.done():
                done.set_exception(StoreFailed("the server is stopping"))

    def _stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _write_batch(self) -> None:
        items: list[T] = []
        waiting: list[asyncio.Future[None]] = []
        taken = 0
        while self._queue and (not items or taken + self._queue[0][1] <= self._max_batch):
            item, size, done = self._queue.popleft()
            items.append(item)
            waiting.append(done)
            taken += size
        try:
            await self.write(items)
        except Exception as exc:
            logger.exception("storing %d %s failed", taken, self.what)
            for done in waiting:
                if not done.done():
                    done.set_exception(StoreFailed(type(exc).__name__))
            return
        finally:
            self._pending -= taken
        for done in waiting:
            if not done.done():
                done.set_result(None)
        await self.after_commit(items)
