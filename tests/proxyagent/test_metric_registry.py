"""The agent's metric registry: what it serves parses with prometheus_client's parser and says what was counted."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxyagent.metric_registry import Counter, Gauge, MetricFamily, Registry
from proxyagent.metrics import LABELS, MeshMetrics


def parsed(registry: Registry) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name → sorted label pairs → value, as Prometheus' own parser reads the exposition."""
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(registry.exposition().decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_counters_and_gauges_round_trip_through_the_text_format() -> None:
    registry = Registry()
    errors = Counter("mesh_errors", "Errors, by code.", ("direction", "code"), registry=registry)
    Counter("mesh_config_rejected", "Rejected snapshots.", registry=registry)
    version = Gauge("mesh_config_version", "Version applied.", registry=registry)
    ejected = Gauge("mesh_ejected_endpoints", "Ejected now.", ("destination_service",), registry=registry)
    errors.labels("outbound", "no_route").inc()
    errors.labels("outbound", "no_route").inc(2)
    errors.labels("inbound", "denied").inc()
    version.set(41)
    version.inc()
    ejected.labels("reviews.shop").set(3)
    ejected.labels("reviews.shop").dec()

    samples = parsed(registry)

    assert samples["mesh_errors_total"] == {
        (("code", "no_route"), ("direction", "outbound")): 3.0,
        (("code", "denied"), ("direction", "inbound")): 1.0,
    }
    # A counter without labels is served from the start, at zero; one with labels only once it has a series.
    assert samples["mesh_config_rejected_total"] == {(): 0.0}
    assert samples["mesh_config_version"] == {(): 42.0}
    assert samples["mesh_ejected_endpoints"] == {(("destination_service", "reviews.shop"),): 2.0}
    text = registry.exposition().decode()
    assert "# TYPE mesh_errors_total counter\n" in text
    assert "# TYPE mesh_config_version gauge\n" in text
    assert registry.get_sample_value("mesh_errors_total", {"direction": "inbound", "code": "denied"}) == 1.0
    assert registry.get_sample_value("mesh_errors_total", {"direction": "inbound", "code": "other"}) is None


def test_label_values_and_help_are_escaped() -> None:
    registry = Registry()
    counter = Counter("odd", 'Help with a \\ backslash\nand a newline and "quotes".', ("value",), registry=registry)
    awkward = 'a "quoted" \\ value\nover two lines'
    counter.labels(awkward).inc()

    families = list(text_string_to_metric_families(registry.exposition().decode()))

    assert families[0].documentation == 'Help with a \\ backslash\nand a newline and "quotes".'
    assert families[0].samples[0].labels == {"value": awkward}


def test_histograms_serve_buckets_count_and_sum() -> None:
    registry = Registry()

    class Latency:
        def collect(self) -> list[MetricFamily]:
            family = MetricFamily("latency_seconds", "Latency.", "histogram", ("service",))
            family.add_histogram(("web",), [("0.1", 2.0), ("1.0", 5.0), ("+Inf", 6.0)], 3.25)
            return [family]

    registry.register(Latency(), ["latency_seconds"])
    families = list(text_string_to_metric_families(registry.exposition().decode()))

    assert families[0].type == "histogram"
    by_name = {(s.name, s.labels.get("le", "")): s.value for s in families[0].samples}
    assert by_name == {
        ("latency_seconds_bucket", "0.1"): 2.0,
        ("latency_seconds_bucket", "1.0"): 5.0,
        ("latency_seconds_bucket", "+Inf"): 6.0,
        ("latency_seconds_count", ""): 6.0,
        ("latency_seconds_sum", ""): 3.25,
    }


def test_special_values_are_written_as_prometheus_spells_them() -> None:
    registry = Registry()
    gauge = Gauge("g", "A gauge.", ("case",), registry=registry)
    gauge.labels("inf").set(math.inf)
    gauge.labels("minus_inf").set(-math.inf)
    gauge.labels("nan").set(math.nan)
    gauge.labels("big").set(1e21)

    text = registry.exposition().decode()
    samples = parsed(registry)["g"]

    assert 'g{case="inf"} +Inf\n' in text
    assert 'g{case="minus_inf"} -Inf\n' in text
    assert 'g{case="nan"} NaN\n' in text
    assert samples[(("case", "big"),)] == 1e21


def test_misuse_is_refused_rather_than_served_wrong() -> None:
    registry = Registry()
    counter = Counter("c", "A counter.", ("a", "b"), registry=registry)
    plain = Counter("p", "Plain.", registry=registry)

    with pytest.raises(ValueError, match="1 label values for 2"):
        counter.labels("only-one")
    with pytest.raises(ValueError, match="has labels"):
        counter.inc()
    with pytest.raises(ValueError, match="no labels"):
        plain.labels("x")
    with pytest.raises(ValueError, match="only goes up"):
        plain.inc(-1)
    with pytest.raises(ValueError, match="registered twice: c_total"):
        Counter("c", "The same name again.", registry=registry)
    assert parsed(registry) == {"p_total": {(): 0.0}}


def test_the_agents_metrics_parse_whole() -> None:
    metrics = MeshMetrics()
    edge = ("outbound", "web-v1", "reviews.shop", "reviews-v1", "true", "2xx")
    metrics.observe(edge, seconds=0.003, request_bytes=10, response_bytes=200, failed=False)
    metrics.observe(edge, seconds=0.2, request_bytes=0, response_bytes=5, failed=True)
    metrics.in_flight_gauge("outbound", "reviews.shop").value = 2
    metrics.count_denied(edge[:5], 403)
    metrics.mesh_errors.labels("outbound", "no_route").inc()

    samples = parsed(metrics.registry)
    labels = tuple(sorted(zip(LABELS, edge, strict=True)))

    assert samples["mesh_requests_total"][labels] == 2.0
    assert samples["mesh_request_errors_total"][labels] == 1.0
    assert samples["mesh_request_bytes_total"][labels] == 10.0
    assert samples["mesh_response_bytes_total"][labels] == 205.0
    assert samples["mesh_request_duration_seconds_count"][labels] == 2.0
    assert samples["mesh_request_duration_seconds_sum"][labels] == pytest.approx(0.203)
    assert samples["mesh_request_duration_seconds_bucket"][tuple(sorted((*labels, ("le", "0.005"))))] == 1.0
    assert samples["mesh_request_duration_seconds_bucket"][tuple(sorted((*labels, ("le", "+Inf"))))] == 2.0
    denied = tuple(sorted(zip(LABELS, (*edge[:5], "4xx"), strict=True)))
    assert samples["mesh_requests_denied_total"][denied] == 1.0
    assert samples["mesh_requests_in_flight"][(("destination_service", "reviews.shop"), ("direction", "outbound"))] == 2
    assert samples["mesh_config_version"] == {(): 0.0}
