"""Trace queries: which traces a user may see, and the search filters that are not plain field lookups."""

from __future__ import annotations

import re
from functools import reduce
from operator import or_
from typing import Any

from django import forms
from django.db.models import Q, QuerySet

from meshui.accounts.models import namespace_access
from meshui.accounts.roles import Capability
from meshui.catalog.models import Namespace
from meshui.telemetry.models import Span, TraceSummary

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m)?\s*$")
_UNIT_US = {None: 1, "us": 1, "µs": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000}
# Attribute keys as OpenTelemetry writes them; anything else could smuggle a lookup ("a__contains").
_TAG_KEY = re.compile(r"^[A-Za-z0-9_.\-/]{1,128}$")


def visible_namespaces(user: Any) -> list[str] | None:
    """Names of the namespaces whose traces ``user`` may view; ``None`` means all."""
    ids = namespace_access(user).namespaces_with(Capability.VIEW)
    if ids is None:
        return None
    return list(Namespace.objects.filter(pk__in=ids).values_list("name", flat=True))


def visible_traces(user: Any) -> QuerySet[TraceSummary]:
    names = visible_namespaces(user)
    traces = TraceSummary.objects.all()
    if names is None:
        return traces
    return traces.filter(namespaces__has_any_keys=names) if names else traces.none()


def visible_spans(user: Any, trace_id: str) -> QuerySet[Span]:
    names = visible_namespaces(user)
    spans = Span.objects.filter(trace_id=trace_id)
    return spans if names is None else spans.filter(namespace__in=names)


class DurationField(forms.Field):
    """``250ms``, ``1.5s``, ``300us``, or a bare number of microseconds; cleaned to microseconds."""

    def to_python(self, value: Any) -> int | None:
        if value in (None, ""):
            return None
        match = _DURATION.match(str(value))
        if match is None:
            raise forms.ValidationError("Give a duration such as 250ms, 1.5s or 300us.")
        return int(float(match.group(1)) * _UNIT_US[match.group(2)])


def parse_tags(values: list[str]) -> list[tuple[str, str]]:
    """``key=value`` pairs (repeatable); raises ``ValueError`` naming the bad one."""
    pairs = []
    for raw in values:
        for item in filter(None, (part.strip() for part in raw.split(","))):
            key, sep, value = item.partition("=")
            if not sep or not _TAG_KEY.match(key) or "__" in key:
                raise ValueError(f"{item!r} is not key=value with a plain attribute key")
            pairs.append((key, value))
    return pairs


def span_match(
    service: str | None, operation: str | None, tags: list[tuple[str, str]], *, containment: bool = False
) -> Q | None:
    """Conditions one span of a trace must meet together (Jaeger's semantics).

    With ``containment`` (PostgreSQL) a tag is matched as ``attributes @> {key: value}``, which the GIN
    index on attributes answers; it also finds the value inside an array attribute. Elsewhere the key's
    value is compared.
    """
    condition = Q()
    if service:
        condition &= Q(service=service)
    if operation:
        condition &= Q(operation=operation)
    for key, value in tags:
        # Attribute values keep their JSON type: "200" finds a status code stored as the number 200.
        candidates: list[str | int | bool] = [value]
        if re.fullmatch(r"-?\d{1,18}", value):
            candidates.append(int(value))
        elif value in ("true", "false"):
            candidates.append(value == "true")
        matches = (
            Q(attributes__contains={key: candidate}) if containment else Q(**{f"attributes__{key}": candidate})
            for candidate in candidates
        )
        condition &= reduce(or_, matches)
    return condition if condition else None
