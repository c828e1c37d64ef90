"""A service's metrics over time, and the traces behind one edge of the graph."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Q
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from meshui.accounts.roles import Capability
from meshui.accounts.scoping import restrict_to_namespaces
from meshui.catalog.models import Service
from meshui.telemetry.graph import Totals, buckets_in, window_bounds
from meshui.telemetry.models import Reporter, Span, TraceSummary
from meshui.telemetry.query import visible_traces
from meshui.telemetry.serializers import (
    EdgeTracesQuerySerializer,
    SeriesQuerySerializer,
    ServiceMetricsSerializer,
    TraceSummarySerializer,
)
from meshui.telemetry.views import TraceCursorPagination


def _series(buckets: Any, start: dt.datetime, points: int, step: int) -> list[dict[str, Any]]:
    totals = [Totals() for _ in range(points)]
    for bucket in buckets:
        index = int((bucket.start - start).total_seconds()) // step
        if 0 <= index < points:
            totals[index].add(bucket)
    series = []
    for index, total in enumerate(totals):
        described = total.describe(step)
        series.append(
            {
                "time": start + dt.timedelta(seconds=index * step),
                **{k: described[k] for k in ("requests", "rps", "error_rate", "p50_ms", "p95_ms", "p99_ms")},
                "in_flight": total.in_flight(step),
            }
        )
    return series


class ServiceMetricsView(APIView):
    """Time series of rps, error rate, p50/p95/p99 and in-flight, inbound and outbound, for one service."""

    @extend_schema(parameters=[SeriesQuerySerializer], responses=ServiceMetricsSerializer)
    def get(self, request: Request, pk: int) -> Response:
        visible = restrict_to_namespaces(Service.objects.select_related("namespace"), request.user, Capability.VIEW)
        service = get_object_or_404(visible, pk=pk)
        query = SeriesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        seconds: int = query.validated_data["window"]
        start, end, resolution = window_bounds(timezone.now(), seconds)
        step = max(query.validated_data["step"], resolution)
        points = max(1, seconds // step)
        start = end - dt.timedelta(seconds=points * step)
        key = f"{service.name}.{service.namespace.name}"
        in_window = buckets_in(start, end, resolution)
        inbound = in_window.filter(reporter=Reporter.INBOUND, destination_service=key)
        outbound = in_window.filter(
            reporter=Reporter.OUTBOUND, source_service=service.name, namespace=service.namespace.name
        )
        body = {
            "service": key,
            "window": {"start": start, "end": end, "seconds": points * step, "resolution_s": resolution},
            "step_s": step,
            "inbound": _series(inbound, start, points, step),
            "outbound": _series(outbound, start, points, step),
        }
        return Response(ServiceMetricsSerializer(body).data)


class EdgeTracesView(generics.ListAPIView[TraceSummary]):
    """Traces with a span on the edge ``source`` → ``destination``, newest first.

    ``source`` is a graph node: ``service.namespace`` or ``workload.namespace``;
    ``destination`` is the destination service (``name.namespace``).
    """

    serializer_class = TraceSummarySerializer
    pagination_class = TraceCursorPagination
    filter_backends: list[Any] = []

    @extend_schema(parameters=[EdgeTracesQuerySerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        query = EdgeTracesQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        since = timezone.now() - dt.timedelta(seconds=query.validated_data["window"])
        name, _, namespace = self.kwargs["source"].rpartition(".")
        source = Q(service=name, namespace=namespace) | Q(source_workload=name, namespace=namespace)
        on_edge = Span.objects.filter(source, destination_service=self.kwargs["destination"], start__gte=since)
        return visible_traces(self.request.user).filter(trace_id__in=on_edge.values("trace_id"))
