"""The agent's OTLP metric export: delta sums and delta histograms per edge, decoded with opentelemetry-proto."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from proxyagent.metric_export import MetricExporter
from proxyagent.metrics import LATENCY_BUCKETS, MeshMetrics

EDGE = ("outbound", "web-v1", "reviews.shop", "reviews-v2", "true")  # over mutual TLS


def _decode(request: bytes | None) -> dict[Any, Any]:
    assert request is not None
    decoded = metrics_service_pb2.ExportMetricsServiceRequest.FromString(request)
    (resource_metrics,) = decoded.resource_metrics
    out: dict[Any, Any] = {"resource": {kv.key: kv.value.string_value for kv in resource_metrics.resource.attributes}}
    for metric in resource_metrics.scope_metrics[0].metrics:
        points = metric.sum.data_points if metric.HasField("sum") else metric.histogram.data_points
        for point in points:
            attrs = {kv.key: kv.value.string_value for kv in point.attributes}
            key = (metric.name, attrs["mesh.status_class"])
            out[key] = point
            if metric.HasField("sum"):
                assert metric.sum.aggregation_temporality == 1 and metric.sum.is_monotonic  # noqa: PT018
            else:
                assert metric.histogram.aggregation_temporality == 1
            assert attrs["mesh.destination.workload"] == "reviews-v2"
            assert attrs["mesh.mtls"] == "true"
    return out


def _observe(metrics: MeshMetrics, status_class: str, seconds: float, n: int) -> None:
    for _ in range(n):
        metrics.observe(
            (*EDGE, status_class), seconds=seconds, request_bytes=10, response_bytes=100, failed=status_class == "5xx"
        )


async def test_the_first_export_carries_everything_and_the_next_only_the_increase() -> None:
    metrics = MeshMetrics()
    exporter = MetricExporter("127.0.0.1:1", {"service.name": "web"}, metrics)
    _observe(metrics, "2xx", 0.003, 4)
    _observe(metrics, "5xx", 0.2, 1)
    request, reading, now_ns = exporter.encode_increase()
    first = _decode(request)
    assert first["resource"] == {"service.name": "web"}
    assert first[("mesh.requests", "2xx")].as_int == 4
    assert first[("mesh.request.errors", "5xx")].as_int == 1
    assert ("mesh.request.errors", "2xx") not in first, "zero increases are not sent"
    assert first[("mesh.response.body.size", "2xx")].as_int == 400
    assert first[("mesh.requests.mtls", "2xx")].as_int == 4, "the graph's mTLS share counts these"
    assert first[("mesh.requests.mtls", "5xx")].as_int == 1
    histogram = first[("mesh.request.duration", "2xx")]
    assert list(histogram.explicit_bounds) == list(LATENCY_BUCKETS)
    assert histogram.count == 4
    assert abs(histogram.sum - 0.012) < 1e-9
    assert histogram.bucket_counts[list(LATENCY_BUCKETS).index(0.005)] == 4, "3 ms lands in the (2.5 ms, 5 ms] bucket"
    assert sum(histogram.bucket_counts) == 4

    exporter._baseline, exporter._baseline_ns = reading, now_ns  # what a successful export commits
    assert exporter.encode_increase()[0] is None, "nothing happened since"
    _observe(metrics, "2xx", 20.0, 2)
    second = _decode(exporter.encode_increase()[0])
    assert second[("mesh.requests", "2xx")].as_int == 2
    assert ("mesh.requests", "5xx") not in second
    assert second[("mesh.request.duration", "2xx")].bucket_counts[-2] == 2, "20 s lands in (10 s, 30 s]"
    assert second[("mesh.request.duration", "2xx")].start_time_unix_nano == now_ns


async def test_a_failed_export_keeps_the_increase_for_the_next() -> None:
    metrics = MeshMetrics()
    exporter = MetricExporter("127.0.0.1:1", {"service.name": "web"}, metrics)  # nothing listens there
    _observe(metrics, "2xx", 0.001, 3)
    assert not await exporter.export()
    _observe(metrics, "2xx", 0.001, 2)
    assert _decode(exporter.encode_increase()[0])[("mesh.requests", "2xx")].as_int == 5
    await exporter._client.close()


def test_the_prometheus_exposition_has_cumulative_buckets_and_in_flight_gauges() -> None:
    metrics = MeshMetrics()
    _observe(metrics, "2xx", 0.001, 2)  # exactly on a bound: counted in that bound's bucket
    _observe(metrics, "2xx", 0.003, 1)
    metrics.in_flight_gauge("outbound", "reviews.shop").value += 1
    lines = metrics.exposition().decode().splitlines()

    def sample(prefix: str) -> float:
        (line,) = [line for line in lines if line.startswith(prefix)]
        return float(line.rsplit(" ", 1)[1])

    buckets = {
        line.split('le="', 1)[1].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("mesh_request_duration_seconds_bucket")
    }
    assert (buckets["0.0005"], buckets["0.001"], buckets["0.0025"], buckets["0.005"], buckets["+Inf"]) == (
        0,
        2,
        2,
        3,
        3,
    )
    assert sample("mesh_request_duration_seconds_count") == 3
    assert abs(sample("mesh_request_duration_seconds_sum") - 0.005) < 1e-9
    assert sample("mesh_requests_total") == 3
    assert sample('mesh_requests_in_flight{destination_service="reviews.shop",direction="outbound"}') == 1


def test_only_requests_over_mutual_tls_count_as_mtls() -> None:
    metrics = MeshMetrics()
    exporter = MetricExporter("127.0.0.1:1", {"service.name": "web"}, metrics)
    plaintext = (*EDGE[:4], "false", "2xx")
    for _ in range(3):
        metrics.observe(plaintext, seconds=0.001, request_bytes=0, response_bytes=0, failed=False)
    _observe(metrics, "2xx", 0.001, 2)
    decoded = metrics_service_pb2.ExportMetricsServiceRequest.FromString(exporter.encode_increase()[0] or b"")
    totals: dict[str, int] = {}
    for metric in decoded.resource_metrics[0].scope_metrics[0].metrics:
        if metric.HasField("sum"):
            totals[metric.name] = sum(point.as_int for point in metric.sum.data_points)
    assert totals["mesh.requests"] == 5
    assert totals["mesh.requests.mtls"] == 2
