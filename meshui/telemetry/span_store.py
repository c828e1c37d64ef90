"""Spans into the store, and trace summaries recomputed from them, without a model object per span.

On PostgreSQL a batch is streamed with ``COPY`` into a temporary table, then
moved into ``Span`` with ``INSERT … ON CONFLICT DO NOTHING`` (so a retried
batch stores nothing twice), and the touched traces' summaries are rebuilt by
one ``INSERT … SELECT … GROUP BY`` over all their stored spans. Elsewhere
(the embedded SQLite) the ORM does the same work in Python.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple

from django.db import connection
from django.db.models import Count, Max, Min, Q

from meshui.telemetry.models import Span, SpanStatus, TraceNamespace, TraceSummary


class SpanRow(NamedTuple):
    """One span as decoded, in ``Span``'s terms; times in microseconds since the epoch, JSON as text."""

    trace_id: str
    span_id: str
    service: str
    namespace: str
    operation: str
    start_us: int
    end_us: int
    parent_span_id: str = ""
    kind: int = 0
    status: int = 0
    status_message: str = ""
    attributes: str = "{}"
    events: str = "[]"
    resource: str = "{}"
    source_workload: str = ""
    destination_service: str = ""
    destination_workload: str = ""


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SUMMARY_FIELDS = [
    "root_service",
    "root_operation",
    "start",
    "end",
    "duration_us",
    "span_count",
    "error",
    "services",
    "updated_at",
]


def store(rows: Sequence[SpanRow]) -> int:
    """Insert ``rows`` (spans already stored are skipped) and recompute their traces' summaries; returns how
    many traces were touched. Runs inside the caller's transaction."""
    if not rows:
        return 0
    if connection.vendor == "postgresql":
        return _store_copy(rows)
    return _store_orm(rows)


# --- PostgreSQL --------------------------------------------------------------------------------------------

_CREATE_INCOMING = """
CREATE TEMPORARY TABLE IF NOT EXISTS telemetry_span_incoming (
    trace_id text, span_id text, service text, namespace text, operation text, start_us bigint, end_us bigint,
    parent_span_id text, kind smallint, status smallint, status_message text,
    attributes text, events text, resource text,
    source_workload text, destination_service text, destination_workload text
) ON COMMIT DELETE ROWS
"""
_COPY_INCOMING = "COPY telemetry_span_incoming (" + ", ".join(SpanRow._fields) + ") FROM STDIN"
# Times as exact integer arithmetic on microseconds (to_timestamp() goes through a double).
_MOVE_INCOMING = """
INSERT INTO telemetry_span (
    trace_id, span_id, parent_span_id, service, namespace, operation, kind, start, "end", duration_us,
    status, status_message, attributes, events, resource,
    source_workload, destination_service, destination_workload, received_at
)
SELECT trace_id, span_id, parent_span_id, service, namespace, operation, kind,
       'epoch'::timestamptz + start_us * interval '1 microsecond',
       'epoch'::timestamptz + end_us * interval '1 microsecond',
       end_us - start_us, status, status_message, attributes::jsonb, events::jsonb, resource::jsonb,
       source_workload, destination_service, destination_workload, now()
FROM telemetry_span_incoming
ON CONFLICT (trace_id, span_id) DO NOTHING
"""
_ADD_NAMESPACES = """
INSERT INTO telemetry_tracenamespace (trace_id, namespace)
SELECT DISTINCT trace_id, namespace FROM telemetry_span_incoming
ON CONFLICT (trace_id, namespace) DO NOTHING
"""
# The root is the span without a parent; when that span never reached us, the earliest one. Status 2 is
# SpanStatus.ERROR. Services sort by code point (COLLATE "C"), as Python sorts them.
_REBUILD_SUMMARIES = """
INSERT INTO telemetry_tracesummary (
    trace_id, root_service, root_operation, start, "end", duration_us, span_count, error, services, updated_at
)
SELECT trace_id,
       (array_agg(service ORDER BY parent_span_id <> '', start, id))[1],
       (array_agg(operation ORDER BY parent_span_id <> '', start, id))[1],
       min(start), max("end"),
       (extract(epoch FROM max("end") - min(start)) * 1000000)::bigint,
       count(*), bool_or(status = 2),
       jsonb_agg(DISTINCT service COLLATE "C" ORDER BY service COLLATE "C"), now()
FROM telemetry_span
WHERE trace_id = ANY(%s)
GROUP BY trace_id
ON CONFLICT (trace_id) DO UPDATE SET
    root_service = EXCLUDED.root_service, root_operation = EXCLUDED.root_operation,
    start = EXCLUDED.start, "end" = EXCLUDED."end", duration_us = EXCLUDED.duration_us,
    span_count = EXCLUDED.span_count, error = EXCLUDED.error, services = EXCLUDED.services,
    updated_at = EXCLUDED.updated_at
"""


def _store_copy(rows: Sequence[SpanRow]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(_CREATE_INCOMING)
        raw = cursor.cursor  # psycopg's own cursor, for COPY
        with raw.copy(_COPY_INCOMING) as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(_MOVE_INCOMING)
        cursor.execute(_ADD_NAMESPACES)
        # The ids as an array, not a subquery on the temporary table (which has no statistics): the
        # planner then estimates a few rows per id and reads them through the (trace_id, span_id) index.
        cursor.execute(_REBUILD_SUMMARIES, [sorted({row.trace_id for row in rows})])
        return int(cursor.rowcount)


# --- SQLite and others -------------------------------------------------------------------------------------


def _time(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


def epoch_us(moment: dt.datetime) -> int:
    """``moment`` in ``SpanRow``'s terms: whole microseconds since the epoch."""
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)


def _model(row: SpanRow) -> Span:
    return Span(
        trace_id=row.trace_id,
        span_id=row.span_id,
        parent_span_id=row.parent_span_id,
        service=row.service,
        namespace=row.namespace,
        operation=row.operation,
        kind=row.kind,
        start=_time(row.start_us),
        end=_time(row.end_us),
        duration_us=row.end_us - row.start_us,
        status=row.status,
        status_message=row.status_message,
        attributes=json.loads(row.attributes),
        events=json.loads(row.events),
        resource=json.loads(row.resource),
        source_workload=row.source_workload,
        destination_service=row.destination_service,
        destination_workload=row.destination_workload,
    )


def _store_orm(rows: Sequence[SpanRow]) -> int:
    trace_ids = sorted({row.trace_id for row in rows})
    Span.objects.bulk_create([_model(row) for row in rows], ignore_conflicts=True, batch_size=500)
    memberships = {(row.trace_id, row.namespace) for row in rows}
    TraceNamespace.objects.bulk_create(
        [TraceNamespace(trace_id=t, namespace=n) for t, n in sorted(memberships)], ignore_conflicts=True
    )
    totals = {
        row["trace_id"]: row
        for row in Span.objects.filter(trace_id__in=trace_ids)
        .values("trace_id")
        .annotate(
            first=Min("start"),
            last=Max("end"),
            count=Count("id"),
            errors=Count("id", filter=Q(status=SpanStatus.ERROR)),
        )
    }
    services: defaultdict[str, set[str]] = defaultdict(set)
    roots: dict[str, tuple[bool, dt.datetime, int, str, str]] = {}
    for trace_id, service, operation, parent, start, pk in Span.objects.filter(trace_id__in=trace_ids).values_list(
        "trace_id", "service", "operation", "parent_span_id", "start", "id"
    ):
        services[trace_id].add(service)
        candidate = (bool(parent), start, pk, service, operation)
        current = roots.get(trace_id)
        if current is None or candidate[:3] < current[:3]:
            roots[trace_id] = candidate
    summaries = []
    for trace_id, row in totals.items():
        root_service, root_operation = roots[trace_id][3:]
        summaries.append(
            TraceSummary(
                trace_id=trace_id,
                root_service=root_service,
                root_operation=root_operation,
                start=row["first"],
                end=row["last"],
                duration_us=(row["last"] - row["first"]) // dt.timedelta(microseconds=1),
                span_count=row["count"],
                error=row["errors"] > 0,
                services=sorted(services[trace_id]),
            )
        )
    TraceSummary.objects.bulk_create(
        summaries, update_conflicts=True, unique_fields=["trace_id"], update_fields=_SUMMARY_FIELDS
    )
    return len(summaries)
