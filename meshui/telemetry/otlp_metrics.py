"""OTLP metric export requests turned into per-edge increments for ``EdgeBucket`` rows.

The mesh's metrics (``mesh.requests``, ``mesh.request.errors``, the body
sizes, ``mesh.requests.denied``, ``mesh.requests.mtls`` and
``mesh.request.duration``) are read; other metrics are ignored, not refused.
Only delta temporality is stored: a cumulative point cannot be added to a
bucket without remembering every series' last value, so it is rejected (OTel
SDKs export deltas with
``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta``). Histograms with
other bounds are re-binned into ours, each count moved to the first of our
buckets that holds its bucket's upper bound.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from meshui.telemetry.models import LATENCY_BOUNDS_S, Reporter
from meshui.telemetry.otlp_spans import attributes

RAW_RESOLUTION_S = 10
_DELTA = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
_SUMS = {
    "mesh.requests": "requests",
    "mesh.request.errors": "errors",
    "mesh.request.body.size": "request_bytes",
    "mesh.response.body.size": "response_bytes",
    # Requests an authorization policy refused (the zero-trust work sends it; zero until then).
    "mesh.requests.denied": "denied",
    # Requests carried over mutual TLS between sidecars: the graph's mTLS share.
    "mesh.requests.mtls": "mtls",
}
_DURATION = "mesh.request.duration"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

EdgeKey = tuple[dt.datetime, str, str, str, str, str, str, str]


@dataclass
class EdgeIncrement:
    requests: int = 0
    errors: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    denied: int = 0
    mtls: int = 0
    latency_sum_s: float = 0.0
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_S) + 1))

    def add(self, other: EdgeIncrement) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.request_bytes += other.request_bytes
        self.response_bytes += other.response_bytes
        self.denied += other.denied
        self.mtls += other.mtls
        self.latency_sum_s += other.latency_sum_s
        self.latency_counts = [a + b for a, b in zip(self.latency_counts, other.latency_counts, strict=True)]


@dataclass
class DecodedMetrics:
    increments: dict[EdgeKey, EdgeIncrement] = field(default_factory=dict)
    rejected: int = 0
    reason: str = ""

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.reason = self.reason or reason


def bucket_start(unix_nano: int, resolution_s: int) -> dt.datetime:
    seconds = unix_nano // 1_000_000_000
    return _EPOCH + dt.timedelta(seconds=seconds - seconds % resolution_s)


def rebin(bounds: list[float], counts: list[int]) -> list[int]:
    """Counts over ``bounds`` (plus +Inf) moved onto LATENCY_BOUNDS_S (plus +Inf)."""
    out = [0] * (len(LATENCY_BOUNDS_S) + 1)
    for i, count in enumerate(counts):
        upper = bounds[i] if i < len(bounds) else float("inf")
        out[bisect.bisect_left(LATENCY_BOUNDS_S, upper)] += count
    return out


def _key(point: Any, resource: dict[str, Any], out: DecodedMetrics) -> EdgeKey | None:
    attrs = attributes(point.attributes)
    reporter = attrs.get("mesh.direction")
    source = attrs.get("mesh.source.workload")
    destination = attrs.get("mesh.destination.service")
    status_class = attrs.get("mesh.status_class")
    if reporter not in Reporter.values or not isinstance(destination, str) or not destination:
        out.reject("mesh metrics need mesh.direction (inbound|outbound) and mesh.destination.service")
        return None
    if not isinstance(status_class, str) or len(status_class) != 3 or not isinstance(source, str):
        out.reject("mesh metrics need mesh.source.workload and mesh.status_class (2xx, 5xx, ...)")
        return None
    if not point.time_unix_nano:
        out.reject("a data point needs its time")
        return None
    service = resource.get("service.name")
    namespace = resource.get("service.namespace")
    workload = attrs.get("mesh.destination.workload")
    return (
        bucket_start(point.time_unix_nano, RAW_RESOLUTION_S),
        str(reporter),
        str(namespace)[:253] if isinstance(namespace, str) else "",
        str(service)[:253] if reporter == Reporter.OUTBOUND and isinstance(service, str) else "",
        source[:253],
        destination[:253],
        workload[:253] if isinstance(workload, str) else "",
        status_class,
    )


def decode(request: metrics_service_pb2.ExportMetricsServiceRequest) -> DecodedMetrics:
    out = DecodedMetrics()
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name in _SUMS and metric.HasField("sum"):
                    _sum(metric, resource, out)
                elif metric.name == _DURATION and metric.HasField("histogram"):
                    _histogram(metric, resource, out)
    return out


def _increment(out: DecodedMetrics, key: EdgeKey) -> EdgeIncrement:
    increment = out.increments.get(key)
    if increment is None:
        increment = out.increments[key] = EdgeIncrement()
    return increment


def _sum(metric: metrics_pb2.Metric, resource: dict[str, Any], out: DecodedMetrics) -> None:
    if metric.sum.aggregation_temporality != _DELTA:
        out.rejected += len(metric.sum.data_points)
        out.reason = out.reason or f"{metric.name}: only delta temporality is stored"
        return
    attribute = _SUMS[metric.name]
    for point in metric.sum.data_points:
        value = point.as_int if point.HasField("as_int") else int(point.as_double)
        if value < 0:
            out.reject(f"{metric.name}: a delta of a monotonic sum cannot be negative")
            continue
        key = _key(point, resource, out)
        if key is not None:
            increment = _increment(out, key)
            setattr(increment, attribute, getattr(increment, attribute) + value)


def _histogram(metric: metrics_pb2.Metric, resource: dict[str, Any], out: DecodedMetrics) -> None:
    if metric.histogram.aggregation_temporality != _DELTA:
        out.rejected += len(metric.histogram.data_points)
        out.reason = out.reason or f"{metric.name}: only delta temporality is stored"
        return
    for point in metric.histogram.data_points:
        bounds, counts = list(point.explicit_bounds), list(point.bucket_counts)
        if len(counts) != len(bounds) + 1 or bounds != sorted(bounds) or sum(counts) != point.count:
            out.reject(f"{metric.name}: bucket counts must be one more than bounds and add up to count")
            continue
        key = _key(point, resource, out)
        if key is not None:
            increment = _increment(out, key)
            increment.latency_sum_s += point.sum
            increment.latency_counts = [
                a + b for a, b in zip(increment.latency_counts, rebin(bounds, counts), strict=True)
            ]
