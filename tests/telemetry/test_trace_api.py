"""GET /api/v1/traces/: filters, sorting, cursors and namespace scoping; GET /api/v1/traces/{id}/: tree and path."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from meshui.catalog.models import Namespace
from meshui.telemetry import filters
from meshui.telemetry.actions import do_store_spans
from meshui.telemetry.models import SpanStatus
from meshui.telemetry.span_store import SpanRow, epoch_us

T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
ClientFor = Callable[[User], APIClient]


def _span(
    trace: int,
    span: int,
    *,
    parent: int = 0,
    service: str = "web",
    namespace: str = "alpha",
    operation: str = "GET /",
    start_ms: int = 0,
    end_ms: int = 10,
    error: bool = False,
    attributes: dict[str, Any] | None = None,
) -> SpanRow:
    t0_us = epoch_us(T0)
    return SpanRow(
        trace_id=f"{trace:032x}",
        span_id=f"{span:016x}",
        parent_span_id=f"{parent:016x}" if parent else "",
        service=service,
        namespace=namespace,
        operation=operation,
        start_us=t0_us + start_ms * 1000,
        end_us=t0_us + end_ms * 1000,
        status=SpanStatus.ERROR if error else SpanStatus.UNSET,
        attributes=json.dumps(attributes or {}),
    )


@pytest.fixture
def traces(alpha: Namespace, beta: Namespace) -> None:
    do_store_spans(
        [
            # 1: web → catalog → inventory, 100 ms, in alpha
            _span(1, 1, start_ms=0, end_ms=100, attributes={"http.response.status_code": 200}),
            _span(1, 2, parent=1, service="catalog", operation="GET catalog", start_ms=5, end_ms=95),
            _span(1, 3, parent=2, service="inventory", operation="GET stock", start_ms=20, end_ms=70),
            # 2: web → reviews failing, 40 ms, later, in alpha
            _span(2, 1, start_ms=1000, end_ms=1040, error=True, attributes={"http.response.status_code": 503}),
            _span(2, 2, parent=1, service="reviews", start_ms=1005, end_ms=1035, error=True),
            # 3: beta only, 5 ms, latest
            _span(
                3,
                1,
                service="billing",
                namespace="beta",
                start_ms=2000,
                end_ms=2005,
                attributes={"messaging.system": "kafka", "retry": True},
            ),
            # 4: crosses alpha → beta
            _span(4, 1, start_ms=3000, end_ms=3300),
            _span(4, 2, parent=1, service="billing", namespace="beta", start_ms=3010, end_ms=3290),
        ]
    )


def _ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return [int(t["trace_id"], 16) for t in response.json()["results"]]


@pytest.mark.django_db
def test_the_newest_traces_come_first_with_their_summaries(traces: None, admin_client: APIClient) -> None:
    response = admin_client.get("/api/v1/traces/")
    assert _ids(response) == [4, 3, 2, 1]
    first = response.json()["results"][-1]
    assert first["root_service"] == "web"
    assert first["services"] == ["catalog", "inventory", "web"]
    assert (first["span_count"], first["duration_us"], first["error"]) == (3, 100_000, False)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("service=catalog", [1]),
        ("service=billing", [4, 3]),
        ("service=web&operation=GET%20/", [4, 2, 1]),
        ("service=catalog&operation=GET%20/", []),  # service and operation must match one span
        ("tags=http.response.status_code=503", [2]),
        ("tags=http.response.status_code=200&service=web", [1]),
        ("tags=messaging.system=kafka", [3]),
        ("tags=retry=true", [3]),
        ("tags=retry=false", []),
        ("tags=messaging.system=kafka,retry=true", [3]),
        ("errors=true", [2]),
        ("errors=false", [4, 3, 1]),
        ("min_duration=50ms", [4, 1]),
        ("max_duration=40ms", [3, 2]),
        ("min_duration=40000&max_duration=0.1s", [2, 1]),
        ("start=2026-11-26T12:00:01Z&end=2026-11-26T12:00:03Z", [3, 2]),
        ("sort=duration_us", [3, 2, 1, 4]),
        ("sort=-span_count", [1, 2, 4, 3]),
        ("namespace=beta", [4, 3]),  # a trace with a span there, wherever it started
        ("namespace=alpha&service=billing", [4]),
        ("namespace=gamma", []),
    ],
)
@pytest.mark.parametrize("candidate_spans", [10_000, 1], ids=["ids-first", "subquery"])
def test_filters_apply_to_whole_traces(
    traces: None,
    admin_client: APIClient,
    query: str,
    expected: list[int],
    candidate_spans: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Both ways of finding the traces of matching spans: their ids first, or a subquery when many match.
    monkeypatch.setattr(filters, "_CANDIDATE_SPANS", candidate_spans)
    assert _ids(admin_client.get(f"/api/v1/traces/?{query}")) == expected


@pytest.mark.django_db
def test_sorting_happens_before_the_limit_and_cursors_walk_the_rest(traces: None, admin_client: APIClient) -> None:
    page = admin_client.get("/api/v1/traces/?sort=-duration_us&limit=2")
    assert _ids(page) == [4, 1]
    follow = page.json()["next"]
    assert follow
    assert "cursor=" in follow
    assert _ids(admin_client.get(follow)) == [2, 3]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("min_duration=fast", "min_duration"),
        ("tags=novalue", "tags"),
        ("tags=a__contains=1", "tags"),
        ("start=yesterday", "start"),
        ("errors=maybe", "errors"),
    ],
)
def test_bad_parameters_are_field_level_400s(admin_client: APIClient, query: str, field: str, db: None) -> None:
    response = admin_client.get(f"/api/v1/traces/?{query}")
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.django_db
def test_a_viewer_sees_only_traces_that_touch_their_namespaces(
    traces: None, alpha: Namespace, beta: Namespace, make_user: Any, client_for: ClientFor
) -> None:
    alpha_viewer = client_for(make_user("ann", "viewer", alpha))
    beta_viewer = client_for(make_user("bob", "viewer", beta))
    assert _ids(alpha_viewer.get("/api/v1/traces/")) == [4, 2, 1]
    assert _ids(beta_viewer.get("/api/v1/traces/")) == [4, 3]
    assert beta_viewer.get(f"/api/v1/traces/{1:032x}/").status_code == 404
    # A shared trace shows each viewer only their own namespaces' spans.
    shared = beta_viewer.get(f"/api/v1/traces/{4:032x}/").json()
    assert [s["service"] for s in shared["spans"]] == ["billing"]
    nobody = client_for(make_user("eve"))
    assert _ids(nobody.get("/api/v1/traces/")) == []


@pytest.mark.django_db
def test_anonymous_callers_are_refused(traces: None) -> None:
    assert APIClient().get("/api/v1/traces/").status_code in (401, 403)


@pytest.mark.django_db
def test_a_trace_comes_with_its_tree_and_critical_path(traces: None, admin_client: APIClient) -> None:
    response = admin_client.get(f"/api/v1/traces/{1:032x}/")
    assert response.status_code == 200, response.content
    body = response.json()
    spans = {int(s["span_id"], 16): s for s in body["spans"]}
    assert [int(r, 16) for r in body["roots"]] == [1]
    assert [int(c, 16) for c in spans[1]["children"]] == [2]
    assert [spans[i]["depth"] for i in (1, 2, 3)] == [0, 1, 2]
    path = [(int(s["span_id"], 16), s["start_us"], s["end_us"]) for s in body["critical_path"]]
    assert path == [
        (1, 0, 5_000),
        (2, 5_000, 20_000),
        (3, 20_000, 70_000),
        (2, 70_000, 95_000),
        (1, 95_000, 100_000),
    ]
    assert body["trace"]["span_count"] == 3


@pytest.mark.django_db
def test_an_unknown_trace_is_404(admin_client: APIClient) -> None:
    assert admin_client.get(f"/api/v1/traces/{99:032x}/").status_code == 404
