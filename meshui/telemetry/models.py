"""Spans as received over OTLP, and one summary row per trace so searches work on whole traces."""

from __future__ import annotations

import datetime as dt

from django.db import models


class SpanKind(models.IntegerChoices):
    # opentelemetry.proto.trace.v1.Span.SpanKind
    UNSPECIFIED = 0, "unspecified"
    INTERNAL = 1, "internal"
    SERVER = 2, "server"
    CLIENT = 3, "client"
    PRODUCER = 4, "producer"
    CONSUMER = 5, "consumer"


class SpanStatus(models.IntegerChoices):
    # opentelemetry.proto.trace.v1.Status.StatusCode
    UNSET = 0, "unset"
    OK = 1, "ok"
    ERROR = 2, "error"


class Span(models.Model):
    """One span. ``(trace_id, span_id)`` is unique, which is what makes a retried export batch harmless."""

    trace_id = models.CharField(max_length=32, help_text="32 lowercase hex digits.")
    span_id = models.CharField(max_length=16, help_text="16 lowercase hex digits.")
    parent_span_id = models.CharField(max_length=16, blank=True, help_text="Empty for a root span.")
    service = models.CharField(max_length=253, help_text="The resource's service.name.")
    namespace = models.CharField(max_length=253, blank=True, help_text="The resource's service.namespace.")
    operation = models.CharField(max_length=255, help_text="The span name.")
    kind = models.PositiveSmallIntegerField(choices=SpanKind.choices, default=SpanKind.UNSPECIFIED)
    start = models.DateTimeField()
    end = models.DateTimeField()
    duration_us = models.BigIntegerField()
    status = models.PositiveSmallIntegerField(choices=SpanStatus.choices, default=SpanStatus.UNSET)
    status_message = models.CharField(max_length=1024, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    events = models.JSONField(default=list, blank=True)
    resource = models.JSONField(default=dict, blank=True)
    # The mesh edge a sidecar's span describes (empty for spans from apps).
    source_workload = models.CharField(max_length=253, blank=True)
    destination_service = models.CharField(max_length=253, blank=True)
    destination_workload = models.CharField(max_length=253, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["trace_id", "span_id"], name="span_unique_in_trace")]
        indexes = [
            models.Index(fields=["start"], name="span_start"),
            models.Index(fields=["source_workload", "destination_service", "start"], name="span_edge_start"),
            # Trace search by service reads trace ids only. (On PostgreSQL a GIN index on attributes,
            # made by migration 0003, serves tag search.) Every index costs each ingested span an insert.
            models.Index(fields=["service", "trace_id"], name="span_service_trace"),
        ]

    def __str__(self) -> str:
        return f"{self.trace_id}/{self.span_id} {self.service} {self.operation}"

    @property
    def error(self) -> bool:
        return self.status == SpanStatus.ERROR


class TraceSummary(models.Model):
    """A whole trace at a glance, brought up to date with every batch that adds spans to it."""

    trace_id = models.CharField(max_length=32, unique=True)
    root_service = models.CharField(max_length=253)
    root_operation = models.CharField(max_length=255)
    start = models.DateTimeField()
    end = models.DateTimeField()
    duration_us = models.BigIntegerField(help_text="From the earliest span start to the latest span end.")
    span_count = models.PositiveIntegerField()
    error = models.BooleanField(help_text="Whether any span has an error status.")
    services = models.JSONField(default=list, help_text="Every service with a span in the trace, sorted.")
    # The namespaces it touched, as the keys of an object ({"shop": true}): a trace is visible to whoever may
    # view any one of them, and PostgreSQL and SQLite both test keys (has_any_keys).
    namespaces = models.JSONField(default=dict, help_text="Every namespace with a span in the trace (as keys).")
    # What ranks the root: a span without a parent beats one with, then the earlier start. Kept so a batch
    # can be merged into the summary without reading the trace's stored spans again.
    root_has_parent = models.BooleanField(default=False, help_text="The root's own parent never reached us.")
    root_start = models.DateTimeField(null=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["start"], name="trace_start"),
            models.Index(fields=["root_service", "start"], name="trace_root_start"),
            models.Index(fields=["duration_us"], name="trace_duration"),
        ]

    def __str__(self) -> str:
        return f"{self.trace_id} {self.root_service} {self.root_operation}"


# Latency histogram bounds in seconds, the same as the sidecars' (a test holds them equal). Fixed bounds
# are what let buckets from many agents and many intervals be added up and still give percentiles.
LATENCY_BOUNDS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Reporter(models.TextChoices):
    OUTBOUND = "outbound", "outbound (the caller's sidecar)"
    INBOUND = "inbound", "inbound (the callee's sidecar)"


class EdgeBucket(models.Model):
    """Golden metrics of one edge, as one side reported them, over one fixed time bucket."""

    start = models.DateTimeField(help_text="Bucket start, aligned to the resolution.")
    resolution_s = models.PositiveSmallIntegerField(help_text="10 for raw buckets, 60 for rollups.")
    reporter = models.CharField(max_length=8, choices=Reporter.choices)
    namespace = models.CharField(max_length=253, help_text="The reporting sidecar's namespace.")
    source_service = models.CharField(max_length=253, blank=True, help_text="Known when the caller reported.")
    source_workload = models.CharField(max_length=253)
    destination_service = models.CharField(max_length=253, help_text="name.namespace")
    destination_workload = models.CharField(max_length=253, blank=True)
    status_class = models.CharField(max_length=3, help_text="2xx, 4xx, 5xx, ...")
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    request_bytes = models.BigIntegerField(default=0)
    response_bytes = models.BigIntegerField(default=0)
    denied = models.BigIntegerField(default=0, help_text="Requests an authorization policy refused.")
    mtls = models.BigIntegerField(default=0, help_text="Requests carried over mutual TLS between sidecars.")
    latency_sum_s = models.FloatField(default=0.0)
    # One column per latency bucket (LATENCY_BOUNDS_S, then +Inf), not a JSON list, so that the database
    # adds histograms up itself: the graph of a whole mesh is one GROUP BY.
    latency_00 = models.BigIntegerField(default=0, help_text="Requests in the bucket up to 0.0005 s.")
    latency_01 = models.BigIntegerField(default=0, help_text="Requests in the bucket up to 0.001 s.")
    latency_02 = models.BigIntegerField(default=0, help_text="Requests in the bucket up to 0.0025 s.")
    latency_03 = models.BigIntegerField(default=0, help_text="Requests in the bucket up to 0.005 s.")
    latency_04 = models.BigIntegerField(default=0, help_text="Requests in the bucket up to 0.01 s.")
    latency_05 = models.BigIntegerField(default=0, help_text="Requests in the bucket up to 0.025 s.")
    latency_06 = models.BigIntegerField(default=0, help_text="Requests in the bucket up to 0.05 s.")
    latency_07 = models.BigIntegerField(default=0, help_text="Requests in the bucket up to 0.1 s.")
    latency_08 = models.BigIntegerField(default=0, help_text="Requests in the bucket up to 0.25 s.")
    latency_09 = models.BigIntegerField(default=0, help_text="Requests in the bucket up to 0.5 s.")
    latency_10 = models.BigIntegerField(default=0, help_text="Requests in the bucket up to 1 s.")
    latency_11 = models.BigIntegerField(default=0, help_text="Requests in the bucket up to 2.5 s.")
    latency_12 = models.BigIntegerField(default=0, help_text="Requests in the bucket up to 5 s.")
    latency_13 = models.BigIntegerField(default=0, help_text="Requests in the bucket up to 10 s.")
    latency_14 = models.BigIntegerField(default=0, help_text="Requests in the bucket up to 30 s.")
    latency_15 = models.BigIntegerField(default=0, help_text="Requests slower than the last bound.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "resolution_s",
                    "start",
                    "reporter",
                    "namespace",
                    "source_service",
                    "source_workload",
                    "destination_service",
                    "destination_workload",
                    "status_class",
                ],
                name="edge_bucket_unique",
            )
        ]
        indexes = [
            models.Index(fields=["destination_service", "resolution_s", "start"], name="edge_destination_start"),
            models.Index(fields=["namespace", "resolution_s", "start"], name="edge_namespace_start"),
        ]

    def __str__(self) -> str:
        return f"{self.start:%H:%M:%S}/{self.resolution_s}s {self.source_workload} → {self.destination_service}"

    @property
    def latency_counts(self) -> list[int]:
        """Counts per LATENCY_BOUNDS_S bucket, plus +Inf."""
        return [getattr(self, column) for column in LATENCY_COLUMNS]

    @latency_counts.setter
    def latency_counts(self, counts: list[int]) -> None:
        if len(counts) != len(LATENCY_COLUMNS):
            raise ValueError(f"{len(LATENCY_COLUMNS)} latency counts expected, got {len(counts)}")
        for column, count in zip(LATENCY_COLUMNS, counts, strict=True):
            setattr(self, column, count)


LATENCY_COLUMNS = tuple(f"latency_{i:02d}" for i in range(len(LATENCY_BOUNDS_S) + 1))


ROLLUP_RESOLUTION_S = 60


def rollup_minute(moment: dt.datetime) -> dt.datetime:
    """The start of the 1-minute rollup that ``moment`` falls in."""
    return moment.replace(second=0, microsecond=0)


class RollupWatermark(models.Model):
    """Which minutes have complete rollups: every one in ``[rolled_from, rolled_until)``.

    Rollup runs extend the range without gaps (a run after an outage first rebuilds the minutes it missed),
    and raw increments for a minute inside it are added to that minute's rollup as they are stored. The
    graph reads rollups there and raw buckets elsewhere, a third of the rows for a 5-minute window.
    """

    resolution_s = models.PositiveSmallIntegerField(unique=True)
    rolled_from = models.DateTimeField()
    rolled_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.resolution_s}s rollups {self.rolled_from:%Y-%m-%d %H:%M} to {self.rolled_until:%H:%M}"
