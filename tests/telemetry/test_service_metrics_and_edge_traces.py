"""GET /api/v1/services/{id}/metrics/ and GET /api/v1/edges/{src}/{dst}/traces/."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from meshui.catalog.models import Namespace, Service
from meshui.telemetry.actions import do_add_edge_increments, do_store_spans
from meshui.telemetry.models import LATENCY_BOUNDS_S
from meshui.telemetry.otlp_metrics import EdgeIncrement, bucket_start
from meshui.telemetry.span_store import SpanRow, epoch_us

ClientFor = Callable[[User], APIClient]


def _bucket(seconds_ago: int, reporter: str, source: tuple[str, str, str], destination: str, requests: int,
            errors: int = 0, latency_sum_s: float = 0.0, denied: int = 0) -> None:  # fmt: skip
    now_ns = int((timezone.now() - dt.timedelta(seconds=seconds_ago)).timestamp() * 1e9)
    counts = [0] * (len(LATENCY_BOUNDS_S) + 1)
    counts[LATENCY_BOUNDS_S.index(0.01)] = requests
    service, workload, namespace = source
    key = (bucket_start(now_ns, 10), reporter, namespace, service, workload, destination, "", "2xx")
    increment = EdgeIncrement(
        requests=requests, errors=errors, denied=denied, latency_sum_s=latency_sum_s, latency_counts=counts
    )
    do_add_edge_increments({key: increment})


@pytest.fixture
def reviews(alpha: Namespace) -> Service:
    return Service.objects.create(namespace=alpha, name="reviews")


@pytest.mark.django_db
def test_a_service_has_inbound_and_outbound_series(reviews: Service, admin_client: APIClient) -> None:
    # 60 requests of 8 ms each: 0.48 s of requests in a 60 s step, 0.008 in flight on average.
    _bucket(30, "inbound", ("", "web-v1", "alpha"), "reviews.alpha", 60, errors=6, latency_sum_s=0.48)
    _bucket(30, "outbound", ("reviews", "reviews-v1", "alpha"), "ratings.alpha", 20)
    _bucket(30, "outbound", ("web", "web-v1", "alpha"), "reviews.alpha", 60)  # web's, not reviews'
    response = admin_client.get(f"/api/v1/services/{reviews.pk}/metrics/?window=5m&step=1m")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["service"] == "reviews.alpha"
    assert (body["step_s"], len(body["inbound"]), len(body["outbound"])) == (60, 5, 5)
    assert sum(p["requests"] for p in body["inbound"]) == 60
    assert sum(p["requests"] for p in body["outbound"]) == 20
    busy = next(p for p in body["inbound"] if p["requests"])
    assert busy["rps"] == pytest.approx(1.0)
    assert busy["error_rate"] == pytest.approx(0.1)
    assert 5 < busy["p50_ms"] <= 10
    assert busy["in_flight"] == pytest.approx(0.008)
    idle = [p for p in body["inbound"] if not p["requests"]]
    assert all(p["p99_ms"] is None for p in idle)
    assert all(p["in_flight"] == 0 for p in idle)
    assert body["denied_callers"] == []


@pytest.mark.django_db
def test_a_service_lists_the_callers_refused_most(reviews: Service, admin_client: APIClient) -> None:
    _bucket(30, "inbound", ("", "batch-v1", "alpha"), "reviews.alpha", 30, denied=30)
    _bucket(40, "inbound", ("", "batch-v1", "alpha"), "reviews.alpha", 6, denied=6)
    _bucket(30, "inbound", ("", "web-v1", "alpha"), "reviews.alpha", 50, denied=3)
    _bucket(30, "inbound", ("", "ratings-v1", "alpha"), "reviews.alpha", 10)
    _bucket(30, "outbound", ("reviews", "reviews-v1", "alpha"), "ratings.alpha", 20, denied=5)  # its own calls
    body = admin_client.get(f"/api/v1/services/{reviews.pk}/metrics/?window=5m&step=1m").json()
    assert body["denied_callers"] == [
        {"source_workload": "batch-v1", "denied": 36, "denied_rps": 0.12},
        {"source_workload": "web-v1", "denied": 3, "denied_rps": 0.01},
    ]


@pytest.mark.django_db
def test_service_metrics_are_scoped_and_validated(
    reviews: Service, beta: Namespace, make_user: Any, client_for: ClientFor, admin_client: APIClient
) -> None:
    outsider = client_for(make_user("bob", "viewer", beta))
    assert outsider.get(f"/api/v1/services/{reviews.pk}/metrics/").status_code == 404
    bad = admin_client.get(f"/api/v1/services/{reviews.pk}/metrics/?window=5m&step=10m")
    assert bad.status_code == 400
    assert "step" in bad.json()


def _span(trace: int, span: int, service: str, source_workload: str, destination: str, namespace: str) -> SpanRow:
    start_us = epoch_us(timezone.now() - dt.timedelta(minutes=1))
    return SpanRow(
        trace_id=f"{trace:032x}", span_id=f"{span:016x}", service=service, namespace=namespace, operation="GET",
        start_us=start_us, end_us=start_us + 3000, source_workload=source_workload, destination_service=destination,
    )  # fmt: skip


@pytest.mark.django_db
def test_an_edge_links_to_the_traces_that_crossed_it(
    alpha: Namespace, beta: Namespace, admin_client: APIClient, make_user: Any, client_for: ClientFor
) -> None:
    do_store_spans(
        [
            _span(1, 1, "web", "web-v1", "reviews.alpha", "alpha"),
            _span(2, 1, "web", "web-v1", "ratings.alpha", "alpha"),
            _span(3, 1, "catalog", "catalog-v1", "reviews.alpha", "alpha"),
            _span(4, 1, "web", "web-v1", "reviews.alpha", "beta"),  # web in another namespace
        ]
    )

    def traces(client: APIClient, source: str) -> list[int]:
        response = client.get(f"/api/v1/edges/{source}/reviews.alpha/traces/?window=15m")
        assert response.status_code == 200, response.content
        return sorted(int(t["trace_id"], 16) for t in response.json()["results"])

    assert traces(admin_client, "web.alpha") == [1]
    assert traces(admin_client, "web-v1.alpha") == [1], "a workload node works too"
    assert traces(client_for(make_user("bob", "viewer", beta)), "web.alpha") == []
    assert admin_client.get("/api/v1/edges/web.alpha/reviews.alpha/traces/?window=forever").status_code == 400
