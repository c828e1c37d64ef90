"""A destination's circuit breaker: limits on requests in flight, upstream connections and requests waiting
for one. Over a limit a request is answered 503 ``circuit_open`` at once, never left to time out.

``max_requests`` counts requests admitted to the destination (retries are the retry budget's business).
``max_connections`` counts the upstream connections the policy path opened to the destination's endpoints,
busy or idle in the pool. A try that finds no idle connection to its endpoint and no room for a new one
waits, FIFO, while fewer than ``max_pending_requests`` wait; it goes on when a connection closes or a request
finishes (leaving its connection idle). If the only idle connections lead to other endpoints, one is closed to
make room, so a waiting request never waits for a connection nobody will release.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from proxyagent.routing import CircuitBreaker

NO_LIMITS = CircuitBreaker()


class ConnectionWaiter(Protocol):
    def connection_available(self) -> bool:
        """Room may have been made: returns whether the waiter went on (False: it keeps its place in line)."""
        ...


class CircuitBreakerState:
    __slots__ = ("_waiting", "_wake_due", "connections", "limits", "requests")

    def __init__(self, limits: CircuitBreaker) -> None:
        self.limits = limits
        self.requests = 0
        self.connections = 0
        self._waiting: deque[ConnectionWaiter] = deque()
        self._wake_due = False

    @property
    def pending(self) -> int:
        return len(self._waiting)

    def reconfigure(self, limits: CircuitBreaker) -> None:
        self.limits = limits
        self.wake()

    def admit_request(self) -> bool:
        limit = self.limits.max_requests
        if limit and self.requests >= limit:
            return False
        self.requests += 1
        return True

    def request_done(self) -> None:
        self.requests -= 1
        self._wake_soon()

    def may_open_connection(self) -> bool:
        limit = self.limits.max_connections
        return not limit or self.connections < limit

    def connection_opened(self) -> None:
        self.connections += 1

    def connection_closed(self) -> None:
        self.connections -= 1
        self._wake_soon()

    def may_wait(self) -> bool:
        limit = self.limits.max_pending_requests
        return not limit or len(self._waiting) < limit

    def wait(self, waiter: ConnectionWaiter) -> None:
        self._waiting.append(waiter)

    def cancel(self, waiter: ConnectionWaiter) -> None:
        if waiter in self._waiting:
            self._waiting.remove(waiter)

    def room_made(self) -> None:
        """A connection went idle in the pool: a waiter for its endpoint may take it."""
        self._wake_soon()

    def _wake_soon(self) -> None:
        # From the loop rather than from inside the exchange or connection that made room.
        if self._waiting and not self._wake_due:
            self._wake_due = True
            asyncio.get_running_loop().call_soon(self.wake)

    def wake(self) -> None:
        """Let waiters go, first come first served, for as long as they find room."""
        self._wake_due = False
        waiting = self._waiting
        while waiting:
            waiter = waiting.popleft()
            if not waiter.connection_available():
                waiting.appendleft(waiter)
                return
