"""The service graph over a time window, from per-edge buckets: rates, errors, percentiles and health."""

from __future__ import annotations

import datetime as dt
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import reduce
from operator import or_
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import BigIntegerField, F, Q, QuerySet, Sum
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Cast

from meshui.telemetry.histograms import add, percentiles
from meshui.telemetry.models import (
    LATENCY_BOUNDS_S,
    LATENCY_COLUMNS,
    ROLLUP_RESOLUTION_S,
    EdgeBucket,
    Reporter,
    RollupWatermark,
    rollup_minute,
)
from meshui.telemetry.otlp_metrics import RAW_RESOLUTION_S

ZERO_COUNTS = [0] * (len(LATENCY_BOUNDS_S) + 1)


@dataclass
class Totals:
    requests: int = 0
    errors: int = 0
    bytes: int = 0
    denied: int = 0
    latency_counts: list[int] = field(default_factory=lambda: list(ZERO_COUNTS))
    # Seconds all the requests took together (only where the buckets were added one by one).
    latency_sum_s: float = 0.0
    mtls: int = 0

    def add(self, bucket: EdgeBucket) -> None:
        self.add_totals(
            Totals(
                bucket.requests,
                bucket.errors,
                bucket.request_bytes + bucket.response_bytes,
                bucket.denied,
                bucket.latency_counts,
                bucket.latency_sum_s,
                bucket.mtls,
            )
        )

    def in_flight(self, seconds: float) -> float:
        """Mean requests in flight over ``seconds`` by Little's law: the time the requests spent, divided by
        the time they spent it in (each request counts in the interval it ended in)."""
        return round(self.latency_sum_s / seconds, 3)

    def copy(self) -> Totals:
        # Adding never changes a counts list in place, so the copy can share it.
        return Totals(
            self.requests, self.errors, self.bytes, self.denied, self.latency_counts, self.latency_sum_s, self.mtls
        )

    def add_totals(self, other: Totals) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.bytes += other.bytes
        self.denied += other.denied
        self.mtls += other.mtls
        self.latency_counts = add(self.latency_counts, other.latency_counts)
        self.latency_sum_s += other.latency_sum_s

    def percentiles_ms(self) -> list[float | None]:
        """p50, p95 and p99 in milliseconds (``None`` without requests)."""
        quantiles = percentiles(self.latency_counts, (0.50, 0.95, 0.99))
        return [None if value is None else round(value * 1000, 3) for value in quantiles]

    def describe(self, seconds: float, thresholds: tuple[float, float] | None = None) -> dict[str, Any]:
        """Rates, percentiles and health over ``seconds``; ``thresholds`` (failing, degraded error rates)
        default to the settings."""
        error_rate = self.errors / self.requests if self.requests else 0.0
        p50, p95, p99 = self.percentiles_ms()
        return {
            "requests": self.requests,
            "rps": round(self.requests / seconds, 3),
            "error_rate": round(error_rate, 4),
            "p50_ms": p50,
            "p95_ms": p95,
            "p99_ms": p99,
            "bytes": self.bytes,
            "mtls_share": round(self.mtls / self.requests, 4) if self.requests else 0.0,
            "denied_rps": round(self.denied / seconds, 3),
            "health": health(self.requests, error_rate, thresholds or health_thresholds()),
        }


def health_thresholds() -> tuple[float, float]:
    """(failing, degraded) error rates from the settings."""
    return settings.MESH_HEALTH_FAILING_ERROR_RATE, settings.MESH_HEALTH_DEGRADED_ERROR_RATE


def health_thresholds_body() -> dict[str, float]:
    """The thresholds as the API and the live snapshots state them."""
    failing, degraded = health_thresholds()
    return {"degraded": degraded, "failing": failing}


def health(requests: int, error_rate: float, thresholds: tuple[float, float]) -> str:
    if not requests:
        return "idle"
    failing, degraded = thresholds
    if error_rate >= failing:
        return "failing"
    if error_rate >= degraded:
        return "degraded"
    return "healthy"


# The bucket fields that name an edge's two ends, by grouping.
_END_FIELDS = {
    "service": ("namespace", "source_service", "destination_service"),
    "workload": ("namespace", "source_workload", "destination_service", "destination_workload"),
}


def node_ids(ends: tuple[Any, ...], group: str) -> tuple[str, str]:
    """(source node, destination node) of a group of caller-reported buckets, from its ``_END_FIELDS``."""
    if group == "workload":
        namespace, source_workload, destination_service, destination_workload = ends
        destination_namespace = destination_service.rpartition(".")[2]
        return f"{source_workload}.{namespace}", f"{destination_workload or 'unknown'}.{destination_namespace}"
    namespace, source_service, destination_service = ends
    return f"{source_service or 'unknown'}.{namespace}", destination_service


def _total(expression: str | F | CombinedExpression) -> Cast:
    # PostgreSQL's SUM of a bigint is a numeric; cast back, so rows come out as plain ints.
    return Cast(Sum(expression), BigIntegerField())


# Hash-aggregating a mesh's worth of buckets needs more than PostgreSQL's default 4 MB of sort memory;
# below it the groups spill to disk. Set for the graph query's transaction only.
_GRAPH_WORK_MEM = "64MB"
_GRAPH_RANDOM_PAGE_COST = "1.1"


def summed_rows(buckets: QuerySet[EdgeBucket], *fields: str) -> list[tuple[tuple[Any, ...], Totals]]:
    """Buckets added up by the database per distinct ``fields``: (the fields' values, their totals of
    requests, errors, bytes, denied and latency counts), one pair per group.

    Read straight from the cursor: thousands of rows of nineteen sums each would otherwise spend longer
    in per-value converters than in the database.
    """
    query = (
        buckets.order_by()
        .values(*fields)
        .annotate(
            requests=_total("requests"),
            errors=_total("errors"),
            bytes=_total(F("request_bytes") + F("response_bytes")),
            denied=_total("denied"),
            **{column: _total(column) for column in LATENCY_COLUMNS},
            mtls=_total("mtls"),
        )
    )
    sql, params = query.query.sql_with_params()
    ends = len(fields)
    latency_from = ends + 4
    connection = connections[query.db]
    postgresql = connection.vendor == "postgresql"
    # Only PostgreSQL needs a transaction here (for SET LOCAL); on SQLite one would be BEGIN IMMEDIATE,
    # taking the write lock for a read.
    with transaction.atomic(using=query.db) if postgresql else nullcontext(), connection.cursor() as cursor:
        if postgresql:
            cursor.execute("SET LOCAL work_mem = %s", [_GRAPH_WORK_MEM])
            # A window's buckets are a few time ranges of the table: read through the index on
            # (resolution, start). PostgreSQL's default random_page_cost (4) prices storage as spinning
            # disks and picks a full scan that is slower here (about 104 against 79 ms on the benchmark).
            cursor.execute("SET LOCAL random_page_cost = %s", [_GRAPH_RANDOM_PAGE_COST])
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [
        (
            row[:ends],
            Totals(row[ends], row[ends + 1], row[ends + 2], row[ends + 3], list(row[latency_from:-1]), mtls=row[-1]),
        )
        for row in rows
    ]


def service_sides(buckets: QuerySet[EdgeBucket], service: str) -> tuple[QuerySet[EdgeBucket], QuerySet[EdgeBucket]]:
    """(inbound, outbound) of ``buckets`` for ``service`` ("name.namespace"), each as its own sidecars saw it."""
    name, _, namespace = service.rpartition(".")
    inbound = buckets.filter(reporter=Reporter.INBOUND, destination_service=service)
    outbound = buckets.filter(reporter=Reporter.OUTBOUND, source_service=name, namespace=namespace)
    return inbound, outbound


def series(buckets: Any, start: dt.datetime, points: int, step: int) -> list[dict[str, Any]]:
    """``points`` steps of ``step`` seconds from ``start``: requests, rates, percentiles and in-flight of the
    buckets that start in each."""
    thresholds = health_thresholds()
    totals = [Totals() for _ in range(points)]
    for bucket in buckets:
        index = int((bucket.start - start).total_seconds()) // step
        if 0 <= index < points:
            totals[index].add(bucket)
    points_out = []
    for index, total in enumerate(totals):
        described = total.describe(step, thresholds)
        points_out.append(
            {
                "time": start + dt.timedelta(seconds=index * step),
                **{k: described[k] for k in ("requests", "rps", "error_rate", "p50_ms", "p95_ms", "p99_ms")},
                "in_flight": total.in_flight(step),
            }
        )
    return points_out


def build_graph(buckets: QuerySet[EdgeBucket], group: str, seconds: float) -> dict[str, Any]:
    edges: dict[tuple[str, str], Totals] = {}
    inbound: dict[str, Totals] = {}
    sources: set[str] = set()
    # Thousands of rows: each starts its edge's and its destination's totals rather than being added to zeros.
    for ends, totals in summed_rows(buckets, *_END_FIELDS[group]):
        key = node_ids(ends, group)
        edge = edges.get(key)
        if edge is None:
            edges[key] = totals
        else:
            edge.add_totals(totals)
        node = inbound.get(key[1])
        if node is None:
            inbound[key[1]] = totals.copy()
        else:
            node.add_totals(totals)
        sources.add(key[0])
    nodes = sources | inbound.keys()
    thresholds = health_thresholds()
    return {
        "nodes": [
            {"id": node, "name": node.rpartition(".")[0], "namespace": node.rpartition(".")[2],
             **inbound.get(node, Totals()).describe(seconds, thresholds)}
            for node in sorted(nodes)
        ],
        "edges": [
            {"source": source, "destination": destination, **totals.describe(seconds, thresholds)}
            for (source, destination), totals in sorted(edges.items())
        ],
    }  # fmt: skip


def buckets_in(start: dt.datetime, end: dt.datetime, resolution: int) -> QuerySet[EdgeBucket]:
    """Every edge bucket of ``[start, end)`` at ``resolution``, as both sides reported them."""
    return EdgeBucket.objects.filter(resolution_s=resolution, start__gte=start, start__lt=end)


def graph_buckets(start: dt.datetime, end: dt.datetime, resolution: int) -> QuerySet[EdgeBucket]:
    """``buckets_in`` for a graph: where built 1-minute rollups cover whole minutes of a 10 s window, those
    instead of their six raw buckets each."""
    if resolution != RAW_RESOLUTION_S:
        return buckets_in(start, end, resolution)
    built = (
        RollupWatermark.objects.filter(resolution_s=ROLLUP_RESOLUTION_S)
        .values_list("rolled_from", "rolled_until")
        .first()
    )
    if built is None:
        return buckets_in(start, end, resolution)
    first_minute = max(_minute_ceiling(start), _minute_ceiling(built[0]))
    last_minute = min(rollup_minute(end), rollup_minute(built[1]))
    if last_minute <= first_minute:
        return buckets_in(start, end, resolution)
    rollups = Q(resolution_s=ROLLUP_RESOLUTION_S, start__gte=first_minute, start__lt=last_minute)
    raw = Q(resolution_s=resolution) & (
        Q(start__gte=start, start__lt=first_minute) | Q(start__gte=last_minute, start__lt=end)
    )
    return EdgeBucket.objects.filter(rollups | raw)


def _minute_ceiling(moment: dt.datetime) -> dt.datetime:
    floor = rollup_minute(moment)
    return floor if floor == moment else floor + dt.timedelta(minutes=1)


def touching(namespaces: list[str]) -> Q:
    """Buckets reported in, or pointing into, one of ``namespaces``."""
    into = [Q(destination_service__endswith=f".{name}") for name in namespaces]
    return Q(namespace__in=namespaces) | reduce(or_, into, Q(pk__in=[]))


def window_bounds(at: dt.datetime, seconds: int) -> tuple[dt.datetime, dt.datetime, int]:
    """[start, end) aligned to the resolution used for a window that long, and that resolution."""
    resolution = 10 if seconds <= 3600 else 60
    end_epoch = int(at.timestamp()) // resolution * resolution
    end = dt.datetime.fromtimestamp(end_epoch, tz=dt.UTC)
    return end - dt.timedelta(seconds=seconds), end, resolution
