"""Trace search parameters."""

from __future__ import annotations

from typing import Any

from django.db import connections
from django.db.models import QuerySet
from django_filters import rest_framework as filters
from rest_framework.exceptions import ValidationError

from meshui.telemetry.models import Span, TraceSummary
from meshui.telemetry.query import DurationField, parse_tags, span_match


class DurationFilter(filters.Filter):
    field_class = DurationField


class TraceFilter(filters.FilterSet):
    namespace = filters.CharFilter(
        field_name="namespaces", lookup_expr="has_key", help_text="A namespace with a span in the trace."
    )
    service = filters.CharFilter(method="_by_span", help_text="A service with a span in the trace.")
    operation = filters.CharFilter(method="_by_span", help_text="A span name (with `service`: on the same span).")
    tags = filters.CharFilter(
        method="_by_span",
        help_text="key=value attribute matches, comma-separated or repeated; all on one span with service/operation.",
    )
    min_duration = DurationFilter(field_name="duration_us", lookup_expr="gte", help_text="Whole-trace duration.")
    max_duration = DurationFilter(field_name="duration_us", lookup_expr="lte", help_text="Whole-trace duration.")
    errors = filters.TypedChoiceFilter(
        field_name="error",
        choices=[("true", "true"), ("false", "false")],
        coerce=lambda value: value == "true",
        help_text="Only traces with (true) or without (false) an error span.",
    )
    start = filters.IsoDateTimeFilter(field_name="start", lookup_expr="gte", help_text="Traces starting at or after.")
    end = filters.IsoDateTimeFilter(field_name="start", lookup_expr="lt", help_text="Traces starting before.")

    class Meta:
        model = TraceSummary
        fields: list[str] = []

    def _by_span(self, queryset: QuerySet[TraceSummary], name: str, value: Any) -> QuerySet[TraceSummary]:
        # Applied once, for all span-level parameters together, in filter_queryset.
        return queryset

    def filter_queryset(self, queryset: QuerySet[TraceSummary]) -> QuerySet[TraceSummary]:
        queryset = super().filter_queryset(queryset)
        data = self.form.cleaned_data
        try:
            tags = parse_tags(self.data.getlist("tags") if hasattr(self.data, "getlist") else [])
        except ValueError as exc:
            raise ValidationError({"tags": [str(exc)]}) from None
        containment = connections[queryset.db].vendor == "postgresql"
        condition = span_match(data.get("service"), data.get("operation"), tags, containment=containment)
        if condition is not None:
            queryset = queryset.filter(trace_id__in=_matching_traces(Span.objects.filter(condition)))
        return queryset


# Up to this many matching spans, their trace ids are read first and the summaries looked up by id.
_CANDIDATE_SPANS = 10_000


def _matching_traces(spans: QuerySet[Span]) -> list[str] | QuerySet[Span, Any]:
    """The traces of ``spans``: a list of ids when few spans match, else a subquery.

    As a subquery under ``ORDER BY start DESC LIMIT n`` the database walks the newest traces and probes
    each for a matching span, betting that matches are spread evenly. When the newest traces hold none
    (a rare service, a rare tag) that walk reads the whole store; reading the few matching spans through
    their index first does not depend on where they are.
    """
    ids = list(spans.values_list("trace_id", flat=True)[: _CANDIDATE_SPANS + 1])
    if len(ids) <= _CANDIDATE_SPANS:
        return sorted(set(ids))
    return spans.values("trace_id")
