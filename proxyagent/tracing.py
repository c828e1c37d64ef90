"""W3C trace context (``traceparent``): continue the caller's trace or start one."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

_TRACEPARENT = re.compile(rb"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    parent_span_id: str | None
    span_id: str
    sampled: bool

    def header(self) -> bytes:
        """The ``traceparent`` to send on: our span becomes the next hop's parent."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}".encode()


def continue_or_start(traceparent: bytes | None, *, sample: bool) -> TraceContext:
    """A child of the incoming context when it is valid, else the root of a new trace."""
    # Ids must be unique, not secret (as in OpenTelemetry's own generator); random
    # avoids a getrandom() system call per request.
    span_id = f"{random.getrandbits(64) or 1:016x}"
    if traceparent is not None:
        match = _TRACEPARENT.match(traceparent.strip().lower())
        if match and match.group(1) != _ZERO_TRACE and match.group(2) != _ZERO_SPAN:
            flags = int(match.group(3), 16)
            return TraceContext(match.group(1).decode(), match.group(2).decode(), span_id, bool(flags & 1))
    return TraceContext(f"{random.getrandbits(128) or 1:032x}", None, span_id, sample)
