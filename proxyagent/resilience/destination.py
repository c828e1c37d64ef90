"""What the policy path keeps per destination, across requests and snapshots."""

from __future__ import annotations

from collections.abc import Callable, Set
from typing import TYPE_CHECKING

from proxyagent.balancer import Balancer, EndpointKey
from proxyagent.metrics import MeshMetrics
from proxyagent.resilience.circuit_breaker import NO_LIMITS, CircuitBreakerState
from proxyagent.resilience.outlier import OutlierDetector
from proxyagent.resilience.retry_budget import RetryBudgetTracker
from proxyagent.routing import DEFAULT_RETRY_BUDGET, Destination, Endpoint, TrafficPolicy

if TYPE_CHECKING:
    from proxyagent.http.proxy import Target

_NO_KEYS: frozenset[EndpointKey] = frozenset()


class DestinationPolicy:
    """The traffic policy in force for one destination and the state enforcing it needs: circuit-breaker
    counts, the retry budget and the outlier detector.

    A new snapshot updates it in place (``update``), so counts of requests in
    flight and the endpoints' failure runs and ejections carry over.
    """

    __slots__ = ("_balancer", "_metrics", "_targets", "breaker", "budget", "destination", "detector", "traffic")

    def __init__(
        self,
        destination: Destination,
        balancer: Balancer,
        metrics: MeshMetrics,
        targets: Callable[[Destination, Endpoint], Target],
    ) -> None:
        self._balancer = balancer
        self._metrics = metrics
        # The router's cached Target for an endpoint of a destination.
        self._targets = targets
        self.breaker = CircuitBreakerState(NO_LIMITS)
        self.budget = RetryBudgetTracker(DEFAULT_RETRY_BUDGET)
        self.detector: OutlierDetector | None = None
        self.destination = destination
        self.traffic: TrafficPolicy | None = None
        self.update(destination)

    @property
    def service(self) -> str:
        return self.destination.key

    @property
    def name(self) -> str:
        traffic = self.traffic
        return traffic.name if traffic is not None and traffic.name else self.destination.key

    def update(self, destination: Destination) -> None:
        self.destination = destination
        traffic = self.traffic = destination.traffic_policy
        limits = traffic.circuit_breaker if traffic is not None else None
        self.breaker.reconfigure(limits or NO_LIMITS)
        self.budget.reconfigure(traffic.retry_budget if traffic is not None else DEFAULT_RETRY_BUDGET)
        outliers = traffic.outlier_detection if traffic is not None else None
        detector = self.detector
        if outliers is not None and outliers.ejects_anything:
            if detector is None:
                self.detector = OutlierDetector(outliers, destination.key, destination.endpoints, self._metrics)
            else:
                detector.reconfigure(outliers, destination.endpoints)
        elif detector is not None:
            detector.close()
            self.detector = None

    def close(self) -> None:
        """The destination left the config: requests still waiting go on, ejections end."""
        self.breaker.reconfigure(NO_LIMITS)
        if self.detector is not None:
            self.detector.close()
            self.detector = None

    def pick(self, hash_key: bytes | None, tried: Set[EndpointKey], now: float) -> Target | None:
        """An endpoint's target for a try, counted as started with the balancer; None when there is none."""
        detector = self.detector
        ejected = detector.current(now) if detector is not None else _NO_KEYS
        destination = self.destination
        endpoint = self._balancer.pick_for(destination, hash_key, ejected, tried)
        if endpoint is None:
            return None
        self._balancer.started(endpoint)
        return self._targets(destination, endpoint)
