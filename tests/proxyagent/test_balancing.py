"""The policy path's building blocks on their own: hash ring, picking with splits and avoidance, retry budget,
outlier detection, circuit-breaker line, span events and the mesh errors they answer with."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from opentelemetry.proto.trace.v1 import trace_pb2

from proxyagent.balancer import Balancer, endpoint_key
from proxyagent.hash_ring import HashRing, key_hash, ring_position
from proxyagent.mesh_errors import MeshError, MeshErrorCode
from proxyagent.metrics import MeshMetrics
from proxyagent.otlp_wire import encode_span, span_attribute, span_event
from proxyagent.resilience.circuit_breaker import CircuitBreakerState
from proxyagent.resilience.outlier import OutlierDetector
from proxyagent.resilience.retry_budget import RetryBudgetTracker
from proxyagent.routing import (
    CircuitBreaker,
    Destination,
    Endpoint,
    LoadBalancerKind,
    OutlierDetection,
    RetryBudget,
    SplitEntry,
    TrafficPolicy,
)


def _endpoints(count: int, version: str = "v1", weight: int = 1, first: int = 0) -> list[Endpoint]:
    return [
        Endpoint(f"10.0.0.{i}", 15006, f"w-{i}", weight=weight, labels={"version": version})
        for i in range(first, first + count)
    ]


def _owner(ring: HashRing, key: str) -> Endpoint:
    owner = ring.lookup(ring_position(key_hash(key.encode())))
    assert owner is not None
    return owner


# Hash ring


def test_the_ring_moves_only_the_keys_of_an_endpoint_that_leaves() -> None:
    endpoints = _endpoints(10)
    before = HashRing(endpoints)
    after = HashRing(endpoints[:4] + endpoints[5:])
    keys = [f"user-{i}" for i in range(5000)]
    moved = [key for key in keys if _owner(before, key) != _owner(after, key)]
    assert all(_owner(before, key) == endpoints[4] for key in moved), "only the leaving endpoint's keys move"
    assert 0.05 < len(moved) / len(keys) < 0.15, "about a tenth of the keys were its own"


def test_an_endpoint_that_joins_takes_keys_only_for_itself() -> None:
    endpoints = _endpoints(11)
    before, after = HashRing(endpoints[:10]), HashRing(endpoints)
    moved = [key for key in (f"k{i}" for i in range(5000)) if _owner(before, key) != _owner(after, key)]
    assert all(_owner(after, key) == endpoints[10] for key in moved)


def test_the_ring_spreads_keys_by_weight() -> None:
    endpoints = [*_endpoints(3), *_endpoints(1, weight=3, first=3)]
    ring = HashRing(endpoints)
    counts = Counter(_owner(ring, f"key-{i}").workload for i in range(12_000))
    # Weight 3 of 6: half the keys; each weight-1 endpoint a sixth (within a fifth of that, ketama's spread).
    assert abs(counts["w-3"] / 12_000 - 0.5) < 0.1
    assert all(abs(counts[f"w-{i}"] / 12_000 - 1 / 6) < 1 / 30 for i in range(3))


def test_a_large_ring_stays_bounded() -> None:
    ring = HashRing(_endpoints(1000))
    assert _owner(ring, "anyone") is not None


# Picking


def _destination(endpoints: list[Endpoint], kind: LoadBalancerKind, split: tuple[SplitEntry, ...] = ()) -> Destination:
    return Destination(
        service="reviews",
        namespace="shop",
        load_balancer=kind,
        endpoints=tuple(endpoints),
        hash_header="x-user" if kind is LoadBalancerKind.CONSISTENT_HASH else "",
        traffic_policy=TrafficPolicy(split=split) if split else None,
    )


@pytest.mark.parametrize("kind", list(LoadBalancerKind))
def test_a_retry_avoids_the_endpoints_tried_while_others_are_left(kind: LoadBalancerKind) -> None:
    endpoints = _endpoints(3)
    destination = _destination(endpoints, kind)
    balancer = Balancer(random.Random(7))  # noqa: S311 - a fixed seed: reproducible picks
    tried = {endpoint_key(endpoints[0]), endpoint_key(endpoints[1])}
    for _ in range(20):
        assert balancer.pick_for(destination, b"user-1", tried=tried) == endpoints[2]
    everything = {endpoint_key(e) for e in endpoints}
    assert balancer.pick_for(destination, b"user-1", tried=everything) in endpoints, "all tried: one goes again"


def test_ejected_endpoints_are_avoided_before_tried_ones() -> None:
    endpoints = _endpoints(2)
    destination = _destination(endpoints, LoadBalancerKind.ROUND_ROBIN)
    balancer = Balancer(random.Random(1))  # noqa: S311 - a fixed seed: reproducible picks
    ejected, tried = {endpoint_key(endpoints[0])}, {endpoint_key(endpoints[1])}
    assert {balancer.pick_for(destination, ejected=ejected, tried=tried) for _ in range(10)} == {endpoints[1]}
    assert {balancer.pick_for(destination, ejected=ejected | tried) for _ in range(10)} <= set(endpoints)


def test_hashing_keeps_a_key_on_its_endpoint_and_version() -> None:
    endpoints = [*_endpoints(3, "v1"), *_endpoints(3, "v2", first=3)]
    split = (SplitEntry("v1", 50), SplitEntry("v2", 50))
    destination = _destination(endpoints, LoadBalancerKind.CONSISTENT_HASH, split)
    balancer = Balancer(random.Random(3))  # noqa: S311 - a fixed seed: reproducible picks
    for user in range(50):
        key = f"user-{user}".encode()
        assert len({balancer.pick_for(destination, key) for _ in range(5)}) == 1
    versions = Counter(
        (balancer.pick_for(destination, f"u{i}".encode()) or endpoints[0]).labels["version"] for i in range(2000)
    )
    assert abs(versions["v1"] - 1000) < 5 * (2000 * 0.25) ** 0.5


def test_the_fast_path_splits_too_and_never_picks_an_unlisted_version() -> None:
    endpoints = [*_endpoints(2, "v1"), *_endpoints(2, "v2", first=2), *_endpoints(1, "v3", first=4)]
    destination = _destination(endpoints, LoadBalancerKind.LEAST_REQUEST, (SplitEntry("v1", 80), SplitEntry("v2", 20)))
    balancer = Balancer(random.Random(5))  # noqa: S311 - a fixed seed: reproducible picks
    picks = Counter((balancer.pick(destination) or endpoints[0]).labels["version"] for _ in range(5000))
    assert picks["v3"] == 0
    assert abs(picks["v2"] - 1000) < 5 * (5000 * 0.16) ** 0.5


def test_weighted_random_follows_the_weights() -> None:
    endpoints = [Endpoint("10.0.0.1", 1, "light", weight=1), Endpoint("10.0.0.2", 1, "heavy", weight=4)]
    destination = _destination(endpoints, LoadBalancerKind.RANDOM)
    balancer = Balancer(random.Random(11))  # noqa: S311 - a fixed seed: reproducible picks
    picks = Counter((balancer.pick(destination) or endpoints[0]).workload for _ in range(5000))
    assert abs(picks["heavy"] - 4000) < 5 * (5000 * 0.16) ** 0.5


# Retry budget


def test_the_budget_allows_a_share_of_requests_in_flight() -> None:
    budget = RetryBudgetTracker(RetryBudget(percent=20, min_per_second=0))
    for _ in range(10):
        budget.request_started()
    assert budget.try_acquire(0.0)
    assert budget.try_acquire(0.0)
    assert not budget.try_acquire(0.0), "2 retries are 20 % of 10 requests"
    budget.release()
    assert budget.try_acquire(0.0)


def test_the_floor_allows_min_per_second_in_any_second() -> None:
    budget = RetryBudgetTracker(RetryBudget(percent=0, min_per_second=3))
    budget.request_started()
    assert [budget.try_acquire(t) for t in (0.0, 0.1, 0.2, 0.3)] == [True, True, True, False]
    assert not budget.try_acquire(0.99)
    assert budget.try_acquire(1.0), "the first of the three is a second old"
    assert not budget.try_acquire(1.05)


# Outlier detection


def _detector(count: int, percent: int, **config: float) -> tuple[OutlierDetector, list[Endpoint], MeshMetrics]:
    endpoints = _endpoints(count)
    metrics = MeshMetrics()
    settings = OutlierDetection(
        consecutive_5xx=int(config.get("consecutive_5xx", 2)),
        consecutive_gateway_errors=0,
        interval_s=config.get("interval_s", 10.0),
        base_ejection_s=config.get("base_ejection_s", 30.0),
        max_ejection_percent=percent,
    )
    return OutlierDetector(settings, "reviews.shop", tuple(endpoints), metrics), endpoints, metrics


def test_a_percentage_that_rounds_to_no_endpoint_ejects_none() -> None:
    detector, endpoints, metrics = _detector(5, percent=10)
    key = endpoint_key(endpoints[0])
    for _ in range(4):
        detector.failure(key, False, 0.0)
    assert detector.current(0.0) == set()
    skipped = metrics.registry.get_sample_value(
        "mesh_ejections_skipped_total", {"destination_service": "reviews.shop", "reason": "consecutive_5xx"}
    )
    assert skipped == 3, "the second, third and fourth failures in a row each called for an ejection"


def test_ejections_grow_with_each_one_and_shrink_with_time_in_service() -> None:
    detector, endpoints, _ = _detector(2, percent=50, base_ejection_s=10.0, interval_s=5.0)
    key = endpoint_key(endpoints[0])
    detector.failure(key, False, 0.0)
    detector.failure(key, False, 0.0)
    assert detector.current(9.9) == {key}
    assert detector.current(10.0) == set(), "readmitted when its 10 s are over"
    detector.failure(key, False, 10.0)
    detector.failure(key, False, 10.0)
    assert detector.current(29.9) == {key}, "second ejection: 20 s"
    assert detector.current(30.0) == set()
    # 40 s in service (8 intervals) wipe out both past ejections: the next is one base time again.
    detector.failure(key, False, 70.0)
    detector.failure(key, False, 70.0)
    assert detector.current(79.9) == {key}
    assert detector.current(80.0) == set()


def test_a_success_resets_the_run_of_failures() -> None:
    detector, endpoints, _ = _detector(2, percent=50)
    key = endpoint_key(endpoints[0])
    detector.failure(key, False, 0.0)
    detector.success(key)
    detector.failure(key, False, 0.0)
    assert detector.current(0.0) == set()


# Circuit breaker


class _Waiter:
    def __init__(self, breaker: CircuitBreakerState, log: list[str], name: str) -> None:
        self.breaker, self.log, self.name = breaker, log, name

    def connection_available(self) -> bool:
        if not self.breaker.may_open_connection():
            return False
        self.breaker.connection_opened()
        self.log.append(self.name)
        return True


def test_waiters_go_first_come_first_served_as_room_is_made() -> None:
    breaker = CircuitBreakerState(CircuitBreaker(max_connections=1, max_pending_requests=2))
    breaker.connection_opened()
    log: list[str] = []
    first, second = _Waiter(breaker, log, "first"), _Waiter(breaker, log, "second")
    assert not breaker.may_open_connection()
    breaker.wait(first)
    breaker.wait(second)
    assert not breaker.may_wait()
    breaker.connections -= 1  # a connection closed (connection_closed wakes them from the loop)
    breaker.wake()
    assert log == ["first"]
    breaker.connections -= 1
    breaker.wake()
    assert log == ["first", "second"]


# Span events and mesh errors


def test_span_events_decode_as_opentelemetry_events() -> None:
    event = span_event("mesh.retry", 1_700_000_000_000_000_123, (("mesh.retry.attempt", 2), ("reason", "5xx")))
    encoded = encode_span(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        parent_span_id=b"",
        name=b"GET reviews.shop",
        kind=3,
        start_ns=1,
        end_ns=2,
        attributes=span_attribute("mesh.tries", 2) + event,
        error=False,
    )
    span = trace_pb2.Span.FromString(encoded)
    [decoded] = span.events
    assert decoded.name == "mesh.retry"
    assert decoded.time_unix_nano == 1_700_000_000_000_000_123
    assert {kv.key: kv.value.int_value or kv.value.string_value for kv in decoded.attributes} == {
        "mesh.retry.attempt": 2,
        "reason": "5xx",
    }
    assert span.attributes[0].key == "mesh.tries"


def test_an_injected_fault_answers_its_own_status() -> None:
    teapot = MeshError(MeshErrorCode.FAULT_INJECTED, "chaos", 418).response(keep_alive=True)
    head, body = teapot.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 418 I'm a Teapot\r\n")
    assert b"x-mesh-error: fault_injected" in head
    assert json.loads(body) == {"mesh_error": "fault_injected", "detail": "chaos"}
    no_content = MeshError(MeshErrorCode.FAULT_INJECTED, "chaos", 204).response(keep_alive=True)
    assert no_content.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert no_content.endswith(b"\r\n\r\n")
    assert b"content-length" not in no_content
    assert MeshError(MeshErrorCode.CIRCUIT_OPEN, "full").status == 503
