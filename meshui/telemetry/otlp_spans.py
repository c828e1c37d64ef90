"""OTLP trace export requests turned into span rows (``SpanRow``), span by span, refusing what cannot be stored.

A span with a malformed id or impossible times is rejected on its own (and
reported back in OTLP's ``partial_success``); its neighbours in the batch are
kept. Attribute values keep their JSON type; sizes are bounded so one client
cannot store unbounded blobs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from meshui.telemetry.models import SpanKind, SpanStatus
from meshui.telemetry.span_store import SpanRow

MAX_ATTRIBUTES = 128
MAX_EVENTS = 128
MAX_STRING = 4096
MAX_DEPTH = 4
_UNKNOWN_SERVICE = "unknown_service"
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)


@dataclass
class Decoded:
    spans: list[SpanRow] = field(default_factory=list)
    rejected: int = 0
    # The first reason a span was rejected, for the client's partial_success message.
    reason: str = ""

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.reason = self.reason or reason


def _value(value: common_pb2.AnyValue, depth: int = 0) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value[:MAX_STRING]
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return value.bytes_value[: MAX_STRING // 2].hex()
    if depth >= MAX_DEPTH:
        return None
    if kind == "array_value":
        return [_value(v, depth + 1) for v in value.array_value.values[:MAX_ATTRIBUTES]]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values, depth + 1)
    return None


def attributes(pairs: Any, depth: int = 0) -> dict[str, Any]:
    """OTLP ``KeyValue``s as a JSON object (the first MAX_ATTRIBUTES of them)."""
    return {kv.key[:MAX_STRING]: _value(kv.value, depth) for kv in list(pairs)[:MAX_ATTRIBUTES]}


def _edge_value(attrs: dict[str, Any], key: str) -> str:
    value = attrs.get(key)
    return value[:253] if isinstance(value, str) else ""


_KINDS = frozenset(SpanKind.values)
_STATUSES = frozenset(SpanStatus.values)


# JSON's escape for NUL, not itself escaped (an odd number of backslashes before "u0000").
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


class UnstorableError(ValueError):
    """A value the store cannot hold: NaN or infinity (not JSON), or a NUL character (not in PostgreSQL text)."""


def storable_json(value: Any) -> str:
    """``value`` as JSON text the database takes; raises ``UnstorableError``."""
    try:
        text = json.dumps(value, allow_nan=False)
    except ValueError:
        raise UnstorableError("attribute values must be finite numbers") from None
    # The substring test first: it is cheap, and almost never true.
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise UnstorableError("strings must not contain NUL characters")
    return text


def _text(value: str) -> str:
    if "\x00" in value:
        raise UnstorableError("strings must not contain NUL characters")
    return value


def _events(span: trace_pb2.Span) -> str:
    if not span.events:
        return "[]"
    return storable_json(
        [
            {
                "name": event.name[:MAX_STRING],
                "time_unix_nano": event.time_unix_nano,
                "attributes": attributes(event.attributes),
            }
            for event in list(span.events)[:MAX_EVENTS]
        ]
    )


def _span(span: trace_pb2.Span, resource: str, service: str, namespace: str, out: Decoded) -> None:
    trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
        out.reject("trace_id must be 16 bytes and not all zero")
        return
    if len(span_id) != 8 or span_id == _ZERO_SPAN:
        out.reject("span_id must be 8 bytes and not all zero")
        return
    if parent and len(parent) != 8:
        out.reject("parent_span_id must be empty or 8 bytes")
        return
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if not start or end < start:
        out.reject("a span needs a start time and an end time not before it")
        return
    attrs = attributes(span.attributes)
    kind = span.kind
    status = span.status
    try:
        row = SpanRow(
            trace_id=trace_id.hex(),
            span_id=span_id.hex(),
            parent_span_id=parent.hex(),
            service=service,
            namespace=namespace,
            operation=_text(span.name[:255]),
            kind=kind if kind in _KINDS else SpanKind.UNSPECIFIED,
            # Exact integer microseconds: a float here would round differently from the stored durations.
            start_us=start // 1000,
            end_us=end // 1000,
            status=status.code if status.code in _STATUSES else SpanStatus.UNSET,
            status_message=_text(status.message[:1024]),
            attributes=storable_json(attrs),
            events=_events(span),
            resource=resource,
            source_workload=_edge_value(attrs, "mesh.source.workload"),
            destination_service=_edge_value(attrs, "mesh.destination.service"),
            destination_workload=_edge_value(attrs, "mesh.destination.workload"),
        )
    except UnstorableError as exc:
        out.reject(str(exc))
        return
    out.spans.append(row)


def decode(request: trace_service_pb2.ExportTraceServiceRequest) -> Decoded:
    out = Decoded()
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        try:
            # The service and namespace come from here too.
            resource_json = storable_json(resource)
        except UnstorableError as exc:
            for scope_spans in resource_spans.scope_spans:
                for _ in scope_spans.spans:
                    out.reject(f"resource: {exc}")
            continue
        name = resource.get("service.name")
        service = name[:253] if isinstance(name, str) and name else _UNKNOWN_SERVICE
        namespace_value = resource.get("service.namespace")
        namespace = namespace_value[:253] if isinstance(namespace_value, str) else ""
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                _span(span, resource_json, service, namespace, out)
    return out
