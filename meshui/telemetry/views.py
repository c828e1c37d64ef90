"""Trace search and trace detail, scoped to the namespaces the caller may view."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.filters import OrderingFilter
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from meshui.telemetry.critical_path import Timing, critical_path
from meshui.telemetry.filters import TraceFilter
from meshui.telemetry.models import Span, TraceSummary
from meshui.telemetry.query import visible_spans, visible_traces
from meshui.telemetry.serializers import SpanSerializer, TraceDetailSerializer, TraceSummarySerializer


class TraceSort(OrderingFilter):
    ordering_param = "sort"


class TraceCursorPagination(CursorPagination):
    page_size = 20
    page_size_query_param = "limit"
    max_page_size = 500
    ordering = "-start"


_MICROSECOND = dt.timedelta(microseconds=1)


def _micros(span: Span, origin: dt.datetime) -> tuple[int, int]:
    return (
        (span.start - origin) // _MICROSECOND,
        (span.end - origin) // _MICROSECOND,
    )


class TraceViewSet(viewsets.ReadOnlyModelViewSet[TraceSummary]):
    """Traces (one summary per trace); a trace is visible when it touched a namespace the caller may view."""

    serializer_class = TraceSummarySerializer
    filterset_class = TraceFilter
    filter_backends = [DjangoFilterBackend, TraceSort]
    ordering_fields = ["start", "duration_us", "span_count"]
    ordering = ["-start"]
    pagination_class = TraceCursorPagination
    lookup_field = "trace_id"
    lookup_value_regex = "[0-9a-f]{32}"

    def get_queryset(self) -> QuerySet[TraceSummary]:
        return visible_traces(self.request.user)

    @extend_schema(responses=TraceDetailSerializer)
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        summary = self.get_object()
        spans = list(visible_spans(request.user, summary.trace_id).order_by("start", "span_id"))
        if not spans:
            raise Http404
        ids = {span.span_id for span in spans}
        children: dict[str, list[str]] = {}
        for span in spans:
            if span.parent_span_id in ids:
                children.setdefault(span.parent_span_id, []).append(span.span_id)
        roots = [span.span_id for span in spans if span.parent_span_id not in ids]
        depths = _depths(roots, children)
        origin = summary.start
        timings = [Timing(s.span_id, s.parent_span_id, *_micros(s, origin)) for s in spans]
        root = next((s for s in spans if s.span_id in roots and not s.parent_span_id), spans[0])
        path = critical_path(timings, root.span_id)
        context = {**self.get_serializer_context(), "children": children, "depths": depths}
        return Response(
            {
                "trace": TraceSummarySerializer(summary, context=context).data,
                "spans": SpanSerializer(spans, many=True, context=context).data,
                "roots": roots,
                "critical_path": [
                    {"span_id": seg.span_id, "start_us": seg.start_us, "end_us": seg.end_us} for seg in path
                ],
            }
        )


def _depths(roots: list[str], children: dict[str, list[str]]) -> dict[str, int]:
    depths: dict[str, int] = {}
    stack = [(root, 0) for root in roots]
    while stack:
        span_id, depth = stack.pop()
        if span_id in depths:
            continue
        depths[span_id] = depth
        stack.extend((child, depth + 1) for child in children.get(span_id, ()))
    return depths
