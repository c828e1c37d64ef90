"""A service's metrics over time, and the traces behind one edge of the graph."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Q, QuerySet, Sum
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
from meshui.telemetry.graph import buckets_in, series, service_sides, window_bounds
from meshui.telemetry.models import EdgeBucket, Span, TraceSummary
from meshui.telemetry.query import visible_traces
from meshui.telemetry.serializers import (
    EdgeTracesQuerySerializer,
    SeriesQuerySerializer,
    ServiceMetricsSerializer,
    TraceSummarySerializer,
)
from meshui.telemetry.views import TraceCursorPagination


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
        inbound, outbound = service_sides(buckets_in(start, end, resolution), key)
        body = {
            "service": key,
            "window": {"start": start, "end": end, "seconds": points * step, "resolution_s": resolution},
            "step_s": step,
            "inbound": series(inbound, start, points, step),
            "outbound": series(outbound, start, points, step),
            "denied_callers": denied_callers(inbound, points * step),
        }
        return Response(ServiceMetricsSerializer(body).data)


TOP_DENIED_CALLERS = 10


def denied_callers(inbound: QuerySet[EdgeBucket], seconds: int) -> list[dict[str, Any]]:
    """The callers refused most often, by the workload they called from."""
    rows = (
        inbound.filter(denied__gt=0)
        .order_by()
        .values("source_workload")
        .annotate(total=Sum("denied"))
        .order_by("-total", "source_workload")[:TOP_DENIED_CALLERS]
    )
    return [
        {
            "source_workload": row["source_workload"],
            "denied": row["total"],
            "denied_rps": round(row["total"] / seconds, 3),
        }
        for row in rows
    ]


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
