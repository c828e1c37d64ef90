"""Traffic and inbound policy in a snapshot: validated field by field, applied whole or not at all."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from proxyagent.config_store import ConfigStore
from proxyagent.inbound_policy import (
    AuthorizationAction,
    AuthorizationDefault,
    PathMatch,
    PathMatchKind,
    PeerAuthenticationMode,
)
from proxyagent.protocol.v1 import snapshot_pb2
from proxyagent.routing import (
    DEFAULT_RETRY_BUDGET,
    CircuitBreaker,
    FaultInjection,
    LoadBalancerKind,
    OutlierDetection,
    RetryBudget,
    RetryPolicy,
    SplitEntry,
)

P = snapshot_pb2
Edit = Callable[[snapshot_pb2.Snapshot], None]


def _snapshot(version: int = 2) -> snapshot_pb2.Snapshot:
    """A valid snapshot using every field, which each case below breaks in one place."""
    destination = P.Destination(
        service="reviews",
        namespace="shop",
        load_balancer=P.LOAD_BALANCER_CONSISTENT_HASH,
        hash_header="x-user",
        request_timeout_ms=5000,
        endpoints=[
            P.Endpoint(address="10.0.0.1", port=15006, workload="reviews-v1", labels={"version": "v1"}),
            P.Endpoint(address="10.0.0.2", port=15006, workload="reviews-v2", labels={"version": "v2"}, weight=3),
        ],
        traffic_policy=P.TrafficPolicy(
            name="shop/reviews",
            retries=P.RetryPolicy(
                attempts=2,
                per_try_timeout_ms=1000,
                on_5xx=True,
                on_reset=True,
                max_replay_body_bytes=4096,
            ),
            retry_budget=P.RetryBudget(percent=25.5, min_per_second=5),
            circuit_breaker=P.CircuitBreaker(max_connections=10, max_pending_requests=5, max_requests=20),
            outlier_detection=P.OutlierDetection(
                consecutive_5xx=5,
                consecutive_gateway_errors=3,
                interval_ms=2000,
                base_ejection_ms=30000,
                max_ejection_percent=10,
            ),
            split=[P.SplitEntry(version="v1", weight=90), P.SplitEntry(version="v2", weight=10)],
            fault=P.FaultInjection(delay_percent=1.5, delay_ms=100, abort_percent=0.5, abort_status=503),
        ),
    )
    inbound = P.InboundPolicy(
        peer_authentication=P.PEER_AUTHENTICATION_MODE_STRICT,
        authorization_default=P.AUTHORIZATION_DEFAULT_DENY_ALL,
        authorization_policies=[
            P.AuthorizationPolicy(
                id="shop/allow-web",
                service="reviews",
                action=P.AUTHORIZATION_ACTION_ALLOW,
                rules=[
                    P.AuthorizationRule(
                        source=P.AuthorizationSource(
                            principals=["spiffe://cluster.local/ns/shop/sa/web"],
                            namespaces=["shop"],
                            request_principals=["https://issuer.example/alice"],
                        ),
                        operation=P.AuthorizationOperation(
                            methods=["GET"], paths=[P.PathMatch(prefix="/api/")], ports=[9080]
                        ),
                        when=[P.HeaderCondition(header="x-tenant", values=["a", "b"])],
                    )
                ],
            )
        ],
    )
    return P.Snapshot(version=version, destinations=[destination], inbound=inbound, policy_version=7)


def test_every_field_of_a_valid_snapshot_is_kept() -> None:
    store = ConfigStore()
    assert store.apply(_snapshot()) == (True, "")
    table = store.table
    assert table.policy_version == 7
    destination = table.destinations["reviews.shop"]
    assert destination.load_balancer is LoadBalancerKind.CONSISTENT_HASH
    assert destination.hash_header == "x-user"
    assert destination.request_timeout_s == 5.0
    assert destination.policy_path
    policy = destination.traffic_policy
    assert policy is not None
    assert policy.name == "shop/reviews"
    assert policy.retries == RetryPolicy(
        attempts=2, per_try_timeout_s=1.0, on_5xx=True, on_reset=True, max_replay_body_bytes=4096
    )
    assert policy.retry_budget == RetryBudget(percent=25.5, min_per_second=5)
    assert policy.circuit_breaker == CircuitBreaker(max_connections=10, max_pending_requests=5, max_requests=20)
    assert policy.outlier_detection == OutlierDetection(
        consecutive_5xx=5, consecutive_gateway_errors=3, interval_s=2.0, base_ejection_s=30.0, max_ejection_percent=10
    )
    assert policy.split == (SplitEntry("v1", 90), SplitEntry("v2", 10))
    assert policy.fault == FaultInjection(delay_percent=1.5, delay_s=0.1, abort_percent=0.5, abort_status=503)
    inbound = table.inbound
    assert inbound.peer_authentication is PeerAuthenticationMode.STRICT
    assert inbound.authorization_default is AuthorizationDefault.DENY_ALL
    [authz] = inbound.authorization_policies
    assert (authz.id, authz.service, authz.action) == ("shop/allow-web", "reviews", AuthorizationAction.ALLOW)
    [rule] = authz.rules
    assert rule.source.principals == ("spiffe://cluster.local/ns/shop/sa/web",)
    assert rule.operation.paths == (PathMatch(PathMatchKind.PREFIX, "/api/"),)
    assert rule.operation.ports == (9080,)
    assert rule.when[0].values == ("a", "b")


def test_defaults_fill_what_a_snapshot_leaves_out() -> None:
    snapshot = _snapshot()
    policy = snapshot.destinations[0].traffic_policy
    policy.ClearField("retry_budget")
    policy.outlier_detection.interval_ms = 0
    policy.outlier_detection.base_ejection_ms = 0
    store = ConfigStore()
    assert store.apply(snapshot) == (True, "")
    parsed = store.table.destinations["reviews.shop"].traffic_policy
    assert parsed is not None
    assert parsed.retry_budget == DEFAULT_RETRY_BUDGET
    assert parsed.outlier_detection is not None
    assert (parsed.outlier_detection.interval_s, parsed.outlier_detection.base_ejection_s) == (10.0, 30.0)


def test_a_split_alone_stays_on_the_fast_path() -> None:
    snapshot = _snapshot()
    destination = snapshot.destinations[0]
    destination.load_balancer = P.LOAD_BALANCER_ROUND_ROBIN
    destination.hash_header = ""
    split = list(destination.traffic_policy.split)
    destination.traffic_policy.CopyFrom(P.TrafficPolicy(name="shop/canary", split=split))
    store = ConfigStore()
    assert store.apply(snapshot) == (True, "")
    assert not store.table.destinations["reviews.shop"].policy_path


def _set(path: str, value: object) -> Edit:
    def edit(snapshot: snapshot_pb2.Snapshot) -> None:
        *parents, name = path.split(".")
        message: object = snapshot.destinations[0]
        for parent in parents:
            message = getattr(message, parent)
        setattr(message, name, value)

    return edit


def _inbound(edit: Callable[[snapshot_pb2.AuthorizationRule], None]) -> Edit:
    def apply(snapshot: snapshot_pb2.Snapshot) -> None:
        edit(snapshot.inbound.authorization_policies[0].rules[0])

    return apply


def _split(*entries: tuple[str, int]) -> Edit:
    def edit(snapshot: snapshot_pb2.Snapshot) -> None:
        split = snapshot.destinations[0].traffic_policy.split
        del split[:]
        split.extend(P.SplitEntry(version=v, weight=w) for v, w in entries)

    return edit


def _no_conditions(snapshot: snapshot_pb2.Snapshot) -> None:
    retries = snapshot.destinations[0].traffic_policy.retries
    retries.on_5xx = retries.on_reset = retries.on_connect_failure = False


def _no_path(rule: snapshot_pb2.AuthorizationRule) -> None:
    rule.operation.paths[0].ClearField("prefix")


INVALID: list[tuple[str, Edit, str]] = [
    ("attempts", _set("traffic_policy.retries.attempts", 11), "attempts: 11 is more than 10"),
    ("no-retry-condition", _no_conditions, "nothing to retry on"),
    (
        "per-try-over-timeout",
        _set("traffic_policy.retries.per_try_timeout_ms", 6000),
        "longer than the request timeout",
    ),
    ("replay-bytes", _set("traffic_policy.retries.max_replay_body_bytes", 1 << 30), "max_replay_body_bytes"),
    ("budget-percent", _set("traffic_policy.retry_budget.percent", 100.5), "not a percentage"),
    ("budget-nan", _set("traffic_policy.retry_budget.percent", float("nan")), "not a percentage"),
    ("split-sum", _split(("v1", 90), ("v2", 5)), "weights sum to 95, not 100"),
    ("split-duplicate", _split(("v1", 50), ("v1", 50)), "'v1' is listed twice"),
    ("split-empty-version", _split(("", 100)), "is not a version label value"),
    ("split-weight", _split(("v1", 101)), "weight: 101 is more than 100"),
    ("delay-percent", _set("traffic_policy.fault.delay_percent", 150.0), "delay_percent: 150.0 is not a percentage"),
    ("delay-without-duration", _set("traffic_policy.fault.delay_ms", 0), "needs a duration"),
    ("abort-percent", _set("traffic_policy.fault.abort_percent", -1.0), "abort_percent"),
    ("abort-status-high", _set("traffic_policy.fault.abort_status", 600), "600 is not an HTTP status"),
    ("abort-status-1xx", _set("traffic_policy.fault.abort_status", 101), "101 is not an HTTP status"),
    ("ejection-percent", _set("traffic_policy.outlier_detection.max_ejection_percent", 101), "max_ejection_percent"),
    ("interval", _set("traffic_policy.outlier_detection.interval_ms", 4_000_000), "interval_ms"),
    ("policy-name", _set("traffic_policy.name", "bad\nname"), "traffic_policy.name"),
    ("hash-header-missing", _set("hash_header", ""), "hash_header"),
    ("hash-header-uppercase", _set("hash_header", "X-User"), "not a lowercase HTTP header name"),
    ("hash-header-space", _set("hash_header", "x user"), "not a lowercase HTTP header name"),
    ("request-timeout", _set("request_timeout_ms", 4_000_000), "request_timeout_ms"),
    ("unknown-balancer", _set("load_balancer", 9), "unknown load balancer 9"),
    ("principal", _inbound(lambda r: r.source.principals.append("web")), "is not a SPIFFE id"),
    ("namespace", _inbound(lambda r: r.source.namespaces.append("Shop")), "is not a namespace"),
    ("request-principal", _inbound(lambda r: r.source.request_principals.append("alice")), "request_principals"),
    ("method", _inbound(lambda r: r.operation.methods.append("GE T")), "is not an HTTP method"),
    ("relative-path", _inbound(lambda r: r.operation.paths.append(P.PathMatch(exact="api"))), "must start with '/'"),
    ("dot-dot-path", _inbound(lambda r: r.operation.paths.append(P.PathMatch(prefix="/a/%2e%2e/b"))), "'..' segment"),
    ("empty-path-match", _inbound(_no_path), "give an exact path or a prefix"),
    ("port", _inbound(lambda r: r.operation.ports.append(0)), "port 0 is out of range"),
    ("header-uppercase", _inbound(lambda r: r.when.append(P.HeaderCondition(header="X-A", values=["1"]))), "X-A"),
    ("header-no-values", _inbound(lambda r: r.when.append(P.HeaderCondition(header="x-a"))), "at least one value"),
]


def _policy_id(snapshot: snapshot_pb2.Snapshot) -> None:
    snapshot.inbound.authorization_policies[0].id = "allow-web"


def _action(snapshot: snapshot_pb2.Snapshot) -> None:
    snapshot.inbound.authorization_policies[0].action = 5  # type: ignore[assignment]


def _peer_mode(snapshot: snapshot_pb2.Snapshot) -> None:
    snapshot.inbound.peer_authentication = 3  # type: ignore[assignment]


def _hash_header_without_hashing(snapshot: snapshot_pb2.Snapshot) -> None:
    snapshot.destinations[0].load_balancer = P.LOAD_BALANCER_RANDOM


INVALID += [
    ("policy-id", _policy_id, "is not '<namespace>/<name>'"),
    ("action", _action, "unknown action 5"),
    ("peer-mode", _peer_mode, "unknown peer authentication mode 3"),
    ("hash-header-without-hashing", _hash_header_without_hashing, "only the consistent-hash load balancer"),
]


@pytest.mark.parametrize(("edit", "reason"), [(e, r) for _, e, r in INVALID], ids=[i for i, _, _ in INVALID])
def test_each_invalid_field_is_rejected_with_its_reason_and_the_old_config_kept(edit: Edit, reason: str) -> None:
    store = ConfigStore()
    assert store.apply(_snapshot(version=1)) == (True, "")
    before = store.table
    bad = _snapshot(version=2)
    edit(bad)
    accepted, why = store.apply(bad)
    assert not accepted
    assert reason in why
    assert store.table is before
    assert store.rejected_total == 1
