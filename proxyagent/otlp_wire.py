"""OTLP trace messages written straight in protobuf's wire format.

Building ``opentelemetry-proto`` message objects for a span (a ``Span``, a
``KeyValue`` and an ``AnyValue`` per attribute) costs about 50 µs in Python,
more than proxying the request it describes. The wire format of a repeated
message field is the concatenation of its encoded entries, and most of a
span's attributes repeat from request to request (method, status, workloads),
so those are encoded once and cached as bytes; a span is then a handful of
byte concatenations. The output decodes with ``opentelemetry-proto`` into the
same messages the OpenTelemetry SDK would send (a test holds it to that).
"""

from __future__ import annotations

import struct

# Wire types (protobuf encoding spec).
_VARINT = 0
_FIXED64 = 1
_LEN = 2

# Field numbers from opentelemetry/proto/trace/v1/trace.proto, common.proto and trace_service.proto.
_SPAN_TRACE_ID = 1
_SPAN_SPAN_ID = 2
_SPAN_PARENT_SPAN_ID = 4
_SPAN_NAME = 5
_SPAN_KIND = 6
_SPAN_START = 7
_SPAN_END = 8
_SPAN_ATTRIBUTES = 9
_SPAN_EVENTS = 11
_SPAN_STATUS = 15
_EVENT_TIME = 1
_EVENT_NAME = 2
_EVENT_ATTRIBUTES = 3
_STATUS_CODE = 3
_STATUS_CODE_ERROR = 2
_KEY_VALUE_KEY = 1
_KEY_VALUE_VALUE = 2
_ANY_STRING = 1
_ANY_INT = 3
_RESOURCE_ATTRIBUTES = 1
_SCOPE_NAME = 1
_RESOURCE_SPANS_RESOURCE = 1
_RESOURCE_SPANS_SCOPE_SPANS = 2
_SCOPE_SPANS_SCOPE = 1
_SCOPE_SPANS_SPANS = 2
_REQUEST_RESOURCE_SPANS = 1

MAX_CACHED = 4096


def varint(value: int) -> bytes:
    """Base-128 varint; negative numbers as their 64-bit two's complement (as int64 fields are)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def length_delimited(field: int, payload: bytes) -> bytes:
    return _tag(field, _LEN) + varint(len(payload)) + payload


def _any_value(value: str | int) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"span attributes are strings or integers, not {type(value).__name__}")
    if isinstance(value, int):
        return _tag(_ANY_INT, _VARINT) + varint(value)
    return length_delimited(_ANY_STRING, value.encode())


def key_value(key: str, value: str | int) -> bytes:
    """One encoded ``KeyValue`` message."""
    return length_delimited(_KEY_VALUE_KEY, key.encode()) + length_delimited(_KEY_VALUE_VALUE, _any_value(value))


def span_attribute(key: str, value: str | int) -> bytes:
    """One entry of ``Span.attributes``, field tag included."""
    return length_delimited(_SPAN_ATTRIBUTES, key_value(key, value))


def span_event(name: str, time_ns: int, attributes: tuple[tuple[str, str | int], ...] = ()) -> bytes:
    """One entry of ``Span.events``, field tag included: append it to a span's attributes block."""
    payload = (
        _tag(_EVENT_TIME, _FIXED64)
        + struct.pack("<Q", time_ns)
        + length_delimited(_EVENT_NAME, name.encode())
        + b"".join([length_delimited(_EVENT_ATTRIBUTES, key_value(k, v)) for k, v in attributes])
    )
    return length_delimited(_SPAN_EVENTS, payload)


# An error status is the same few bytes on every failed span.
_ERROR_STATUS = length_delimited(_SPAN_STATUS, _tag(_STATUS_CODE, _VARINT) + varint(_STATUS_CODE_ERROR))
_TRACE_ID_TAG = _tag(_SPAN_TRACE_ID, _LEN)
_SPAN_ID_TAG = _tag(_SPAN_SPAN_ID, _LEN)
_PARENT_SPAN_ID_TAG = _tag(_SPAN_PARENT_SPAN_ID, _LEN)
_NAME_TAG = _tag(_SPAN_NAME, _LEN)
_KIND_TAG = _tag(_SPAN_KIND, _VARINT)
# Both timestamps with their tags in one pack (every tag here is a single byte).
_TIMES = struct.Struct("<BQBQ")
_START_TAG_BYTE = _SPAN_START << 3 | _FIXED64
_END_TAG_BYTE = _SPAN_END << 3 | _FIXED64


def _length(n: int) -> bytes:
    return bytes((n,)) if n < 0x80 else varint(n)


class AttributeCache:
    """Encoded attribute blocks by a key the caller chooses; bounded, so unusual values cannot grow it forever."""

    def __init__(self, max_entries: int = MAX_CACHED) -> None:
        self._blocks: dict[object, bytes] = {}
        self._max_entries = max_entries

    def block(self, key: object, attributes: tuple[tuple[str, str | int], ...]) -> bytes:
        cached = self._blocks.get(key)
        if cached is not None:
            return cached
        encoded = b"".join([span_attribute(k, v) for k, v in attributes])
        if len(self._blocks) < self._max_entries:
            self._blocks[key] = encoded
        return encoded


def encode_span(
    *,
    trace_id: bytes,
    span_id: bytes,
    parent_span_id: bytes,
    name: bytes,
    kind: int,
    start_ns: int,
    end_ns: int,
    attributes: bytes,
    error: bool,
) -> bytes:
    """One encoded ``Span``; ``attributes`` is a concatenation of ``span_attribute`` (and ``span_event``) outputs."""
    # Hand-unrolled: this runs once per proxied request.
    return b"".join(
        (
            _TRACE_ID_TAG,
            _length(len(trace_id)),
            trace_id,
            _SPAN_ID_TAG,
            _length(len(span_id)),
            span_id,
            (_PARENT_SPAN_ID_TAG + _length(len(parent_span_id)) + parent_span_id) if parent_span_id else b"",
            _NAME_TAG,
            _length(len(name)),
            name,
            _KIND_TAG,
            varint(kind),
            _TIMES.pack(_START_TAG_BYTE, start_ns, _END_TAG_BYTE, end_ns),
            attributes,
            _ERROR_STATUS if error else b"",
        )
    )


def encode_resource(attributes: dict[str, str]) -> bytes:
    return b"".join([length_delimited(_RESOURCE_ATTRIBUTES, key_value(k, v)) for k, v in attributes.items()])


def encode_scope(name: str) -> bytes:
    return length_delimited(_SCOPE_NAME, name.encode())


def _export_request(
    field_numbers: tuple[int, int, int, int, int], resource: bytes, scope: bytes, items: list[bytes]
) -> bytes:
    """One resource, one scope, many items: the layout both export requests share (with their own field numbers)."""
    request, resource_field, scoped_field, scope_field, items_field = field_numbers
    framed = b"".join([length_delimited(items_field, item) for item in items])
    return _framed_export_request((request, resource_field, scoped_field, scope_field), resource, scope, framed)


def _framed_export_request(
    field_numbers: tuple[int, int, int, int], resource: bytes, scope: bytes, framed_items: bytes
) -> bytes:
    request, resource_field, scoped_field, scope_field = field_numbers
    scoped = length_delimited(scope_field, scope) + framed_items
    return length_delimited(
        request, length_delimited(resource_field, resource) + length_delimited(scoped_field, scoped)
    )


_TRACE_REQUEST_FIELDS = (_REQUEST_RESOURCE_SPANS, _RESOURCE_SPANS_RESOURCE, _RESOURCE_SPANS_SCOPE_SPANS,
                         _SCOPE_SPANS_SCOPE)  # fmt: skip


def encode_export_request(resource: bytes, scope: bytes, spans: list[bytes]) -> bytes:
    """An ``ExportTraceServiceRequest`` holding one resource, one scope and ``spans``."""
    return encode_framed_export_request(resource, scope, frame_spans(spans))


def frame_spans(spans: list[bytes]) -> bytes:
    """Encoded spans as the ``ScopeSpans.spans`` entries of one message (the native relay writes these too)."""
    return b"".join([length_delimited(_SCOPE_SPANS_SPANS, span) for span in spans])


def encode_framed_export_request(resource: bytes, scope: bytes, framed_spans: bytes) -> bytes:
    """An ``ExportTraceServiceRequest`` of one resource and one scope, its spans already framed (``frame_spans``)."""
    return _framed_export_request(_TRACE_REQUEST_FIELDS, resource, scope, framed_spans)


# Metrics (opentelemetry/proto/metrics/v1/metrics.proto, collector/metrics/v1/metrics_service.proto).
_DELTA = 1  # AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
_METRIC_NAME = 1
_METRIC_DESCRIPTION = 2
_METRIC_UNIT = 3
_METRIC_SUM = 7
_METRIC_HISTOGRAM = 9
_SUM_POINTS = 1
_SUM_TEMPORALITY = 2
_SUM_MONOTONIC = 3
_HISTOGRAM_POINTS = 1
_HISTOGRAM_TEMPORALITY = 2
_NUMBER_ATTRIBUTES = 7
_NUMBER_AS_INT = 6
_HISTOGRAM_ATTRIBUTES = 9
_POINT_START = 2
_POINT_TIME = 3
_HISTOGRAM_COUNT = 4
_HISTOGRAM_SUM = 5
_HISTOGRAM_BUCKETS = 6
_HISTOGRAM_BOUNDS = 7
_RESOURCE_METRICS_RESOURCE = 1
_RESOURCE_METRICS_SCOPE_METRICS = 2
_SCOPE_METRICS_SCOPE = 1
_SCOPE_METRICS_METRICS = 2
_REQUEST_RESOURCE_METRICS = 1

Attributes = tuple[tuple[str, str | int], ...]


def _fixed64(field: int, value: int) -> bytes:
    return _tag(field, _FIXED64) + struct.pack("<Q", value)


def _attributes(field: int, attributes: Attributes) -> bytes:
    return b"".join([length_delimited(field, key_value(k, v)) for k, v in attributes])


def number_point(attributes: Attributes, start_ns: int, time_ns: int, value: int) -> bytes:
    """An integer ``NumberDataPoint`` (``as_int``)."""
    return b"".join(
        (
            _fixed64(_POINT_START, start_ns),
            _fixed64(_POINT_TIME, time_ns),
            _tag(_NUMBER_AS_INT, _FIXED64) + struct.pack("<q", value),
            _attributes(_NUMBER_ATTRIBUTES, attributes),
        )
    )


def histogram_point(
    attributes: Attributes,
    start_ns: int,
    time_ns: int,
    *,
    count: int,
    total: float,
    bucket_counts: list[int],
    bounds: tuple[float, ...],
) -> bytes:
    """A ``HistogramDataPoint``: ``len(bucket_counts) == len(bounds) + 1`` (the last bucket is unbounded)."""
    if len(bucket_counts) != len(bounds) + 1:
        raise ValueError("a histogram has one more bucket than it has bounds")
    return b"".join(
        (
            _fixed64(_POINT_START, start_ns),
            _fixed64(_POINT_TIME, time_ns),
            _fixed64(_HISTOGRAM_COUNT, count),
            _tag(_HISTOGRAM_SUM, _FIXED64) + struct.pack("<d", total),
            length_delimited(_HISTOGRAM_BUCKETS, struct.pack(f"<{len(bucket_counts)}Q", *bucket_counts)),
            length_delimited(_HISTOGRAM_BOUNDS, struct.pack(f"<{len(bounds)}d", *bounds)) if bounds else b"",
            _attributes(_HISTOGRAM_ATTRIBUTES, attributes),
        )
    )


def _metric_head(name: str, description: str, unit: str) -> bytes:
    return (
        length_delimited(_METRIC_NAME, name.encode())
        + (length_delimited(_METRIC_DESCRIPTION, description.encode()) if description else b"")
        + (length_delimited(_METRIC_UNIT, unit.encode()) if unit else b"")
    )


def delta_sum(name: str, description: str, unit: str, points: list[bytes]) -> bytes:
    """A ``Metric`` holding a monotonic delta ``Sum`` (a counter's increase over each point's interval)."""
    body = (
        b"".join([length_delimited(_SUM_POINTS, p) for p in points])
        + _tag(_SUM_TEMPORALITY, _VARINT)
        + varint(_DELTA)
        + _tag(_SUM_MONOTONIC, _VARINT)
        + varint(1)
    )
    return _metric_head(name, description, unit) + length_delimited(_METRIC_SUM, body)


def delta_histogram(name: str, description: str, unit: str, points: list[bytes]) -> bytes:
    body = (
        b"".join([length_delimited(_HISTOGRAM_POINTS, p) for p in points])
        + _tag(_HISTOGRAM_TEMPORALITY, _VARINT)
        + varint(_DELTA)
    )
    return _metric_head(name, description, unit) + length_delimited(_METRIC_HISTOGRAM, body)


def encode_metrics_request(resource: bytes, scope: bytes, metrics: list[bytes]) -> bytes:
    """An ``ExportMetricsServiceRequest`` holding one resource, one scope and ``metrics``."""
    fields = (_REQUEST_RESOURCE_METRICS, _RESOURCE_METRICS_RESOURCE, _RESOURCE_METRICS_SCOPE_METRICS,
              _SCOPE_METRICS_SCOPE, _SCOPE_METRICS_METRICS)  # fmt: skip
    return _export_request(fields, resource, scope, metrics)
