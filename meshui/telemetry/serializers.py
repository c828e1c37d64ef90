from __future__ import annotations

from typing import Any

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
