"""Golden-signal metrics, served in Prometheus text format on the admin HTTP port."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LABELS = ("direction", "source_workload", "destination_service", "destination_workload", "status_class")
_FLOW_LABELS = ("direction", "destination_service")
# Seconds; dense below 100 ms where a mesh hop lives, sparse above for slow apps.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(slots=True)
class _Series:
    requests: Counter
    latency: Histogram
    request_bytes: Counter
    response_bytes: Counter
    errors: Counter


class MeshMetrics:
    """One registry per agent (not the process-global one), so tests can run several agents in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("mesh_requests", "Requests completed.", LABELS, registry=self.registry)
        self.errors = Counter(
            "mesh_request_errors", "Requests that ended in a 5xx or a mesh error.", LABELS, registry=self.registry
        )
        self.latency = Histogram(
            "mesh_request_duration_seconds",
            "Time from the request's first byte to the response's last.",
            LABELS,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.request_bytes = Counter("mesh_request_bytes", "Request body bytes.", LABELS, registry=self.registry)
        self.response_bytes = Counter("mesh_response_bytes", "Response body bytes.", LABELS, registry=self.registry)
        self.in_flight = Gauge("mesh_requests_in_flight", "Requests in progress.", _FLOW_LABELS, registry=self.registry)
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
        self._children: dict[tuple[str, str, str, str, str], _Series] = {}
        self._in_flight_children: dict[tuple[str, str], Gauge] = {}

    def _series(self, labels: tuple[str, str, str, str, str]) -> _Series:
        # labels() costs several microseconds (a lock and label validation); a request
        # path sees few distinct label sets, so their children are looked up once.
        series = self._children.get(labels)
        if series is None:
            series = _Series(
                self.requests.labels(*labels),
                self.latency.labels(*labels),
                self.request_bytes.labels(*labels),
                self.response_bytes.labels(*labels),
                self.errors.labels(*labels),
            )
            self._children[labels] = series
        return series

    def observe(
        self,
        labels: tuple[str, str, str, str, str],
        *,
        seconds: float,
        request_bytes: int,
        response_bytes: int,
        failed: bool,
    ) -> None:
        series = self._series(labels)
        series.requests.inc()
        series.latency.observe(seconds)
        if request_bytes:
            series.request_bytes.inc(request_bytes)
        if response_bytes:
            series.response_bytes.inc(response_bytes)
        if failed:
            series.errors.inc()

    def in_flight_gauge(self, direction: str, destination_service: str) -> Gauge:
        key = (direction, destination_service)
        gauge = self._in_flight_children.get(key)
        if gauge is None:
            gauge = self._in_flight_children[key] = self.in_flight.labels(direction, destination_service)
        return gauge

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def status_class(status: int) -> str:
    return f"{status // 100}xx"
