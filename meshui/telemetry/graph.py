"""The service graph over a time window, from per-edge buckets: rates, errors, percentiles and health."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import reduce
from operator import or_
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet

from meshui.telemetry.histograms import add, percentile
from meshui.telemetry.models import LATENCY_BOUNDS_S, EdgeBucket

ZERO_COUNTS = [0] * (len(LATENCY_BOUNDS_S) + 1)


@dataclass
class Totals:
    requests: int = 0
    errors: int = 0
    bytes: int = 0
    latency_counts: list[int] = field(default_factory=lambda: list(ZERO_COUNTS))

    def add(self, bucket: EdgeBucket) -> None:
        self.requests += bucket.requests
        self.errors += bucket.errors
        self.bytes += bucket.request_bytes + bucket.response_bytes
        self.latency_counts = add(self.latency_counts, bucket.latency_counts)

    def describe(self, seconds: float) -> dict[str, Any]:
        error_rate = self.errors / self.requests if self.requests else 0.0

        def ms(q: float) -> float | None:
            value = percentile(self.latency_counts, q)
            return None if value is None else round(value * 1000, 3)

        return {
            "requests": self.requests,
            "rps": round(self.requests / seconds, 3),
            "error_rate": round(error_rate, 4),
            "p50_ms": ms(0.50),
            "p95_ms": ms(0.95),
            "p99_ms": ms(0.99),
            "bytes": self.bytes,
            # Filled in by the zero-trust work (mutual TLS, authorization); zero until then.
            "mtls_share": 0.0,
            "denied_rps": 0.0,
            "health": health(self.requests, error_rate),
        }


def health(requests: int, error_rate: float) -> str:
    if not requests:
        return "idle"
    if error_rate >= settings.MESH_HEALTH_FAILING_ERROR_RATE:
        return "failing"
    if error_rate >= settings.MESH_HEALTH_DEGRADED_ERROR_RATE:
        return "degraded"
    return "healthy"


def _node_ids(bucket: EdgeBucket, group: str) -> tuple[str, str]:
    """(source node, destination node) of a caller-reported bucket."""
    destination_namespace = bucket.destination_service.rpartition(".")[2]
    if group == "workload":
        source = f"{bucket.source_workload}.{bucket.namespace}"
        workload = bucket.destination_workload or "unknown"
        return source, f"{workload}.{destination_namespace}"
    source = f"{bucket.source_service or 'unknown'}.{bucket.namespace}"
    return source, bucket.destination_service


def build_graph(buckets: Iterable[EdgeBucket], group: str, seconds: float) -> dict[str, Any]:
    edges: dict[tuple[str, str], Totals] = {}
    inbound: dict[str, Totals] = {}
    nodes: set[str] = set()
    for bucket in buckets:
        source, destination = _node_ids(bucket, group)
        nodes.update((source, destination))
        edges.setdefault((source, destination), Totals()).add(bucket)
        inbound.setdefault(destination, Totals()).add(bucket)
    return {
        "nodes": [
            {"id": node, "name": node.rpartition(".")[0], "namespace": node.rpartition(".")[2],
             **inbound.get(node, Totals()).describe(seconds)}
            for node in sorted(nodes)
        ],
        "edges": [
            {"source": source, "destination": destination, **totals.describe(seconds)}
            for (source, destination), totals in sorted(edges.items())
        ],
    }  # fmt: skip


def buckets_in(start: dt.datetime, end: dt.datetime, resolution: int) -> QuerySet[EdgeBucket]:
    """Every edge bucket of ``[start, end)`` at ``resolution``, as both sides reported them."""
    return EdgeBucket.objects.filter(resolution_s=resolution, start__gte=start, start__lt=end)


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
