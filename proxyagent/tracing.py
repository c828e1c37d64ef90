"""W3C trace context (``traceparent``): continue the caller's trace or start one.

Ids are kept as the lowercase hex bytes that travel in the header, so a hop
continues a trace without decoding or re-encoding text.
"""

from __future__ import annotations

import random
import re

_TRACEPARENT = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


class TraceContext:
    """This hop's place in a trace: ids as hex bytes, ``parent_span_id`` ``None`` for a root."""

    __slots__ = ("parent_span_id", "sampled", "span_id", "trace_id")

    def __init__(self, trace_id: bytes, parent_span_id: bytes | None, span_id: bytes, sampled: bool) -> None:
        self.trace_id = trace_id
        self.parent_span_id = parent_span_id
        self.span_id = span_id
        self.sampled = sampled

    def header(self) -> bytes:
        """The ``traceparent`` to send on: our span becomes the next hop's parent."""
        return b"00-" + self.trace_id + b"-" + self.span_id + (b"-01" if self.sampled else b"-00")


def continue_or_start(traceparent: bytes | None, *, sample: bool) -> TraceContext:
    """A child of the incoming context when it is valid, else the root of a new trace."""
    # Ids must be unique, not secret (as in OpenTelemetry's own generator); random
    # avoids a getrandom() system call per request.
    span_id = b"%016x" % (random.getrandbits(64) or 1)
    if traceparent is not None:
        match = _TRACEPARENT.fullmatch(traceparent.strip().lower())
        if match is not None:
            trace_id, parent, flags = match.groups()
            if trace_id != _ZERO_TRACE and parent != _ZERO_SPAN:
                return TraceContext(trace_id, parent, span_id, bool(int(flags, 16) & 1))
    return TraceContext(b"%032x" % (random.getrandbits(128) or 1), None, span_id, sample)
