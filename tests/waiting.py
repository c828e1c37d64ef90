"""Waiting on a condition with a deadline: how tests synchronize with servers, agents and workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

DEFAULT_DEADLINE_S = 20.0


def until(
    condition: Callable[[], Any], what: str, deadline_s: float = DEFAULT_DEADLINE_S, interval_s: float = 0.02
) -> Any:
    """From a test's own thread: poll ``condition`` until it is truthy (returns it) or the deadline passes
    (fails, saying what)."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {deadline_s} s: {what}")
        time.sleep(interval_s)  # polling interval, bounded by the deadline


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
