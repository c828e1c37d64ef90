"""Retention removes exactly what is expired: by age, then the oldest beyond the size bound."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from meshui.celery import app
from meshui.telemetry.actions import do_prune_spans, do_store_spans
from meshui.telemetry.models import Span, TraceSummary
from meshui.telemetry.span_store import SpanRow, epoch_us

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(hours=24)


def _span(trace: int, span: int, hours_ago: float) -> SpanRow:
    start = epoch_us(NOW - dt.timedelta(hours=hours_ago))
    return SpanRow(
        trace_id=f"{trace:032x}",
        span_id=f"{span:016x}",
        service="web",
        namespace="",
        operation="GET /",
        start_us=start,
        end_us=start + 5000,
    )


def _stored() -> list[tuple[int, int]]:
    return sorted((int(t, 16), int(s, 16)) for t, s in Span.objects.values_list("trace_id", "span_id"))


@pytest.mark.django_db
def test_spans_older_than_the_window_go_and_their_traces_with_them() -> None:
    do_store_spans(
        [
            _span(1, 1, hours_ago=30),  # trace 1: wholly expired
            _span(1, 2, hours_ago=25),
            _span(2, 1, hours_ago=24.5),  # trace 2: straddles the cutoff
            _span(2, 2, hours_ago=23.5),
            _span(3, 1, hours_ago=24),  # exactly at the cutoff: kept
            _span(4, 1, hours_ago=1),
        ]
    )
    pruned = do_prune_spans(NOW, DAY, max_spans=1000)
    assert (pruned.spans, pruned.traces) == (3, 1)
    assert _stored() == [(2, 2), (3, 1), (4, 1)]
    assert sorted(int(t, 16) for t in TraceSummary.objects.values_list("trace_id", flat=True)) == [2, 3, 4]


@pytest.mark.django_db
def test_beyond_the_size_bound_the_oldest_spans_go_first() -> None:
    do_store_spans([_span(10 + i, 1, hours_ago=10 - i) for i in range(5)])
    pruned = do_prune_spans(NOW, DAY, max_spans=3, chunk=1)
    assert pruned.spans == 2
    assert _stored() == [(12, 1), (13, 1), (14, 1)]
    assert TraceSummary.objects.count() == 3


@pytest.mark.django_db
def test_nothing_expired_means_nothing_removed() -> None:
    do_store_spans([_span(20, 1, hours_ago=2)])
    assert do_prune_spans(NOW, DAY, max_spans=10).spans == 0
    assert _stored() == [(20, 1)]


def test_celery_beat_runs_a_registered_retention_task(settings: Any) -> None:
    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "meshui.telemetry.prune_spans" in scheduled
    assert scheduled <= set(app.tasks)
