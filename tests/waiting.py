"""Waiting on a condition with a deadline: how tests synchronize with servers, agents and workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

DEFAULT_DEADLINE_S = 20.0


async def eventually(
    condition: Callable[[], Awaitable[bool] | bool], what: str, deadline_s: float = DEFAULT_DEADLINE_S
) -> None:
    """Return once ``condition`` (sync or async) holds, polling; fail naming ``what`` after ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        result = condition()
        if await result if asyncio.iscoroutine(result) else result:
            return
        await asyncio.sleep(0.02)  # polling interval, bounded by the deadline
    raise AssertionError(f"not within {deadline_s} s: {what}")
