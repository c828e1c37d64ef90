"""Picking an endpoint of a destination: round robin, least request (power of two choices), weighted random,
or a consistent hash of a request header; within the versions a weighted split allows.

A split first picks a version by weight (a weight of 0 is never picked), then an endpoint among those labelled
``version=<it>`` with the destination's balancer. A version without endpoints gives its share to the other
listed versions, by their weights, never to endpoints of unlisted versions; when no listed version has an
endpoint there is none to pick. With a hash key the version, too, comes from the key, so one key keeps one
version as well as one endpoint.

The policy path (``pick_for``) also steers around endpoints: first it avoids ejected endpoints and those a
request already tried, then only ejected ones, and only when nothing else is left does it pick one of them,
so outlier detection or a retry never leaves a request with nowhere to go.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Set
from math import gcd

from proxyagent.hash_ring import HashRing, key_hash, ring_position
from proxyagent.routing import Destination, Endpoint, LoadBalancerKind

EndpointKey = tuple[str, int]
_NO_KEYS: frozenset[EndpointKey] = frozenset()


def endpoint_key(endpoint: Endpoint) -> EndpointKey:
    return (endpoint.address, endpoint.port)


_key = endpoint_key


class _Group:
    """Endpoints picked from together (all of a destination's, or one version's) and what picking needs."""

    __slots__ = ("_ring", "cumulative", "cursor", "endpoints", "rotation", "total_weight")

    def __init__(self, endpoints: tuple[Endpoint, ...]) -> None:
        self.endpoints = endpoints
        self.rotation: list[Endpoint] | None = None
        self.cursor = 0
        cumulative = []
        total = 0
        for endpoint in endpoints:
            total += max(1, endpoint.weight)
            cumulative.append(total)
        self.cumulative = cumulative
        self.total_weight = total
        self._ring: HashRing | None = None

    def next_in_rotation(self, rng: random.Random) -> Endpoint:
        rotation = self.rotation
        if rotation is None:
            # Weights repeat an endpoint in the rotation; dividing by their gcd keeps it short.
            divisor = 0
            for endpoint in self.endpoints:
                divisor = gcd(divisor, max(1, endpoint.weight))
            rotation = self.rotation = [
                endpoint for endpoint in self.endpoints for _ in range(max(1, endpoint.weight) // max(1, divisor))
            ]
            self.cursor = rng.randrange(len(rotation))
        cursor = self.cursor
        self.cursor = cursor + 1 if cursor + 1 < len(rotation) else 0
        return rotation[cursor]

    def weighted_random(self, rng: random.Random) -> Endpoint:
        return self.endpoints[bisect_right(self.cumulative, rng.randrange(self.total_weight))]

    def ring(self) -> HashRing:
        ring = self._ring
        if ring is None:
            ring = self._ring = HashRing(self.endpoints)
        return ring


class _Plan:
    """What picking for one ``Destination`` object needs; rebuilt when a snapshot replaces the object."""

    __slots__ = ("destination", "version_cumulative", "version_total", "versions", "whole")

    whole: _Group
    versions: list[_Group]

    def __init__(self, destination: Destination, previous: _Plan | None) -> None:
        self.destination = destination
        # Groups whose endpoints did not change are kept: their rotation goes on and their ring is not rebuilt.
        old: dict[tuple[Endpoint, ...], _Group] = {}
        if previous is not None:
            for group in (previous.whole, *previous.versions):
                old[group.endpoints] = group
        endpoints = destination.endpoints
        self.whole = old.get(endpoints) or _Group(endpoints)
        self.versions = []
        self.version_cumulative: list[int] = []
        total = 0
        for entry in destination.split:
            if entry.weight <= 0:
                continue
            members = tuple(e for e in endpoints if e.labels.get("version") == entry.version)
            if not members:
                continue
            total += entry.weight
            self.versions.append(old.get(members) or _Group(members))
            self.version_cumulative.append(total)
        self.version_total = total

    def groups(self, rng: random.Random, hashed: int | None) -> list[_Group]:
        """The groups to pick from, in order: the chosen version first, then the others by weight."""
        if not self.destination.split:
            return [self.whole]
        versions = self.versions
        if len(versions) <= 1:
            return list(versions)
        draw = (hashed >> 64) % self.version_total if hashed is not None else rng.randrange(self.version_total)
        first = bisect_right(self.version_cumulative, draw)
        ordered = [versions[first]]
        rest = [(versions[i], self._weight(i)) for i in range(len(versions)) if i != first]
        while rest:
            total = sum(weight for _, weight in rest)
            draw = rng.randrange(total)
            for index, (group, weight) in enumerate(rest):
                if draw < weight:
                    ordered.append(group)
                    del rest[index]
                    break
                draw -= weight
        return ordered

    def _weight(self, index: int) -> int:
        cumulative = self.version_cumulative
        return cumulative[index] - (cumulative[index - 1] if index else 0)


class Balancer:
    """One per agent; keeps per-endpoint in-flight counts and per-destination rotations and rings.

    Weights are honoured by repeating an endpoint in the rotation (round robin),
    scaling its load (least request), its chance (random) or its points on the ring (consistent hash).
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()  # noqa: S311 - load spreading, not security
        self._in_flight: defaultdict[EndpointKey, int] = defaultdict(int)
        self._plans: dict[str, _Plan] = {}

    def pick(self, destination: Destination) -> Endpoint | None:
        """The fast path's pick: no header to hash (consistent hash then spreads at random), nothing to avoid."""
        endpoints = destination.endpoints
        if not endpoints:
            return None
        policy = destination.traffic_policy
        if policy is not None and policy.split:
            return self.pick_for(destination)
        if len(endpoints) == 1:
            return endpoints[0]
        kind = destination.load_balancer
        if kind is LoadBalancerKind.LEAST_REQUEST:
            first, second = self._rng.sample(endpoints, 2)
            return first if self._load(first) <= self._load(second) else second
        group = self._plan(destination).whole
        if kind is LoadBalancerKind.ROUND_ROBIN:
            return group.next_in_rotation(self._rng)
        return group.weighted_random(self._rng)

    def pick_for(
        self,
        destination: Destination,
        hash_key: bytes | None = None,
        ejected: Set[EndpointKey] = _NO_KEYS,
        tried: Set[EndpointKey] = _NO_KEYS,
    ) -> Endpoint | None:
        """The policy path's pick: hashes ``hash_key`` (consistent hash), avoids ``ejected`` and ``tried``
        endpoints while others are left (see the module's docstring)."""
        if not destination.endpoints:
            return None
        plan = self._plan(destination)
        kind = destination.load_balancer
        hashed = key_hash(hash_key) if hash_key is not None and kind is LoadBalancerKind.CONSISTENT_HASH else None
        position = ring_position(hashed) if hashed is not None else None
        groups = plan.groups(self._rng, hashed)
        skips: list[Callable[[Endpoint], bool] | None] = []
        if ejected and tried:
            skips.append(lambda e: _key(e) in ejected or _key(e) in tried)
            skips.append(lambda e: _key(e) in ejected)
        elif ejected:
            skips.append(lambda e: _key(e) in ejected)
        elif tried:
            skips.append(lambda e: _key(e) in tried)
        skips.append(None)
        for skip in skips:
            for group in groups:
                endpoint = self._pick_in(group, kind, position, skip)
                if endpoint is not None:
                    return endpoint
        return None

    def _pick_in(
        self, group: _Group, kind: LoadBalancerKind, position: int | None, skip: Callable[[Endpoint], bool] | None
    ) -> Endpoint | None:
        endpoints = group.endpoints
        if not endpoints:
            return None
        rng = self._rng
        if kind is LoadBalancerKind.CONSISTENT_HASH and position is not None:
            return group.ring().lookup(position, skip)
        if kind is LoadBalancerKind.ROUND_ROBIN:
            endpoint = group.next_in_rotation(rng)
            if skip is None:
                return endpoint
            # Every endpoint is in the rotation at least once: one turn of it sees them all.
            for _ in range(len(group.rotation or ())):
                if not skip(endpoint):
                    return endpoint
                endpoint = group.next_in_rotation(rng)
            return None
        candidates = endpoints if skip is None else tuple(e for e in endpoints if not skip(e))
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        if kind is LoadBalancerKind.LEAST_REQUEST:
            first, second = rng.sample(candidates, 2)
            return first if self._load(first) <= self._load(second) else second
        if skip is None:
            return group.weighted_random(rng)
        weights = [max(1, e.weight) for e in candidates]
        return rng.choices(candidates, weights)[0]

    def _plan(self, destination: Destination) -> _Plan:
        plan = self._plans.get(destination.key)
        if plan is None or plan.destination is not destination:
            plan = self._plans[destination.key] = _Plan(destination, plan)
        return plan

    def forget(self, keep: Set[str]) -> None:
        """Drop what is kept for destinations no longer configured (names not in ``keep``)."""
        for key in [key for key in self._plans if key not in keep]:
            del self._plans[key]

    def _load(self, endpoint: Endpoint) -> float:
        return self._in_flight[_key(endpoint)] / max(1, endpoint.weight)

    def started(self, endpoint: Endpoint) -> None:
        self._in_flight[_key(endpoint)] += 1

    def finished(self, endpoint: Endpoint) -> None:
        key = _key(endpoint)
        self._in_flight[key] -= 1
        if self._in_flight[key] <= 0:
            del self._in_flight[key]
