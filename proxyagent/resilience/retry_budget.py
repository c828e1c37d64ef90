"""How many retries a destination may have going: a share of its requests, with a floor per second.

A retry may start when, counting it, retries in flight would be at most
``percent`` % of the requests in flight to the destination (Envoy's retry
budget), or when fewer than ``min_per_second`` retries started in the last
second (Linkerd's floor, so a quiet service can still retry). "In flight"
counts requests on the policy path of this agent, from admission to their
last byte, and a retry from its start to the end of its try. Under an outage
every try fails, requests pile up slowly and retries stay a bounded fraction
of the load instead of multiplying it by the attempts allowed.
"""

from __future__ import annotations

from collections import deque

from proxyagent.routing import RetryBudget

_WINDOW_S = 1.0


class RetryBudgetTracker:
    """One destination's budget; the event loop is its only user, so there is no lock."""

    __slots__ = ("_recent", "budget", "requests_in_flight", "retries_in_flight")

    def __init__(self, budget: RetryBudget) -> None:
        self.budget = budget
        self.requests_in_flight = 0
        self.retries_in_flight = 0
        # Start times of the latest min_per_second retries: the floor allows another when the oldest is a
        # second old.
        self._recent: deque[float] = deque(maxlen=budget.min_per_second)

    def reconfigure(self, budget: RetryBudget) -> None:
        if budget.min_per_second != self.budget.min_per_second:
            self._recent = deque(self._recent, maxlen=budget.min_per_second)
        self.budget = budget

    def request_started(self) -> None:
        self.requests_in_flight += 1

    def request_finished(self) -> None:
        self.requests_in_flight -= 1

    def try_acquire(self, now: float) -> bool:
        """Whether a retry may start now (loop time); when it may, it is counted in flight until ``release``."""
        budget = self.budget
        recent = self._recent
        floor = budget.min_per_second > 0 and (len(recent) < budget.min_per_second or now - recent[0] >= _WINDOW_S)
        if not floor and (self.retries_in_flight + 1) * 100 > budget.percent * self.requests_in_flight:
            return False
        self.retries_in_flight += 1
        if budget.min_per_second > 0:
            recent.append(now)
        return True

    def release(self) -> None:
        self.retries_in_flight -= 1
