"""Writes to the span store: one transaction per ingest batch, and retention."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from meshui.telemetry import span_store
from meshui.telemetry.models import (
    LATENCY_COLUMNS,
    ROLLUP_RESOLUTION_S,
    EdgeBucket,
    RollupWatermark,
    Span,
    TraceSummary,
    rollup_minute,
)
from meshui.telemetry.otlp_metrics import RAW_RESOLUTION_S, EdgeIncrement, EdgeKey
from meshui.telemetry.span_store import SpanRow


def do_store_spans(rows: Sequence[SpanRow]) -> int:
    """Insert spans (ones already stored are skipped) and recompute the summaries of their traces.

    Returns how many traces were touched. Summaries are recomputed from every
    stored span of the trace, so a batch that arrives twice, or spans of one
    trace spread over several batches, end in the same summary.
    """
    with transaction.atomic():
        return span_store.store(rows)


@dataclass(frozen=True)
class Pruned:
    spans: int
    traces: int


def _delete_in_chunks(queryset: QuerySet[Any], chunk: int) -> int:
    # Chunks keep each DELETE (and its lock and WAL) small on a store of millions of rows.
    deleted = 0
    while ids := list(queryset.values_list("pk", flat=True)[:chunk]):
        deleted += queryset.model.objects.filter(pk__in=ids).delete()[0]
    return deleted


def do_prune_spans(now: dt.datetime, max_age: dt.timedelta, max_spans: int, *, chunk: int = 10_000) -> Pruned:
    """Delete spans that started before ``now - max_age``, then the oldest beyond ``max_spans``; traces go with
    their spans (a trace is kept while it has a span left)."""
    cutoff = now - max_age
    spans = _delete_in_chunks(Span.objects.filter(start__lt=cutoff), chunk)
    excess = Span.objects.count() - max_spans
    if excess > 0:
        # Everything older than the first span that may stay goes, so ties at that instant stay together.
        keep_from = Span.objects.order_by("start").values_list("start", flat=True)[excess]
        spans += _delete_in_chunks(Span.objects.filter(start__lt=keep_from), chunk)
    remaining = Span.objects.values("trace_id")
    traces = _delete_in_chunks(TraceSummary.objects.exclude(trace_id__in=remaining), chunk)
    return Pruned(spans, traces)


def do_add_edge_increments(increments: dict[EdgeKey, EdgeIncrement], resolution_s: int = RAW_RESOLUTION_S) -> int:
    """Add ``increments`` to their edge buckets (creating the missing ones); returns the buckets touched."""
    if not increments:
        return 0
    with transaction.atomic():
        existing = {_bucket_key(b): b for b in _buckets_for(increments, resolution_s).select_for_update()}
        created, updated = [], []
        for key, increment in increments.items():
            bucket = existing.get(key)
            if bucket is None:
                start, reporter, namespace, source_service, source, destination, workload, status_class = key
                bucket = EdgeBucket(
                    start=start,
                    resolution_s=resolution_s,
                    reporter=reporter,
                    namespace=namespace,
                    source_service=source_service,
                    source_workload=source,
                    destination_service=destination,
                    destination_workload=workload,
                    status_class=status_class,
                    requests=increment.requests,
                    errors=increment.errors,
                    request_bytes=increment.request_bytes,
                    response_bytes=increment.response_bytes,
                    denied=increment.denied,
                    mtls=increment.mtls,
                    latency_sum_s=increment.latency_sum_s,
                )
                bucket.latency_counts = increment.latency_counts
                created.append(bucket)
                continue
            bucket.requests += increment.requests
            bucket.errors += increment.errors
            bucket.request_bytes += increment.request_bytes
            bucket.response_bytes += increment.response_bytes
            bucket.denied += increment.denied
            bucket.mtls += increment.mtls
            bucket.latency_sum_s += increment.latency_sum_s
            bucket.latency_counts = [
                a + b for a, b in zip(bucket.latency_counts, increment.latency_counts, strict=True)
            ]
            updated.append(bucket)
        EdgeBucket.objects.bulk_create(created, batch_size=500)
        EdgeBucket.objects.bulk_update(updated, _COUNTER_FIELDS, batch_size=500)
        if resolution_s == RAW_RESOLUTION_S:
            _add_to_built_rollups(increments)
    return len(created) + len(updated)


def _add_to_built_rollups(increments: dict[EdgeKey, EdgeIncrement]) -> None:
    """Late data for minutes whose rollups are built goes into them too, so they stay complete."""
    watermark = RollupWatermark.objects.filter(resolution_s=ROLLUP_RESOLUTION_S).first()
    if watermark is None:
        return
    late: dict[EdgeKey, EdgeIncrement] = {}
    for key, increment in increments.items():
        minute = rollup_minute(key[0])
        if watermark.rolled_from <= minute < watermark.rolled_until:
            late.setdefault((minute, *key[1:]), EdgeIncrement()).add(increment)
    if late:
        do_add_edge_increments(late, ROLLUP_RESOLUTION_S)


_COUNTER_FIELDS = [
    "requests",
    "errors",
    "request_bytes",
    "response_bytes",
    "denied",
    "mtls",
    "latency_sum_s",
    *LATENCY_COLUMNS,
]


def _bucket_key(bucket: EdgeBucket) -> EdgeKey:
    return (
        bucket.start,
        bucket.reporter,
        bucket.namespace,
        bucket.source_service,
        bucket.source_workload,
        bucket.destination_service,
        bucket.destination_workload,
        bucket.status_class,
    )


def _buckets_for(increments: dict[EdgeKey, EdgeIncrement], resolution_s: int) -> QuerySet[EdgeBucket]:
    starts = sorted({key[0] for key in increments})
    destinations = sorted({key[5] for key in increments})
    # A superset (every row of those instants and destinations); exact keys are matched in Python.
    return EdgeBucket.objects.filter(resolution_s=resolution_s, start__in=starts, destination_service__in=destinations)


def do_roll_up(
    now: dt.datetime, lookback: dt.timedelta, *, settle: dt.timedelta, max_backfill: dt.timedelta | None = None
) -> int:
    """Recompute the 1-minute rollups of every minute in ``[now - settle - lookback, now - settle)``, and
    before that back to where built rollups end (no more than ``max_backfill``, the raw buckets' age limit).

    Rollups are rebuilt from the 10 s buckets rather than added to, so running
    this again (or after late data arrived within ``lookback``) gives the same
    rows. ``settle`` leaves the last export interval time to arrive. Returns
    the rollup rows written.
    """
    end_epoch = int((now - settle).timestamp()) // ROLLUP_RESOLUTION_S * ROLLUP_RESOLUTION_S
    end = dt.datetime.fromtimestamp(end_epoch, tz=dt.UTC)
    start = end - lookback
    watermark = RollupWatermark.objects.filter(resolution_s=ROLLUP_RESOLUTION_S).first()
    oldest = end - max_backfill if max_backfill is not None else None
    # Built rollups stay one unbroken range: after an outage, rebuild the minutes no run covered.
    contiguous = watermark is not None and (oldest is None or watermark.rolled_until >= oldest)
    if watermark is not None and contiguous and watermark.rolled_until < start:
        start = watermark.rolled_until
    totals: dict[EdgeKey, EdgeIncrement] = {}
    raw = EdgeBucket.objects.filter(resolution_s=RAW_RESOLUTION_S, start__gte=start, start__lt=end)
    for bucket in raw.iterator(chunk_size=2000):
        key = (rollup_minute(bucket.start), *_bucket_key(bucket)[1:])
        total = totals.get(key)
        if total is None:
            total = totals[key] = EdgeIncrement()
        total.add(
            EdgeIncrement(
                requests=bucket.requests,
                errors=bucket.errors,
                request_bytes=bucket.request_bytes,
                response_bytes=bucket.response_bytes,
                denied=bucket.denied,
                mtls=bucket.mtls,
                latency_sum_s=bucket.latency_sum_s,
                latency_counts=list(bucket.latency_counts),
            )
        )
    with transaction.atomic():
        EdgeBucket.objects.filter(resolution_s=ROLLUP_RESOLUTION_S, start__gte=start, start__lt=end).delete()
        do_add_edge_increments(totals, ROLLUP_RESOLUTION_S)
        _record_rollups_built(start, end)
    return len(totals)


def _record_rollups_built(start: dt.datetime, end: dt.datetime) -> None:
    watermark, created = RollupWatermark.objects.select_for_update().get_or_create(
        resolution_s=ROLLUP_RESOLUTION_S, defaults={"rolled_from": start, "rolled_until": end}
    )
    if created:
        return
    if start > watermark.rolled_until:
        # A gap older than the raw buckets: what was built before it no longer joins up.
        watermark.rolled_from, watermark.rolled_until = start, end
    else:
        # Only forward: a run with a shorter look-back (or a clock behind) must not hide built rollups.
        watermark.rolled_from = min(watermark.rolled_from, start)
        watermark.rolled_until = max(watermark.rolled_until, end)
    watermark.save(update_fields=["rolled_from", "rolled_until"])


def do_prune_edge_buckets(now: dt.datetime, raw_age: dt.timedelta, rollup_age: dt.timedelta) -> int:
    old_raw = EdgeBucket.objects.filter(resolution_s=RAW_RESOLUTION_S, start__lt=now - raw_age)
    old_rollups = EdgeBucket.objects.filter(resolution_s=ROLLUP_RESOLUTION_S, start__lt=now - rollup_age)
    return _delete_in_chunks(old_raw, 10_000) + _delete_in_chunks(old_rollups, 10_000)
