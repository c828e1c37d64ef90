"""Picking an endpoint of a destination: round robin, or least request by power of two choices."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict

from proxyagent.routing import Destination, Endpoint, LoadBalancerKind

EndpointKey = tuple[str, int]


def _key(endpoint: Endpoint) -> EndpointKey:
    return (endpoint.address, endpoint.port)


class Balancer:
    """One per agent; keeps per-endpoint in-flight counts and per-destination round-robin cursors.

    Weights are honoured by repeating an endpoint in the rotation (round robin)
    or scaling its load (least request).
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()  # noqa: S311 - load spreading, not security
        self._in_flight: defaultdict[EndpointKey, int] = defaultdict(int)
        self._cursors: dict[tuple[str, tuple[Endpoint, ...]], itertools.cycle[Endpoint]] = {}

    def pick(self, destination: Destination) -> Endpoint | None:
        endpoints = destination.endpoints
        if not endpoints:
            return None
        if len(endpoints) == 1:
            return endpoints[0]
        if destination.load_balancer is LoadBalancerKind.LEAST_REQUEST:
            first, second = self._rng.sample(endpoints, 2)
            return first if self._load(first) <= self._load(second) else second
        cursor_key = (destination.key, endpoints)
        cursor = self._cursors.get(cursor_key)
        if cursor is None:
            # A new endpoint set (new config) gets a fresh rotation; drop the stale one.
            self._cursors = {k: v for k, v in self._cursors.items() if k[0] != destination.key}
            rotation = [endpoint for endpoint in endpoints for _ in range(max(1, endpoint.weight))]
            start = self._rng.randrange(len(rotation))
            cursor = itertools.cycle(rotation[start:] + rotation[:start])
            self._cursors[cursor_key] = cursor
        return next(cursor)

    def _load(self, endpoint: Endpoint) -> float:
        return self._in_flight[_key(endpoint)] / max(1, endpoint.weight)

    def started(self, endpoint: Endpoint) -> None:
        self._in_flight[_key(endpoint)] += 1

    def finished(self, endpoint: Endpoint) -> None:
        key = _key(endpoint)
        self._in_flight[key] -= 1
        if self._in_flight[key] <= 0:
            del self._in_flight[key]
