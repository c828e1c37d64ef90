"""The critical path of a trace: the chain of work that decided when it ended.

Walking back from a span's end, the path runs through the child that finished
last (before the point reached so far), through that child's own critical
path, and then on, from the child's start, through the child that finished
last before it; time covered by no child is the span's own. The result is a
list of segments, each a slice of one span's time, in chronological order;
they tile the root span without overlapping.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    span_id: str
    parent_span_id: str
    start_us: int
    end_us: int


@dataclass(frozen=True)
class Segment:
    span_id: str
    start_us: int
    end_us: int


def critical_path(spans: Sequence[Timing], root_id: str) -> list[Segment]:
    by_id = {span.span_id: span for span in spans}
    children: defaultdict[str, list[Timing]] = defaultdict(list)
    for span in spans:
        if span.parent_span_id in by_id and span.span_id != span.parent_span_id:
            children[span.parent_span_id].append(span)
    for siblings in children.values():
        siblings.sort(key=lambda s: s.end_us, reverse=True)
    root = by_id.get(root_id)
    if root is None:
        return []
    backwards: list[Segment] = []
    # Iterative, not recursive: a trace of thousands of nested spans must not hit the recursion limit.
    stack: list[tuple[Timing, int]] = [(root, root.end_us)]
    visited: set[str] = set()
    while stack:
        span, until = stack.pop()
        if span.span_id in visited:  # a cycle in malformed data
            continue
        visited.add(span.span_id)
        _walk(span, until, children, backwards, stack)
    return _merge(sorted(backwards, key=lambda s: (s.start_us, s.end_us)))


def _walk(
    span: Timing,
    until: int,
    children: defaultdict[str, list[Timing]],
    out: list[Segment],
    stack: list[tuple[Timing, int]],
) -> None:
    cursor = min(span.end_us, until)
    for child in children.get(span.span_id, ()):
        if child.start_us >= cursor or child.end_us <= span.start_us:
            continue
        child_end = min(child.end_us, cursor)
        if child_end < cursor:
            out.append(Segment(span.span_id, child_end, cursor))
        stack.append((child, child_end))
        cursor = max(child.start_us, span.start_us)
        if cursor <= span.start_us:
            return
    if cursor > span.start_us:
        out.append(Segment(span.span_id, span.start_us, cursor))


def _merge(segments: list[Segment]) -> list[Segment]:
    merged: list[Segment] = []
    for segment in segments:
        if segment.end_us <= segment.start_us:
            continue
        last = merged[-1] if merged else None
        if last is not None and last.span_id == segment.span_id and last.end_us == segment.start_us:
            merged[-1] = Segment(last.span_id, last.start_us, segment.end_us)
        else:
            merged.append(segment)
    return merged
