"""Spans into the store, and trace summaries recomputed from them, without a model object per span.

On PostgreSQL a batch is streamed with ``COPY`` into a temporary table; one
statement then moves it into ``Span`` with ``INSERT … ON CONFLICT DO
NOTHING … RETURNING`` (so a retried batch stores nothing twice) and merges
the spans it actually inserted into their traces' summaries, without reading
the traces' stored spans again. Elsewhere (the embedded SQLite) the ORM
recomputes the summaries from the stored spans, which gives the same rows.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import NamedTuple

from django.db import connection, transaction

from meshui.telemetry.models import Span, SpanStatus, TraceSummary


class SpanRow(NamedTuple):  # the PostgreSQL path COPYs these fields in this order (_INCOMING_TYPES)
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


def epoch_us(moment: dt.datetime) -> int:
    """``moment`` in ``SpanRow``'s terms: whole microseconds since the epoch."""
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)


_SUMMARY_FIELDS = [
    "root_service",
    "root_operation",
    "root_has_parent",
    "root_start",
    "namespaces",
    "start",
    "end",
    "duration_us",
    "span_count",
    "error",
    "services",
    "updated_at",
]


def store(rows: Sequence[SpanRow]) -> int:
    """Insert ``rows`` (spans already stored are skipped) and bring their traces' summaries up to date;
    returns how many traces were touched. Call it inside a transaction (``do_store_spans``)."""
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
# Binary COPY: about half the client CPU of text per row. The types follow SpanRow's fields in order.
_COPY_INCOMING = "COPY telemetry_span_incoming (" + ", ".join(SpanRow._fields) + ") FROM STDIN (FORMAT BINARY)"
_INCOMING_TYPES = ["text"] * 5 + ["int8", "int8", "text", "int2", "int2"] + ["text"] * 7
# One statement per batch: move the new spans into Span (a span already stored is skipped, so a retried
# batch adds nothing), then merge what was actually inserted into the summaries of its traces. The root is
# the span without a parent, else the earliest (then the first stored); services sort by code point
# (COLLATE "C"), as Python sorts them; status 2 is SpanStatus.ERROR. Times are exact integer arithmetic
# on microseconds (to_timestamp() goes through a double).
_MOVE_AND_SUMMARIZE = """
WITH inserted AS (
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
    RETURNING id, trace_id, service, namespace, operation, parent_span_id <> '' AS has_parent, start, "end", status
), batch AS (
    SELECT trace_id,
           (array_agg(service ORDER BY has_parent, start, id))[1] AS root_service,
           (array_agg(operation ORDER BY has_parent, start, id))[1] AS root_operation,
           bool_and(has_parent) AS root_has_parent,
           (array_agg(start ORDER BY has_parent, start, id))[1] AS root_start,
           min(start) AS start, max("end") AS "end", count(*) AS span_count, bool_or(status = 2) AS error,
           jsonb_agg(DISTINCT service COLLATE "C" ORDER BY service COLLATE "C") AS services,
           jsonb_object_agg(namespace, true) AS namespaces
    FROM inserted
    GROUP BY trace_id
)
INSERT INTO telemetry_tracesummary AS old (
    trace_id, root_service, root_operation, root_has_parent, root_start, start, "end", duration_us,
    span_count, error, services, namespaces, updated_at
)
SELECT trace_id, root_service, root_operation, root_has_parent, root_start, start, "end",
       (extract(epoch FROM "end" - start) * 1000000)::bigint, span_count, error, services, namespaces, now()
FROM batch
ORDER BY trace_id
ON CONFLICT (trace_id) DO UPDATE SET
    root_service = CASE
        WHEN (EXCLUDED.root_has_parent, EXCLUDED.root_start)
             < (old.root_has_parent, coalesce(old.root_start, 'infinity'))
        THEN EXCLUDED.root_service ELSE old.root_service END,
    root_operation = CASE
        WHEN (EXCLUDED.root_has_parent, EXCLUDED.root_start)
             < (old.root_has_parent, coalesce(old.root_start, 'infinity'))
        THEN EXCLUDED.root_operation ELSE old.root_operation END,
    root_start = CASE
        WHEN (EXCLUDED.root_has_parent, EXCLUDED.root_start)
             < (old.root_has_parent, coalesce(old.root_start, 'infinity'))
        THEN EXCLUDED.root_start ELSE old.root_start END,
    root_has_parent = old.root_has_parent AND EXCLUDED.root_has_parent,
    start = least(old.start, EXCLUDED.start),
    "end" = greatest(old."end", EXCLUDED."end"),
    duration_us = (extract(epoch FROM greatest(old."end", EXCLUDED."end") - least(old.start, EXCLUDED.start))
                   * 1000000)::bigint,
    span_count = old.span_count + EXCLUDED.span_count,
    error = old.error OR EXCLUDED.error,
    services = (
        SELECT jsonb_agg(DISTINCT name COLLATE "C" ORDER BY name COLLATE "C")
        FROM jsonb_array_elements_text(old.services || EXCLUDED.services) AS name
    ),
    namespaces = old.namespaces || EXCLUDED.namespaces,
    updated_at = EXCLUDED.updated_at
"""


def _store_copy(rows: Sequence[SpanRow]) -> int:
    # The temporary table empties at commit: outside a transaction the COPY would commit (and vanish) alone.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_CREATE_INCOMING)
        raw = cursor.cursor  # psycopg's own cursor, for COPY
        with raw.copy(_COPY_INCOMING) as copy:
            copy.set_types(_INCOMING_TYPES)
            for row in rows:
                copy.write_row(row)
        cursor.execute(_MOVE_AND_SUMMARIZE)
        traces = int(cursor.rowcount)
        # A later batch in the same transaction must not move these rows again.
        cursor.execute("TRUNCATE telemetry_span_incoming")
        return traces


# --- SQLite and others -------------------------------------------------------------------------------------


def _time(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


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
    """Insert, then recompute each touched trace's summary from all its stored spans, read once (the same
    result as PostgreSQL's merge)."""
    Span.objects.bulk_create([_model(row) for row in rows], ignore_conflicts=True, batch_size=500)
    spans = Span.objects.filter(trace_id__in={row.trace_id for row in rows}).values_list(
        "trace_id", "service", "namespace", "operation", "parent_span_id", "start", "end", "status", "id"
    )
    traces: dict[str, _TraceSoFar] = {}
    for trace_id, service, namespace, operation, parent, start, end, status, pk in spans:
        trace = traces.get(trace_id)
        if trace is None:
            trace = traces[trace_id] = _TraceSoFar(start, end)
        trace.add(service, namespace, operation, bool(parent), start, end, status == SpanStatus.ERROR, pk)
    summaries = [trace.summary(trace_id) for trace_id, trace in traces.items()]
    TraceSummary.objects.bulk_create(
        summaries, update_conflicts=True, unique_fields=["trace_id"], update_fields=_SUMMARY_FIELDS
    )
    return len(summaries)


class _TraceSoFar:
    """A trace's summary, built span by span."""

    def __init__(self, start: dt.datetime, end: dt.datetime) -> None:
        self.start, self.end = start, end
        self.count = 0
        self.error = False
        self.services: set[str] = set()
        self.namespaces: set[str] = set()
        # The root ranks by (has a parent, start, id): a span without a parent first, then the earliest.
        self.root: tuple[bool, dt.datetime, int, str, str] | None = None

    def add(
        self, service: str, namespace: str, operation: str, has_parent: bool, start: dt.datetime,
        end: dt.datetime, error: bool, pk: int,
    ) -> None:  # fmt: skip
        self.start, self.end = min(self.start, start), max(self.end, end)
        self.count += 1
        self.error = self.error or error
        self.services.add(service)
        self.namespaces.add(namespace)
        candidate = (has_parent, start, pk, service, operation)
        if self.root is None or candidate[:3] < self.root[:3]:
            self.root = candidate

    def summary(self, trace_id: str) -> TraceSummary:
        assert self.root is not None, "a trace with no span"
        has_parent, root_start, _, root_service, root_operation = self.root
        return TraceSummary(
            trace_id=trace_id,
            root_service=root_service,
            root_operation=root_operation,
            root_has_parent=has_parent,
            root_start=root_start,
            start=self.start,
            end=self.end,
            duration_us=(self.end - self.start) // dt.timedelta(microseconds=1),
            span_count=self.count,
            error=self.error,
            services=sorted(self.services),
            namespaces=dict.fromkeys(sorted(self.namespaces), True),
        )
