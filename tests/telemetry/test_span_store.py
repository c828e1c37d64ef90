"""The span store's write path (COPY and SQL summaries on PostgreSQL, the ORM elsewhere) gives the same rows."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from meshui.telemetry.actions import do_store_spans
from meshui.telemetry.models import Span, SpanStatus, TraceNamespace, TraceSummary
from meshui.telemetry.span_store import SpanRow, epoch_us

T0 = epoch_us(dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.UTC)) + 123  # not on a millisecond


def _row(span: int, service: str, *, parent: int = 0, start: int = 0, end: int = 10, **extra: object) -> SpanRow:
    return SpanRow(
        trace_id=f"{1:032x}",
        span_id=f"{span:016x}",
        parent_span_id=f"{parent:016x}" if parent else "",
        service=service,
        namespace="shop",
        operation=f"op{span}",
        start_us=T0 + start,
        end_us=T0 + end,
        **extra,  # type: ignore[arg-type]
    )


@pytest.mark.django_db
def test_every_column_is_stored_as_decoded() -> None:
    attributes = {"http.response.status_code": 503, "ok": False, "ratio": 0.5, "tags": ["a", "b"], "e": "é"}
    row = _row(
        1,
        "web",
        kind=2,
        status=SpanStatus.ERROR,
        status_message="upstream\treset\n",
        attributes=json.dumps(attributes),
        events=json.dumps([{"name": "retry", "time_unix_nano": 5, "attributes": {}}]),
        resource=json.dumps({"service.name": "web"}),
        source_workload="web-v1",
        destination_service="catalog.shop",
        destination_workload="catalog-v1",
    )
    assert do_store_spans([row]) == 1
    span = Span.objects.get()
    assert span.start == dt.datetime(2026, 12, 2, 9, 30, 0, 123, tzinfo=dt.UTC)
    assert (span.duration_us, span.end - span.start) == (10, dt.timedelta(microseconds=10))
    assert (span.kind, span.status, span.status_message) == (2, SpanStatus.ERROR, "upstream\treset\n")
    assert span.attributes == attributes
    assert span.events == [{"name": "retry", "time_unix_nano": 5, "attributes": {}}]
    assert span.resource == {"service.name": "web"}
    assert (span.source_workload, span.destination_service, span.destination_workload) == (
        "web-v1",
        "catalog.shop",
        "catalog-v1",
    )
    assert list(TraceNamespace.objects.values_list("namespace", flat=True)) == ["shop"]


@pytest.mark.django_db
def test_storing_a_batch_twice_in_one_transaction_counts_it_once() -> None:
    batch = [_row(1, "web", end=40), _row(2, "catalog", parent=1, start=5, end=30)]
    do_store_spans(batch)
    do_store_spans(batch)
    summary = TraceSummary.objects.get()
    assert (Span.objects.count(), summary.span_count, summary.duration_us) == (2, 2, 40)


@pytest.mark.django_db
def test_without_a_parentless_span_the_earliest_is_the_root_and_services_sort_by_code_point() -> None:
    do_store_spans([_row(3, "alpha", parent=9, start=20), _row(4, "Zeta", parent=9, start=10, end=50)])
    summary = TraceSummary.objects.get()
    assert (summary.root_service, summary.root_operation) == ("Zeta", "op4")
    assert summary.services == ["Zeta", "alpha"]
    assert (summary.start, summary.duration_us) == (Span.objects.get(span_id=f"{4:016x}").start, 40)
    do_store_spans([_row(5, "web", start=30)])  # the real root arrives later
    assert TraceSummary.objects.get().root_service == "web"
