"""The span store's write path (COPY and SQL summaries on PostgreSQL, the ORM elsewhere) gives the same rows."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import pytest
from django.db import connection, connections, transaction

from meshui.telemetry import span_store
from meshui.telemetry.actions import do_store_spans
from meshui.telemetry.models import Span, SpanStatus, TraceSummary
from meshui.telemetry.span_store import SpanRow, epoch_us

DEADLINE_S = 20.0
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
    assert TraceSummary.objects.get().namespaces == {"shop": True}


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


def _blocked_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return bool(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "second_batch",
    [
        # A retried span and a new one: the second writer waits at the span's unique index.
        [(2, "catalog", 1, 5, 30), (3, "Zeta", 2, 0, 90)],
        # Only a new span: it waits for the first writer's summary row, then adds to its committed version.
        [(3, "Zeta", 2, 0, 90)],
    ],
    ids=["retried-span", "new-spans-only"],
)
def test_two_writers_on_one_trace_merge_into_one_summary(second_batch: list[tuple[int, str, int, int, int]]) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers run on PostgreSQL only")
    first_stored, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first_writer() -> None:
        try:
            with transaction.atomic():
                span_store.store([_row(1, "web", end=40), _row(2, "catalog", parent=1, start=5, end=30)])
                first_stored.set()
                assert release.wait(DEADLINE_S)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    def second_writer() -> None:
        try:
            do_store_spans([_row(n, svc, parent=p, start=a, end=b) for n, svc, p, a, b in second_batch])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first_writer), threading.Thread(target=second_writer)]
    threads[0].start()
    assert first_stored.wait(DEADLINE_S)
    threads[1].start()
    deadline = time.monotonic() + DEADLINE_S
    while not _blocked_on_a_lock():
        assert time.monotonic() < deadline, "the second writer never waited for the first"
        time.sleep(0.01)  # polling interval, bounded by the deadline
    release.set()
    for thread in threads:
        thread.join(DEADLINE_S)
    assert not errors, errors
    summary = TraceSummary.objects.get()
    assert (Span.objects.count(), summary.span_count, summary.duration_us) == (3, 3, 90)
    assert (summary.root_service, summary.services) == ("web", ["Zeta", "catalog", "web"])
