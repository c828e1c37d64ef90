from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from meshui.telemetry.models import Span, TraceSummary


class TraceSummarySerializer(serializers.ModelSerializer[TraceSummary]):
    services = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = TraceSummary
        fields = [
            "trace_id",
            "root_service",
            "root_operation",
            "start",
            "end",
            "duration_us",
            "span_count",
            "error",
            "services",
        ]
        read_only_fields = fields


class SpanSerializer(serializers.ModelSerializer[Span]):
    kind = serializers.CharField(source="get_kind_display", read_only=True)
    status = serializers.CharField(source="get_status_display", read_only=True)
    children = serializers.SerializerMethodField()
    depth = serializers.SerializerMethodField()

    class Meta:
        model = Span
        fields = [
            "span_id",
            "parent_span_id",
            "service",
            "namespace",
            "operation",
            "kind",
            "start",
            "end",
            "duration_us",
            "status",
            "status_message",
            "attributes",
            "events",
            "resource",
            "source_workload",
            "destination_service",
            "destination_workload",
            "children",
            "depth",
        ]
        read_only_fields = fields

    def get_children(self, span: Span) -> list[str]:
        tree: dict[str, list[str]] = self.context["children"]
        return tree.get(span.span_id, [])

    def get_depth(self, span: Span) -> int:
        depths: dict[str, int] = self.context["depths"]
        return depths[span.span_id]


class SegmentSerializer(serializers.Serializer[Any]):
    span_id = serializers.CharField()
    start_us = serializers.IntegerField(help_text="Microseconds since the trace's start.")
    end_us = serializers.IntegerField(help_text="Microseconds since the trace's start.")


class TraceDetailSerializer(serializers.Serializer[Any]):
    trace = TraceSummarySerializer()
    spans = SpanSerializer(many=True, help_text="Ordered by start; `children` and `depth` describe the tree.")
    roots = serializers.ListField(child=serializers.CharField(), help_text="Spans whose parent is not here.")
    critical_path = SegmentSerializer(many=True)


GRAPH_HEALTH = ["idle", "healthy", "degraded", "failing"]
_WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW_S = 7 * 86400


@extend_schema_field(OpenApiTypes.STR)
class WindowField(serializers.Field[int, str, str, Any]):
    """``30s``, ``5m``, ``1h``, ``7d`` → seconds."""

    default_error_messages = {
        "invalid": "Give a window such as 30s, 5m, 1h or 1d (at most 7d).",
    }

    def to_internal_value(self, data: Any) -> int:
        text = str(data).strip()
        unit = _WINDOW_UNITS.get(text[-1:]) if text else None
        if unit is None or not text[:-1].isdigit():
            self.fail("invalid")
        seconds = int(text[:-1]) * unit
        if not 10 <= seconds <= MAX_WINDOW_S:
            self.fail("invalid")
        return seconds

    def to_representation(self, value: int) -> str:
        return f"{value}s"


class GraphQuerySerializer(serializers.Serializer[Any]):
    window = WindowField(default=300, help_text="How far back from `at`: 30s, 5m, 1h, 1d (default 5m).")
    namespace = serializers.CharField(required=False, help_text="Only edges from or into this namespace.")
    group = serializers.ChoiceField(choices=["service", "workload"], default="service")
    at = serializers.DateTimeField(required=False, help_text="The window's end (default now): a past graph.")


class _Rates(serializers.Serializer[Any]):
    requests = serializers.IntegerField()
    rps = serializers.FloatField()
    error_rate = serializers.FloatField()
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)
    p99_ms = serializers.FloatField(allow_null=True)


class _Stats(_Rates):
    bytes = serializers.IntegerField()
    mtls_share = serializers.FloatField()
    denied_rps = serializers.FloatField()
    health = serializers.ChoiceField(choices=GRAPH_HEALTH)


class GraphNodeSerializer(_Stats):
    id = serializers.CharField()
    name = serializers.CharField()
    namespace = serializers.CharField()


class GraphEdgeSerializer(_Stats):
    # The metaclass moves declared fields off the class, so this does not shadow Field.source.
    source = serializers.CharField()  # type: ignore[assignment]
    destination = serializers.CharField()


class GraphWindowSerializer(serializers.Serializer[Any]):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    seconds = serializers.IntegerField()
    resolution_s = serializers.IntegerField()


class HealthThresholdsSerializer(serializers.Serializer[Any]):
    degraded = serializers.FloatField(help_text="The error rate from which a node or edge is degraded.")
    failing = serializers.FloatField(help_text="The error rate from which a node or edge is failing.")


class GraphSerializer(serializers.Serializer[Any]):
    window = GraphWindowSerializer()
    health_thresholds = HealthThresholdsSerializer(
        help_text="How `health` was judged, so a client folding live deltas in judges the same way."
    )
    nodes = GraphNodeSerializer(many=True, help_text="Stats of a node are of the traffic into it.")
    edges = GraphEdgeSerializer(many=True, help_text="As the caller's sidecar reported them.")


class SeriesQuerySerializer(serializers.Serializer[Any]):
    window = WindowField(default=3600, help_text="How far back from now: 5m, 1h, 1d (default 1h).")
    step = WindowField(default=60, help_text="Width of each point: 10s, 1m, 5m (default 1m; at least the resolution).")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["step"] > attrs["window"]:
            raise serializers.ValidationError({"step": ["A step cannot be longer than the window."]})
        if attrs["window"] // attrs["step"] > 1000:
            raise serializers.ValidationError({"step": ["At most 1000 points: use a longer step."]})
        return attrs


class SeriesPointSerializer(_Rates):
    time = serializers.DateTimeField(help_text="The start of the step.")
    in_flight = serializers.FloatField(
        help_text="Mean requests in flight during the step (Little's law: the seconds the requests that ended "
        "in it took, over the step's length)."
    )


class DeniedCallerSerializer(serializers.Serializer[Any]):
    source_workload = serializers.CharField()
    denied = serializers.IntegerField()
    denied_rps = serializers.FloatField()


class ServiceMetricsSerializer(serializers.Serializer[Any]):
    service = serializers.CharField(help_text="name.namespace")
    window = GraphWindowSerializer()
    step_s = serializers.IntegerField()
    inbound = SeriesPointSerializer(many=True, help_text="Calls into the service, as its sidecars saw them.")
    outbound = SeriesPointSerializer(many=True, help_text="Calls the service made, as its sidecars saw them.")
    denied_callers = DeniedCallerSerializer(
        many=True,
        help_text="Callers an authorization policy refused most in the window, as the service's sidecars saw them.",
    )


class EdgeTracesQuerySerializer(serializers.Serializer[Any]):
    window = WindowField(default=900, help_text="How far back from now (default 15m).")
