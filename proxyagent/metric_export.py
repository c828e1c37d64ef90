"""Golden metrics pushed to the control plane over OTLP/gRPC (``MetricsService/Export``) as deltas.

Every interval the agent reads its own Prometheus series, subtracts what the
last successful export covered, and sends the increase per edge: requests,
errors, request and response bytes, authorization denials (delta sums) and latency (a delta
histogram with the agent's fixed bucket bounds, so the control plane computes
percentiles from histograms). A failed export moves nothing forward: the next
one covers both intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from proxyagent.metrics import LABELS, LATENCY_BUCKETS, MeshMetrics
from proxyagent.otlp_wire import (
    Attributes,
    delta_histogram,
    delta_sum,
    encode_metrics_request,
    encode_resource,
    encode_scope,
    histogram_point,
    number_point,
)
from proxyagent.telemetry import OtlpClient

_EXPORT_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
# Prometheus sample name → OTLP metric name, description, unit.
_SUMS = {
    "mesh_requests_total": ("mesh.requests", "Requests completed.", "{request}"),
    "mesh_request_errors_total": ("mesh.request.errors", "Requests that ended in a 5xx or a mesh error.", "{request}"),
    "mesh_request_bytes_total": ("mesh.request.body.size", "Request body bytes.", "By"),
    "mesh_response_bytes_total": ("mesh.response.body.size", "Response body bytes.", "By"),
    "mesh_requests_denied_total": ("mesh.requests.denied", "Requests an authorization policy refused.", "{request}"),
}
# Requests carried over mutual TLS between sidecars: mesh.requests of the series with mtls="true".
MTLS_METRIC = ("mesh.requests.mtls", "Requests carried over mutual TLS between sidecars.", "{request}")
DURATION_METRIC = "mesh.request.duration"
# OTLP attribute names for the Prometheus labels, in LABELS order.
ATTRIBUTE_NAMES = (
    "mesh.direction",
    "mesh.source.workload",
    "mesh.destination.service",
    "mesh.destination.workload",
    "mesh.mtls",
    "mesh.status_class",
)
_MTLS = LABELS.index("mtls")

Key = tuple[str, ...]


@dataclass
class _Reading:
    """Cumulative values of every series at one instant."""

    sums: dict[tuple[str, Key], float] = field(default_factory=dict)
    buckets: dict[Key, list[float]] = field(default_factory=dict)  # cumulative, one per bound plus +Inf
    duration_sum: dict[Key, float] = field(default_factory=dict)


def _read(metrics: MeshMetrics) -> _Reading:
    reading = _Reading()
    bounds = {str(float(b)) for b in LATENCY_BUCKETS}
    buckets: defaultdict[Key, dict[float, float]] = defaultdict(dict)
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name in _SUMS:
                reading.sums[(sample.name, tuple(sample.labels[name] for name in LABELS))] = sample.value
            elif sample.name == "mesh_request_duration_seconds_bucket":
                key = tuple(sample.labels[name] for name in LABELS)
                le = sample.labels["le"]
                if le == "+Inf" or le in bounds:
                    buckets[key][float(le)] = sample.value
            elif sample.name == "mesh_request_duration_seconds_sum":
                reading.duration_sum[tuple(sample.labels[name] for name in LABELS)] = sample.value
    for key, by_bound in buckets.items():
        reading.buckets[key] = [by_bound.get(float(b), 0.0) for b in LATENCY_BUCKETS] + [
            by_bound.get(float("inf"), 0.0)
        ]
    return reading


def _increase(now: float, before: float | None) -> float:
    # A counter below its last value was reset (a new registry): all of it is new.
    return now if before is None or now < before else now - before


class MetricExporter:
    def __init__(
        self,
        target: str,
        resource: dict[str, str],
        metrics: MeshMetrics,
        *,
        interval_s: float = 10.0,
        tls_roots: Callable[[], bytes] | None = None,
    ) -> None:
        self._client = OtlpClient(target, tls_roots)
        self._resource = encode_resource(resource)
        self._scope = encode_scope("proxyagent")
        self._metrics = metrics
        self._interval_s = interval_s
        self._baseline = _Reading()
        self._baseline_ns = time.time_ns()
        self.exported_total = 0

    def encode_increase(self) -> tuple[bytes | None, _Reading, int]:
        """The export request for everything since the baseline (``None`` when nothing changed)."""
        now_ns = time.time_ns()
        reading = _read(self._metrics)
        start_ns = self._baseline_ns
        sums: defaultdict[str, list[bytes]] = defaultdict(list)
        for (name, key), value in reading.sums.items():
            increase = round(_increase(value, self._baseline.sums.get((name, key))))
            if increase > 0:
                point = number_point(_attributes(key), start_ns, now_ns, increase)
                sums[name].append(point)
                if name == "mesh_requests_total" and key[_MTLS] == "true":
                    sums["mtls"].append(point)
        histograms: list[bytes] = []
        for key, cumulative in reading.buckets.items():
            before = self._baseline.buckets.get(key)
            if before is not None and cumulative[-1] < before[-1]:
                before = None
            counts = _bucket_counts(cumulative, before)
            total = sum(counts)
            if total <= 0:
                continue
            seconds = _increase(
                reading.duration_sum.get(key, 0.0), self._baseline.duration_sum.get(key) if before else None
            )
            histograms.append(
                histogram_point(
                    _attributes(key),
                    start_ns,
                    now_ns,
                    count=total,
                    total=seconds,
                    bucket_counts=counts,
                    bounds=LATENCY_BUCKETS,
                )
            )
        metrics = [delta_sum(*_SUMS.get(name, MTLS_METRIC), points) for name, points in sorted(sums.items())]
        if histograms:
            metrics.append(delta_histogram(DURATION_METRIC, "Request duration.", "s", histograms))
        request = encode_metrics_request(self._resource, self._scope, metrics) if metrics else None
        return request, reading, now_ns

    async def export(self) -> bool:
        request, reading, now_ns = self.encode_increase()
        if request is not None and not await self._client.send(_EXPORT_METHOD, request):
            return False
        self._baseline, self._baseline_ns = reading, now_ns
        if request is not None:
            self.exported_total += 1
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.export()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.export(), 5.0)
        await self._client.close()


def _attributes(key: Key) -> Attributes:
    return tuple(zip(ATTRIBUTE_NAMES, key, strict=True))


def _bucket_counts(cumulative: list[float], before: list[float] | None) -> list[int]:
    """Per-bucket counts of the increase, from Prometheus' cumulative (``le``) buckets."""
    increase = [c - (before[i] if before else 0.0) for i, c in enumerate(cumulative)]
    return [round(increase[0])] + [round(increase[i] - increase[i - 1]) for i in range(1, len(increase))]
