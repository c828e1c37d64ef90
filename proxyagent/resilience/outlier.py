"""Outlier detection: endpoints that keep failing are ejected (not picked) for a while.

Each try's outcome on the policy path counts for its endpoint. A response
below 500 resets the endpoint's runs of failures. A 5xx extends its run of
5xx; a 502, 503 or 504, a failed connect, a reset or a try that timed out
extends its run of gateway errors, and (as Envoy does when it does not split
local-origin errors) counts as a 5xx too. A run reaching ``consecutive_5xx``
or ``consecutive_gateway_errors`` ejects the endpoint for
``base_ejection_ms`` times the number of times it has been ejected (at most
five minutes or one base time, whichever is longer); each review interval
the endpoint then spends in service takes one off that count again, as
Envoy's multiplier does.

At most ``max_ejection_percent`` % of the destination's endpoints are out at
once, rounded down: when that rounds to no endpoint, none is ejected (Envoy
without ``always_eject_one_host``). A run that cannot eject is counted in
``mesh_ejections_skipped_total`` and ejects as soon as there is room.

Readmission is exact and lazy: the first pick after an ejection ends puts
the endpoint back. A timer also reviews the ejections every ``interval_ms``
while any is in force, so ``mesh_ejected_endpoints`` comes down without
traffic. A readmitted endpoint starts with clean runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Set

from proxyagent.metrics import MeshMetrics
from proxyagent.routing import Endpoint, OutlierDetection

logger = logging.getLogger(__name__)

EndpointKey = tuple[str, int]
_MAX_EJECTION_S = 300.0
NEVER = float("inf")
REASON_5XX = "consecutive_5xx"
REASON_GATEWAY = "consecutive_gateway_errors"


class _Health:
    __slots__ = ("consecutive_5xx", "consecutive_gateway", "ejected_until", "ejections", "readmitted_at")

    def __init__(self) -> None:
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.ejections = 0
        self.ejected_until = 0.0
        self.readmitted_at = 0.0


class OutlierDetector:
    """One destination's endpoints' health; ``ejected`` is what the balancer avoids."""

    __slots__ = ("_endpoints", "_health", "_metrics", "_next_readmission", "_timer", "config", "ejected", "service")

    def __init__(
        self, config: OutlierDetection, service: str, endpoints: tuple[Endpoint, ...], metrics: MeshMetrics
    ) -> None:
        self.config = config
        self.service = service
        self._metrics = metrics
        self._health: dict[EndpointKey, _Health] = {}
        self.ejected: set[EndpointKey] = set()
        self._endpoints: frozenset[EndpointKey] = frozenset()
        self._next_readmission = NEVER
        self._timer: asyncio.TimerHandle | None = None
        self.reconfigure(config, endpoints)

    def reconfigure(self, config: OutlierDetection, endpoints: tuple[Endpoint, ...]) -> None:
        """A new snapshot: state is kept for the endpoints still there."""
        self.config = config
        self._endpoints = frozenset((e.address, e.port) for e in endpoints)
        for key in [key for key in self._health if key not in self._endpoints]:
            del self._health[key]
        gone = self.ejected - self._endpoints
        if gone:
            self.ejected -= gone
            self._publish()

    def close(self) -> None:
        """The destination (or its outlier detection) is gone from the config."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.ejected.clear()
        self._publish()

    def current(self, now: float) -> Set[EndpointKey]:
        """The endpoints ejected at ``now`` (loop time), readmitting those whose time is over."""
        if self.ejected and now >= self._next_readmission:
            self._readmit(now)
        return self.ejected

    def success(self, key: EndpointKey) -> None:
        health = self._health.get(key)
        if health is not None:
            health.consecutive_5xx = 0
            health.consecutive_gateway = 0

    def failure(self, key: EndpointKey, gateway: bool, now: float) -> None:
        """A 5xx (``gateway``: a 502/503/504 or a failure of our own reaching the endpoint) at ``now``."""
        if key not in self._endpoints or key in self.ejected:
            return
        health = self._health.get(key)
        if health is None:
            health = self._health[key] = _Health()
        health.consecutive_5xx += 1
        health.consecutive_gateway = health.consecutive_gateway + 1 if gateway else 0
        config = self.config
        if config.consecutive_5xx and health.consecutive_5xx >= config.consecutive_5xx:
            self._eject(key, health, REASON_5XX, now)
        elif config.consecutive_gateway_errors and health.consecutive_gateway >= config.consecutive_gateway_errors:
            self._eject(key, health, REASON_GATEWAY, now)

    def _eject(self, key: EndpointKey, health: _Health, reason: str, now: float) -> None:
        config = self.config
        room = len(self._endpoints) * config.max_ejection_percent // 100
        if len(self.ejected) >= room:
            self._metrics.ejections_skipped.labels(self.service, reason).inc()
            return
        if health.ejections and health.readmitted_at:
            served = int((now - health.readmitted_at) / config.interval_s)
            health.ejections = max(0, health.ejections - served)
        health.ejections += 1
        duration = min(config.base_ejection_s * health.ejections, max(config.base_ejection_s, _MAX_EJECTION_S))
        health.ejected_until = now + duration
        health.consecutive_5xx = 0
        health.consecutive_gateway = 0
        self.ejected.add(key)
        self._next_readmission = min(self._next_readmission, health.ejected_until)
        self._metrics.ejections.labels(self.service, reason).inc()
        self._publish()
        logger.info(
            "ejected %s:%d of %s for %.3g s (%s, ejection %d)",
            key[0],
            key[1],
            self.service,
            duration,
            reason,
            health.ejections,
        )
        self._arm(now)

    def _readmit(self, now: float) -> None:
        due = NEVER
        for key in list(self.ejected):
            health = self._health.get(key)
            if health is None or now >= health.ejected_until:
                self.ejected.discard(key)
                if health is not None:
                    health.readmitted_at = now
                logger.info("readmitted %s:%d of %s", key[0], key[1], self.service)
            else:
                due = min(due, health.ejected_until)
        self._next_readmission = due
        self._publish()

    def _arm(self, now: float) -> None:
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the event loop (a unit test): readmission stays lazy
            return
        self._timer = loop.call_at(now + self.config.interval_s, self._review)

    def _review(self) -> None:
        self._timer = None
        if not self.ejected:
            return
        now = asyncio.get_running_loop().time()
        self.current(now)
        if self.ejected:
            self._arm(now)

    def _publish(self) -> None:
        self._metrics.ejected_endpoints.labels(self.service).set(len(self.ejected))
