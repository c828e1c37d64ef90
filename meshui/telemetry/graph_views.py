"""GET /api/v1/graph/: the live (or past) service graph of the namespaces the caller may view."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from meshui.telemetry.graph import build_graph, graph_buckets, health_thresholds_body, touching, window_bounds
from meshui.telemetry.models import Reporter
from meshui.telemetry.query import visible_namespaces
from meshui.telemetry.serializers import GraphQuerySerializer, GraphSerializer, GraphWindowSerializer


class GraphView(APIView):
    @extend_schema(parameters=[GraphQuerySerializer], responses=GraphSerializer)
    def get(self, request: Request) -> Response:
        query = GraphQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        seconds: int = query.validated_data["window"]
        at: dt.datetime = query.validated_data.get("at") or timezone.now()
        start, end, resolution = window_bounds(at, seconds)
        buckets = graph_buckets(start, end, resolution).filter(reporter=Reporter.OUTBOUND)
        visible = visible_namespaces(request.user)
        namespace = query.validated_data.get("namespace")
        if namespace is not None:
            if visible is not None and namespace not in visible:
                raise serializers.ValidationError({"namespace": ["No namespace by that name that you may view."]})
            buckets = buckets.filter(touching([namespace]))
        elif visible is not None:
            buckets = buckets.filter(touching(visible))
        graph = build_graph(buckets, query.validated_data["group"], seconds)
        window = {"start": start, "end": end, "seconds": seconds, "resolution_s": resolution}
        # build_graph's nodes and edges are already plain JSON values with GraphSerializer's fields (a test
        # holds them to it); running thousands of them through serializer fields would cost more than the
        # query that computed them.
        return Response(
            {"window": GraphWindowSerializer(window).data, "health_thresholds": health_thresholds_body(), **graph}
        )
