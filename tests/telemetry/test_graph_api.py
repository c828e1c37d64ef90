"""GET /api/v1/graph/: edges and nodes from known buckets, percentiles from histograms, health, scoping."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from meshui.catalog.models import Namespace
from meshui.telemetry.actions import do_add_edge_increments
from meshui.telemetry.histograms import percentile, percentiles
from meshui.telemetry.models import LATENCY_BOUNDS_S
from meshui.telemetry.otlp_metrics import EdgeIncrement
from meshui.telemetry.serializers import (
    GraphEdgeSerializer,
    GraphNodeSerializer,
    GraphSerializer,
    GraphWindowSerializer,
)

AT = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
ClientFor = Callable[[User], APIClient]


def _latency(**by_bound: int) -> list[int]:
    counts = [0] * (len(LATENCY_BOUNDS_S) + 1)
    for bound, count in by_bound.items():
        counts[LATENCY_BOUNDS_S.index(float(bound.lstrip("b").replace("_", ".")))] += count
    return counts


def _add(
    seconds_ago: int,
    source: tuple[str, str, str],  # (service, workload, namespace)
    destination: tuple[str, str],  # (service.namespace, workload)
    status_class: str,
    *,
    requests: int,
    errors: int = 0,
    denied: int = 0,
    mtls: int = 0,
    latency: list[int],
    reporter: str = "outbound",
) -> None:
    service, workload, namespace = source
    start = AT - dt.timedelta(seconds=seconds_ago)
    key = (start, reporter, namespace, service, workload, destination[0], destination[1], status_class)
    increment = EdgeIncrement(
        requests=requests,
        errors=errors,
        response_bytes=requests * 100,
        denied=denied,
        mtls=mtls,
        latency_counts=latency,
    )
    do_add_edge_increments({key: increment})


@pytest.fixture
def mesh_traffic(alpha: Namespace, beta: Namespace) -> None:
    web, reviews = ("web", "web-v1", "alpha"), ("reviews.alpha", "reviews-v1")
    # 100 requests web → reviews over the last minute: 90 fast, 10 slow failures.
    _add(60, web, reviews, "2xx", requests=60, mtls=60, latency=_latency(b0_0025=60))
    _add(30, web, reviews, "2xx", requests=30, denied=6, latency=_latency(b0_0025=30))
    _add(30, web, reviews, "5xx", requests=10, errors=10, mtls=10, latency=_latency(b0_25=10))
    # Its inbound report of the same calls: not counted twice.
    _add(30, web, reviews, "2xx", requests=90, latency=_latency(b0_0025=90), reporter="inbound")
    # reviews → ratings in beta, healthy.
    _add(20, ("reviews", "reviews-v1", "alpha"), ("ratings.beta", "ratings-v1"), "2xx", requests=50,
         latency=_latency(b0_005=50))  # fmt: skip
    # An hour ago: outside a 5 minute window, inside a past one.
    _add(3600, web, reviews, "2xx", requests=1000, latency=_latency(b0_001=1000))


def _graph(client: APIClient, query: str = "") -> dict[str, Any]:
    response = client.get(f"/api/v1/graph/?at={AT.isoformat().replace('+00:00', 'Z')}&{query}")
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.django_db
def test_edges_carry_rates_errors_and_histogram_percentiles(mesh_traffic: None, admin_client: APIClient) -> None:
    graph = _graph(admin_client, "window=5m")
    assert graph["window"]["seconds"] == 300
    assert graph["window"]["resolution_s"] == 10
    edges = {(e["source"], e["destination"]): e for e in graph["edges"]}
    assert set(edges) == {("web.alpha", "reviews.alpha"), ("reviews.alpha", "ratings.beta")}
    web_reviews = edges[("web.alpha", "reviews.alpha")]
    assert web_reviews["requests"] == 100, "the callee's own report is not added again"
    assert web_reviews["rps"] == pytest.approx(100 / 300, abs=1e-3)
    assert web_reviews["error_rate"] == pytest.approx(0.10)
    assert web_reviews["health"] == "failing"
    # 90 in (1 ms, 2.5 ms], 10 in (100 ms, 250 ms]: interpolated inside the bucket holding each rank.
    assert web_reviews["p50_ms"] == pytest.approx(1 + 1.5 * 50 / 90, abs=1e-3)
    assert web_reviews["p95_ms"] == pytest.approx(100 + 150 * 5 / 10, abs=1e-3)
    assert web_reviews["p99_ms"] == pytest.approx(100 + 150 * 9 / 10, abs=1e-3)
    assert web_reviews["bytes"] == 10_000
    assert web_reviews["mtls_share"] == 0.7, "70 of the 100 calls went over mutual TLS"
    assert web_reviews["denied_rps"] == pytest.approx(6 / 300, abs=1e-3)
    assert edges[("reviews.alpha", "ratings.beta")]["health"] == "healthy"
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert set(nodes) == {"web.alpha", "reviews.alpha", "ratings.beta"}
    assert nodes["web.alpha"]["health"] == "idle", "nothing calls web here"
    assert nodes["reviews.alpha"]["requests"] == 100


@pytest.mark.django_db
def test_the_graph_has_exactly_the_documented_fields(mesh_traffic: None, admin_client: APIClient) -> None:
    graph = _graph(admin_client, "window=5m")
    assert set(graph) == set(GraphSerializer().fields)
    assert set(graph["window"]) == set(GraphWindowSerializer().fields)
    assert {frozenset(node) for node in graph["nodes"]} == {frozenset(GraphNodeSerializer().fields)}
    assert {frozenset(edge) for edge in graph["edges"]} == {frozenset(GraphEdgeSerializer().fields)}
    assert graph["window"]["end"] == AT.isoformat().replace("+00:00", "Z")
    assert graph["health_thresholds"] == {"degraded": 0.001, "failing": 0.10}


@pytest.mark.django_db
def test_health_thresholds_come_from_the_settings(mesh_traffic: None, admin_client: APIClient, settings: Any) -> None:
    settings.MESH_HEALTH_DEGRADED_ERROR_RATE = 0.02
    settings.MESH_HEALTH_FAILING_ERROR_RATE = 0.5
    assert _graph(admin_client, "window=5m")["health_thresholds"] == {"degraded": 0.02, "failing": 0.5}


@pytest.mark.django_db
def test_a_past_window_replays_the_graph_then(mesh_traffic: None, admin_client: APIClient) -> None:
    past = AT - dt.timedelta(minutes=59)
    response = admin_client.get(f"/api/v1/graph/?window=2m&at={past.isoformat().replace('+00:00', 'Z')}")
    edges = response.json()["edges"]
    assert [(e["source"], e["requests"]) for e in edges] == [("web.alpha", 1000)]
    assert edges[0]["p50_ms"] == pytest.approx(0.5 + 0.5 * 500 / 1000, abs=1e-3)


@pytest.mark.django_db
def test_workload_grouping(mesh_traffic: None, admin_client: APIClient) -> None:
    edges = _graph(admin_client, "window=5m&group=workload")["edges"]
    assert {(e["source"], e["destination"]) for e in edges} == {
        ("web-v1.alpha", "reviews-v1.alpha"),
        ("reviews-v1.alpha", "ratings-v1.beta"),
    }


@pytest.mark.django_db
def test_viewers_see_the_edges_that_touch_their_namespaces(
    mesh_traffic: None, alpha: Namespace, beta: Namespace, make_user: Any, client_for: ClientFor
) -> None:
    beta_viewer = client_for(make_user("bob", "viewer", beta))
    edges = _graph(beta_viewer, "window=5m")["edges"]
    assert [(e["source"], e["destination"]) for e in edges] == [("reviews.alpha", "ratings.beta")]
    refused = beta_viewer.get("/api/v1/graph/?namespace=alpha")
    assert refused.status_code == 400
    assert "namespace" in refused.json()
    only_alpha = _graph(client_for(make_user("ann", "viewer", alpha)), "window=5m&namespace=alpha")["edges"]
    assert len(only_alpha) == 2, "both edges start in alpha"


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["window=5x", "window=0s", "window=30d", "group=pods", "at=soon"])
def test_bad_graph_parameters_are_field_level_400s(admin_client: APIClient, query: str) -> None:
    response = admin_client.get(f"/api/v1/graph/?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in response.json()


def test_percentiles_of_an_empty_histogram_and_of_the_unbounded_bucket() -> None:
    assert percentile([0] * (len(LATENCY_BOUNDS_S) + 1), 0.5) is None
    assert percentile([0] * len(LATENCY_BOUNDS_S) + [3], 0.99) == LATENCY_BOUNDS_S[-1]


def test_percentiles_in_one_pass_equal_each_percentile_alone() -> None:
    rng = random.Random(3)  # noqa: S311 - test data, not secrets
    quantiles = (0.5, 0.95, 0.99)
    histograms = [[0] * (len(LATENCY_BOUNDS_S) + 1), [0] * len(LATENCY_BOUNDS_S) + [5], [7] + [0] * 15]
    histograms += [[rng.choice((0, 0, 1, 3, 40)) for _ in range(len(LATENCY_BOUNDS_S) + 1)] for _ in range(200)]
    for counts in histograms:
        assert percentiles(counts, quantiles) == [percentile(counts, q) for q in quantiles], counts
