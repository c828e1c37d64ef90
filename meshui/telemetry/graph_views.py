"""GET /api/v1/graph/: the live (or past) service graph of the namespaces the caller may view."""

from __future__ import annotations

import datetime as dt
from functools import reduce
from operator import or_

from django.db.models import Q
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from meshui.telemetry.graph import build_graph, window_bounds
from meshui.telemetry.models import EdgeBucket, Reporter
from meshui.telemetry.query import visible_namespaces
from meshui.telemetry.serializers import GraphQuerySerializer, GraphSerializer


def _touches(namespaces: list[str]) -> Q:
    """Buckets reported in, or pointing into, one of ``namespaces``."""
    into = [Q(destination_service__endswith=f".{name}") for name in namespaces]
    return Q(namespace__in=namespaces) | reduce(or_, into, Q(pk__in=[]))


class GraphView(APIView):
    @extend_schema(parameters=[GraphQuerySerializer], responses=GraphSerializer)
    def get(self, request: Request) -> Response:
        query = GraphQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        seconds: int = query.validated_data["window"]
        at: dt.datetime = query.validated_data.get("at") or timezone.now()
        start, end, resolution = window_bounds(at, seconds)
        buckets = EdgeBucket.objects.filter(
            resolution_s=resolution, start__gte=start, start__lt=end, reporter=Reporter.OUTBOUND
        )
        visible = visible_namespaces(request.user)
        namespace = query.validated_data.get("namespace")
        if namespace is not None:
            if visible is not None and namespace not in visible:
                raise serializers.ValidationError({"namespace": ["No namespace by that name that you may view."]})
            buckets = buckets.filter(_touches([namespace]))
        elif visible is not None:
            buckets = buckets.filter(_touches(visible))
        graph = build_graph(buckets, query.validated_data["group"], seconds)
        window = {"start": start, "end": end, "seconds": seconds, "resolution_s": resolution}
        return Response(GraphSerializer({"window": window, **graph}).data)
