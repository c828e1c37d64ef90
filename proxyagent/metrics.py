"""Golden-signal metrics, served in Prometheus text format on the admin HTTP port.

The per-request series are plain integers on an ``EdgeSeries`` per label set,
bumped with attribute additions: a registry's counters check their labels on
every increment, which cost more per request than parsing it. A collector
turns them into metric families when /metrics (or the OTLP metric export)
reads the registry (``metric_registry``). Everything runs on the agent's one
event loop thread, so no lock is needed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from proxyagent.metric_registry import Counter, Gauge, MetricFamily, Registry

# ``mtls``: "true" when the request crossed between sidecars over mutual TLS (inbound: the caller's
# connection; outbound: the connection to the endpoint), else "false".
LABELS = ("direction", "source_workload", "destination_service", "destination_workload", "mtls", "status_class")
_FLOW_LABELS = ("direction", "destination_service")
# Seconds; dense below 100 ms where a mesh hop lives, sparse above for slow apps.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The "le" labels: the repr of each bound (these bounds need no exponent), as prometheus_client writes them too.
_LE = (*[repr(float(b)) for b in LATENCY_BUCKETS], "+Inf")

EdgeLabels = tuple[str, str, str, str, str, str]
# The metric names ``_SeriesCollector`` produces.
_SERIES_NAMES = (
    "mesh_requests_total",
    "mesh_request_errors_total",
    "mesh_request_duration_seconds",
    "mesh_request_bytes_total",
    "mesh_response_bytes_total",
    "mesh_requests_in_flight",
)


class EdgeSeries:
    """Counts for one label set; ``buckets`` holds one count per latency bound plus +Inf (not cumulative)."""

    __slots__ = ("buckets", "duration_sum", "errors", "request_bytes", "requests", "response_bytes")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.request_bytes = 0
        self.response_bytes = 0
        self.duration_sum = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)

    def observe(self, seconds: float, request_bytes: int, response_bytes: int, failed: bool) -> None:
        self.requests += 1
        self.duration_sum += seconds
        # bisect_left: a duration equal to a bound belongs to that bound's bucket (Prometheus' "le").
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.request_bytes += request_bytes
        self.response_bytes += response_bytes
        if failed:
            self.errors += 1


class InFlight:
    """Requests in progress towards one destination in one direction."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class MeshMetrics:
    """One registry per agent (not the process-global one), so tests can run several agents in one process."""

    def __init__(self) -> None:
        self.registry = Registry()
        self._edges: dict[EdgeLabels, EdgeSeries] = {}
        self._in_flight: dict[tuple[str, str], InFlight] = {}
        self.registry.register(_SeriesCollector(self._edges, self._in_flight), _SERIES_NAMES)
        self.mesh_errors = Counter(
            "mesh_errors",
            "Errors the mesh itself answered with, by code.",
            ("direction", "code"),
            registry=self.registry,
        )
        self.config_version = Gauge(
            "mesh_config_version", "The config snapshot version applied.", registry=self.registry
        )
        self.config_rejected = Counter(
            "mesh_config_rejected", "Config snapshots rejected as invalid or stale.", registry=self.registry
        )
        # Traffic policy (the policy path): rare events, so the registry's own counters. Labels are bounded
        # by the configured destinations and small fixed sets of reasons.
        self.retries = Counter(
            "mesh_retries",
            "Failed tries of outbound requests and what became of them: outcome 'retried' (on another endpoint "
            "where possible) or 'budget_exhausted' (the retry budget refused it; the failure was answered).",
            ("destination_service", "reason", "outcome"),
            registry=self.registry,
        )
        self.circuit_open = Counter(
            "mesh_circuit_open",
            "Outbound requests answered 503 circuit_open at once, by the circuit-breaker limit reached.",
            ("destination_service", "limit"),
            registry=self.registry,
        )
        self.ejections = Counter(
            "mesh_ejections",
            "Endpoints ejected by outlier detection, by the run of failures that ejected them.",
            ("destination_service", "reason"),
            registry=self.registry,
        )
        self.ejections_skipped = Counter(
            "mesh_ejections_skipped",
            "Ejections outlier detection called for but max_ejection_percent did not allow.",
            ("destination_service", "reason"),
            registry=self.registry,
        )
        self.ejected_endpoints = Gauge(
            "mesh_ejected_endpoints",
            "Endpoints currently ejected by outlier detection.",
            ("destination_service",),
            registry=self.registry,
        )
        # Mutual TLS: rare events (per connection, never per request).
        self.plaintext_refused = Counter(
            "mesh_plaintext_refused",
            "Plaintext connections the inbound listener closed because peer authentication is STRICT.",
            registry=self.registry,
        )
        self.tls_refused = Counter(
            "mesh_tls_refused",
            "Connections refused at the TLS layer, by side and reason: handshake (a chain that does not verify, "
            "or the peer refused ours), no_identity (no SPIFFE id in the peer's certificate), identity_mismatch "
            "(the server is not the endpoint's expected identity), no_certificate (this agent has none yet).",
            ("direction", "reason"),
            registry=self.registry,
        )
        # Authorization: counted by the callee's sidecar that decided (the service page's denied callers) and by
        # the caller's that got the answer (the graph's edges are the callers' reports).
        self.requests_denied = Counter(
            "mesh_requests_denied",
            "Requests refused by the callee's authorization policy (403 denied), by edge: inbound where this "
            "sidecar refused them, outbound where the callee's sidecar did.",
            LABELS,
            registry=self.registry,
        )
        self.faults_injected = Counter(
            "mesh_faults_injected",
            "Faults injected into outbound requests by traffic policy, by kind (delay, abort).",
            ("destination_service", "kind"),
            registry=self.registry,
        )

    def count_denied(self, edge: tuple[str, str, str, str, str], status: int) -> None:
        self.requests_denied.labels(*edge, status_class(status)).inc()

    def series(self, labels: EdgeLabels) -> EdgeSeries:
        series = self._edges.get(labels)
        if series is None:
            series = self._edges[labels] = EdgeSeries()
        return series

    def observe(
        self,
        labels: EdgeLabels,
        *,
        seconds: float,
        request_bytes: int,
        response_bytes: int,
        failed: bool,
    ) -> None:
        self.series(labels).observe(seconds, request_bytes, response_bytes, failed)

    def in_flight_gauge(self, direction: str, destination_service: str) -> InFlight:
        key = (direction, destination_service)
        gauge = self._in_flight.get(key)
        if gauge is None:
            gauge = self._in_flight[key] = InFlight()
        return gauge

    def exposition(self) -> bytes:
        return self.registry.exposition()


class _SeriesCollector:
    """The edge series and in-flight gauges as metric families, read when the registry is collected."""

    def __init__(self, edges: dict[EdgeLabels, EdgeSeries], in_flight: dict[tuple[str, str], InFlight]) -> None:
        self._edges = edges
        self._in_flight = in_flight

    def collect(self) -> Iterator[MetricFamily]:
        requests = MetricFamily("mesh_requests", "Requests completed.", "counter", LABELS)
        errors = MetricFamily("mesh_request_errors", "Requests that ended in a 5xx or a mesh error.", "counter", LABELS)
        latency = MetricFamily(
            "mesh_request_duration_seconds", "Time from the request's first byte to the response's last.", "histogram",
            LABELS,
        )  # fmt: skip
        request_bytes = MetricFamily("mesh_request_bytes", "Request body bytes.", "counter", LABELS)
        response_bytes = MetricFamily("mesh_response_bytes", "Response body bytes.", "counter", LABELS)
        # Copies: a collection may run outside the event loop thread (a test, a thread-based exporter).
        for labels, series in list(self._edges.items()):
            requests.add(labels, series.requests)
            errors.add(labels, series.errors)
            request_bytes.add(labels, series.request_bytes)
            response_bytes.add(labels, series.response_bytes)
            cumulative, buckets = 0, []
            for le, count in zip(_LE, series.buckets, strict=True):
                cumulative += count
                buckets.append((le, float(cumulative)))
            latency.add_histogram(labels, buckets, series.duration_sum)
        in_flight = MetricFamily("mesh_requests_in_flight", "Requests in progress.", "gauge", _FLOW_LABELS)
        for key, gauge in list(self._in_flight.items()):
            in_flight.add(key, gauge.value)
        yield from (requests, errors, latency, request_bytes, response_bytes, in_flight)


def status_class(status: int) -> str:
    return _STATUS_CLASSES[status // 100] if 0 <= status < 600 else f"{status // 100}xx"


_STATUS_CLASSES = tuple(f"{n}xx" for n in range(6))
