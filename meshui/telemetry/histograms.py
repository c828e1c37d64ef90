"""Percentiles from fixed-bound histograms (never from samples)."""

from __future__ import annotations

from collections.abc import Sequence

from meshui.telemetry.models import LATENCY_BOUNDS_S


def add(a: Sequence[int], b: Sequence[int]) -> list[int]:
    return [x + y for x, y in zip(a, b, strict=True)]


def percentile(counts: Sequence[int], q: float, bounds: Sequence[float] = LATENCY_BOUNDS_S) -> float | None:
    """The ``q`` quantile (0 < q <= 1) in seconds, interpolated linearly inside its bucket.

    The first bucket starts at 0; a quantile that falls in the unbounded last
    bucket is reported as the last finite bound (a floor, as Prometheus does).
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            if i >= len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i else 0.0
            return lower + (bounds[i] - lower) * (rank - seen) / count
        seen += count
    return bounds[-1]
