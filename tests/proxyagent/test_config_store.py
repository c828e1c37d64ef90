"""The agent applies a snapshot whole or not at all, and never goes back."""

from __future__ import annotations

import pytest

from proxyagent.config_store import ConfigStore
from proxyagent.protocol.v1 import snapshot_pb2
from proxyagent.routing import LoadBalancerKind


def _snapshot(version: int, *endpoints: tuple[str, int], service: str = "reviews") -> snapshot_pb2.Snapshot:
    return snapshot_pb2.Snapshot(
        version=version,
        destinations=[
            snapshot_pb2.Destination(
                service=service,
                namespace="shop",
                load_balancer=snapshot_pb2.LOAD_BALANCER_LEAST_REQUEST,
                endpoints=[snapshot_pb2.Endpoint(address=a, port=p, workload="reviews-v1") for a, p in endpoints],
            )
        ],
    )


def test_it_applies_a_valid_snapshot() -> None:
    store = ConfigStore()
    assert store.apply(_snapshot(3, ("127.0.0.1", 15006))) == (True, "")
    destination = store.table.lookup("reviews", own_namespace="shop")
    assert destination is not None
    assert destination.load_balancer is LoadBalancerKind.LEAST_REQUEST
    assert [(e.address, e.port, e.weight) for e in destination.endpoints] == [("127.0.0.1", 15006, 1)]
    assert store.has_config
    assert store.applied_total == 1


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (_snapshot(5, ("127.0.0.1", 0)), "port 0 is out of range"),
        (_snapshot(5, ("not an address", 80)), "invalid address"),
        (_snapshot(5, ("127.0.0.1", 80), service="Bad_Name"), "must be DNS labels"),
        (snapshot_pb2.Snapshot(version=5, destinations=[_snapshot(1).destinations[0]] * 2), "listed twice"),
        (_snapshot(1, ("127.0.0.1", 80)), "older than applied"),
    ],
)
def test_it_rejects_a_bad_snapshot_and_keeps_the_old_one(bad: snapshot_pb2.Snapshot, reason: str) -> None:
    store = ConfigStore()
    store.apply(_snapshot(2, ("127.0.0.1", 15006)))
    before = store.table
    accepted, why = store.apply(bad)
    assert not accepted
    assert reason in why
    assert store.table is before
    assert store.rejected_total == 1


def test_the_same_version_again_is_accepted_without_change() -> None:
    store = ConfigStore()
    store.apply(_snapshot(2, ("127.0.0.1", 15006)))
    before = store.table
    assert store.apply(_snapshot(2, ("10.0.0.9", 1))) == (True, "")
    assert store.table is before
    assert store.applied_total == 1


@pytest.mark.parametrize(
    ("host", "found"),
    [
        ("reviews", True),
        ("reviews:80", True),
        ("reviews.shop", True),
        ("REVIEWS.shop.svc.cluster.local", True),
        ("reviews.other", False),
        ("ratings", False),
        ("reviews.shop.example", False),
    ],
)
def test_hosts_resolve_to_destinations(host: str, found: bool) -> None:
    store = ConfigStore()
    store.apply(_snapshot(1, ("127.0.0.1", 15006)))
    assert (store.table.lookup(host, own_namespace="shop") is not None) is found


def test_a_new_epoch_accepts_a_lower_version() -> None:
    store = ConfigStore()
    store.apply(_snapshot(9, ("127.0.0.1", 15006)))
    assert store.apply(_snapshot(2, ("127.0.0.1", 15007)), new_epoch=True) == (True, "")
    assert store.version == 2
    destination = store.table.lookup("reviews", own_namespace="shop")
    assert destination is not None
    assert destination.endpoints[0].port == 15007


def _two_services(version: int, reviews_port: int) -> snapshot_pb2.Snapshot:
    snapshot = _snapshot(version, ("10.0.0.1", reviews_port))
    snapshot.destinations.extend(_snapshot(version, ("10.0.0.2", 80), service="ratings").destinations)
    return snapshot


def test_a_destination_a_push_leaves_as_it_was_is_kept_not_validated_again() -> None:
    store = ConfigStore()
    store.apply(_two_services(1, 8080))
    reviews, ratings = store.table.destinations["reviews.shop"], store.table.destinations["ratings.shop"]

    assert store.apply(_two_services(2, 9090)) == (True, "")

    # The same object: the routers keep what they built for it (balancer plans, outlier state) as they were.
    assert store.table.destinations["ratings.shop"] is ratings
    changed = store.table.destinations["reviews.shop"]
    assert changed is not reviews
    assert [e.port for e in changed.endpoints] == [9090]


def test_a_rejected_push_does_not_change_what_later_pushes_are_compared_with() -> None:
    store = ConfigStore()
    store.apply(_two_services(1, 8080))
    ratings = store.table.destinations["ratings.shop"]
    bad = _two_services(2, 0)  # reviews' port 0 is refused; ratings is unchanged

    accepted, why = store.apply(bad)
    assert not accepted
    assert "port 0 is out of range" in why

    assert store.apply(_two_services(3, 8081)) == (True, "")
    assert store.table.destinations["ratings.shop"] is ratings
    # A destination repeated within one snapshot is refused even when it is one the agent already holds.
    twice = snapshot_pb2.Snapshot(version=4, destinations=[_two_services(4, 8081).destinations[1]] * 2)
    accepted, why = store.apply(twice)
    assert not accepted
    assert "listed twice" in why
