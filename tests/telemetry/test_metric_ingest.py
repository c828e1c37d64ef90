"""Metrics over OTLP/gRPC, from the OTel SDK and from a real agent, become per-edge 10 s buckets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from asgiref.sync import sync_to_async
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from meshui.meshcontrol.server import MeshControlServer
from meshui.telemetry.models import LATENCY_BOUNDS_S, EdgeBucket
from meshui.telemetry.otlp_metrics import rebin
from proxyagent.metric_export import MetricExporter
from proxyagent.metrics import LATENCY_BUCKETS, MeshMetrics

pytestmark = pytest.mark.django_db(transaction=True)
EDGE = {
    "mesh.direction": "outbound",
    "mesh.source.workload": "web-v1",
    "mesh.destination.service": "reviews.shop",
    "mesh.destination.workload": "reviews-v1",
}


@pytest.fixture
async def server(transactional_db: None) -> AsyncIterator[MeshControlServer]:
    running = MeshControlServer("127.0.0.1:0")
    await running.start()
    yield running
    await running.stop(grace=0)


def test_the_control_plane_buckets_match_the_sidecars() -> None:
    assert LATENCY_BOUNDS_S == LATENCY_BUCKETS


def test_other_bounds_are_rebinned_by_upper_bound() -> None:
    # (0, 0.002], (0.002, 0.2], (0.2, +Inf)
    assert rebin([0.002, 0.2], [3, 4, 5]) == rebin([0.0025, 0.25], [3, 4, 5])
    counts = rebin([0.002, 0.2], [3, 4, 5])
    assert counts[LATENCY_BOUNDS_S.index(0.0025)] == 3
    assert counts[LATENCY_BOUNDS_S.index(0.25)] == 4
    assert counts[-1] == 5


async def test_delta_metrics_from_the_otel_sdk_are_added_per_edge(server: MeshControlServer) -> None:
    assert server.port is not None
    exporter = OTLPMetricExporter(
        endpoint=f"127.0.0.1:{server.port}",
        insecure=True,
        preferred_temporality={Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA},
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        resource=Resource.create({"service.name": "web", "service.namespace": "shop"}),
        metric_readers=[reader],
        views=[
            View(
                instrument_name="mesh.request.duration",
                aggregation=ExplicitBucketHistogramAggregation(LATENCY_BOUNDS_S),
            )
        ],
    )
    meter = provider.get_meter("test")
    requests = meter.create_counter("mesh.requests")
    denied = meter.create_counter("mesh.requests.denied")
    mtls = meter.create_counter("mesh.requests.mtls")
    duration = meter.create_histogram("mesh.request.duration", unit="s")
    ok = {**EDGE, "mesh.status_class": "2xx"}
    failed = {**EDGE, "mesh.status_class": "5xx"}
    for _ in range(90):
        requests.add(1, ok)
        duration.record(0.002, ok)
    for _ in range(10):
        requests.add(1, failed)
        duration.record(0.2, failed)
    denied.add(3, {**EDGE, "mesh.status_class": "4xx"})
    mtls.add(80, ok)
    await asyncio.to_thread(reader.force_flush)
    requests.add(5, ok)  # a second delta export adds to the same bucket (or the next one)
    await asyncio.to_thread(reader.force_flush)
    await asyncio.to_thread(provider.shutdown)

    rows = await sync_to_async(lambda: list(EdgeBucket.objects.filter(resolution_s=10)))()
    by_class: dict[str, dict[str, Any]] = {}
    for row in rows:
        totals = by_class.setdefault(
            row.status_class, {"requests": 0, "denied": 0, "mtls": 0, "counts": [0] * len(row.latency_counts)}
        )
        totals["mtls"] += row.mtls
        totals["requests"] += row.requests
        totals["denied"] += row.denied
        totals["counts"] = [a + b for a, b in zip(totals["counts"], row.latency_counts, strict=True)]
        assert (row.reporter, row.namespace, row.source_service) == ("outbound", "shop", "web")
        assert row.start.second % 10 == 0
    assert by_class["2xx"]["requests"] == 95
    assert by_class["5xx"]["requests"] == 10
    assert (by_class["4xx"]["denied"], by_class["2xx"]["denied"]) == (3, 0)
    assert (by_class["2xx"]["mtls"], by_class["5xx"]["mtls"]) == (80, 0)
    assert by_class["2xx"]["counts"][LATENCY_BOUNDS_S.index(0.0025)] == 90
    assert by_class["5xx"]["counts"][LATENCY_BOUNDS_S.index(0.25)] == 10


async def test_a_real_agents_exporter_lands_in_the_same_buckets(server: MeshControlServer) -> None:
    assert server.port is not None
    metrics = MeshMetrics()
    exporter = MetricExporter(f"127.0.0.1:{server.port}", {"service.name": "web", "service.namespace": "shop"}, metrics)
    for _ in range(7):
        metrics.observe(
            ("outbound", "web-v1", "reviews.shop", "reviews-v1", "true", "2xx"),  # over mutual TLS
            seconds=0.004,
            request_bytes=0,
            response_bytes=50,
            failed=False,
        )
    assert await exporter.export()
    await exporter.close()
    row = await sync_to_async(EdgeBucket.objects.get)()
    assert (row.requests, row.errors, row.response_bytes) == (7, 0, 350)
    assert row.mtls == 7, "mesh.requests.mtls reaches the graph's mTLS share"
    assert row.latency_counts[LATENCY_BOUNDS_S.index(0.005)] == 7
    assert abs(row.latency_sum_s - 0.028) < 1e-9


def _point(**attributes: str) -> metrics_pb2.NumberDataPoint:
    return metrics_pb2.NumberDataPoint(
        time_unix_nano=1_700_000_000_000_000_000,
        as_int=3,
        attributes=[
            common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v)) for k, v in attributes.items()
        ],
    )


async def test_cumulative_or_unlabelled_points_are_rejected_and_the_rest_kept(server: MeshControlServer) -> None:
    assert server.port is not None
    good = _point(**EDGE, **{"mesh.status_class": "2xx"})
    unlabelled = _point(**{"mesh.status_class": "2xx"})
    request = metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                scope_metrics=[
                    metrics_pb2.ScopeMetrics(
                        metrics=[
                            metrics_pb2.Metric(
                                name="mesh.requests",
                                sum=metrics_pb2.Sum(
                                    aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_DELTA,
                                    is_monotonic=True,
                                    data_points=[good, unlabelled],
                                ),
                            ),
                            metrics_pb2.Metric(
                                name="mesh.request.errors",
                                sum=metrics_pb2.Sum(
                                    aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
                                    is_monotonic=True,
                                    data_points=[good],
                                ),
                            ),
                            metrics_pb2.Metric(name="process.cpu.time", sum=metrics_pb2.Sum(data_points=[good])),
                        ]
                    )
                ]
            )
        ]
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)  # type: ignore[no-untyped-call]
        response = await stub.Export(request, timeout=10)
    assert response.partial_success.rejected_data_points == 2
    row = await sync_to_async(EdgeBucket.objects.get)()
    assert (row.requests, row.errors) == (3, 0)
